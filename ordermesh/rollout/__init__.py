"""Blue-green rollouts of the gateway: a state machine over a platform (kubectl, or local nginx).

`Rollout` runs the steps (apply, ready, smoke-health, smoke-read, flip, drain, scale-down)
on a `Platform` and rolls back on any failure; `KubectlPlatform` drives Kubernetes,
`LocalPlatform` gateway processes behind nginx; `GrpcSmoke` is the smoke test. The command
is `python -m ordermesh.rollout` (`ordermesh.rollout.cli`).
"""

from ordermesh.rollout.machine import (
    Color,
    Outcome,
    Platform,
    Rollout,
    Smoke,
    Step,
    StepFailed,
    Timeouts,
)

__all__ = ["Color", "Outcome", "Platform", "Rollout", "Smoke", "Step", "StepFailed", "Timeouts"]
