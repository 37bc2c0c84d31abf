"""The blue-green rollout as a state machine over a `Platform`: pure logic, no I/O of its own.

A rollout moves the gateway's traffic from the live color to the idle one:

    apply -> ready -> smoke-health -> smoke-read -> flip -> drain -> scale-down

`apply` starts the new version in the idle color, `ready` waits for it to report SERVING,
the two smoke steps call it through the preview endpoint (health, then real reads with a
probe key), `flip` points the live endpoint at it, `drain` waits for the old color's
connections to end (the gateway's max connection age moves long-lived clients), and
`scale-down` stops the old color. Any failed step rolls back: traffic goes back to the old
color if it was moved (and the old color can still take it), the new color is stopped, and
the outcome names the step and the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Color(StrEnum):
    """One of the two gateway deployments."""

    BLUE = "blue"
    GREEN = "green"

    @property
    def other(self) -> Color:
        """The opposite color."""
        return Color.GREEN if self is Color.BLUE else Color.BLUE


class Step(StrEnum):
    """The steps of a rollout, in order; their values are what the output names."""

    APPLY = "apply"
    READY = "ready"
    SMOKE_HEALTH = "smoke-health"
    SMOKE_READ = "smoke-read"
    FLIP = "flip"
    DRAIN = "drain"
    SCALE_DOWN = "scale-down"


DEFAULT_READY_SECONDS = 120.0
DEFAULT_DRAIN_SECONDS = 360.0
STEPS_AFTER_FLIP = (Step.DRAIN, Step.SCALE_DOWN)
"""The steps that only run when another color was live before."""


class StepFailed(Exception):
    """A step could not be done; the message says why, for the operator."""


class Platform(Protocol):
    """Where the two colors run: Kubernetes (kubectl), or processes behind nginx."""

    def live_color(self) -> Color | None:
        """The color the live endpoint sends traffic to; None before the first rollout."""

    def apply(self, color: Color) -> None:
        """Deploy the new version as `color` (start it; it need not be ready yet)."""

    def wait_ready(self, color: Color, timeout: float) -> None:
        """Return once `color` reports ready; raise StepFailed after `timeout` seconds."""

    def is_ready(self, color: Color) -> bool:
        """Whether `color` is ready now (no waiting); used before moving traffic back."""

    def preview(self, color: Color) -> AbstractContextManager[str]:
        """Point the preview endpoint at `color`; the context yields its host:port."""

    def flip(self, color: Color) -> None:
        """Point the live endpoint at `color`."""

    def drain(self, color: Color, timeout: float) -> None:
        """Wait until `color` has no client connections left; StepFailed after `timeout`."""

    def scale_down(self, color: Color) -> None:
        """Stop `color` (gracefully: calls in flight finish within the gateway's grace)."""


class Smoke(Protocol):
    """Calls a candidate through the preview endpoint before it gets traffic."""

    def health(self, endpoint: str) -> None:
        """Raise StepFailed unless grpc.health.v1 says SERVING at `endpoint`."""

    def read(self, endpoint: str) -> None:
        """Raise StepFailed unless real read calls succeed at `endpoint`."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the waiting steps may take, in seconds."""

    ready: float = DEFAULT_READY_SECONDS
    """For the new color to report ready."""
    drain: float = DEFAULT_DRAIN_SECONDS
    """For the old color's connections to end; at least the gateway's max connection age
    plus its grace, or long-lived clients are still there when it stops."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a rollout did."""

    target: Color
    """The color the rollout deployed."""
    previous: Color | None
    """The color that was live before (None on the first rollout)."""
    live: Color | None
    """The color the live endpoint points at now."""
    failed_step: Step | None = None
    """The step that failed; None when the rollout succeeded."""
    reason: str = ""
    """Why that step failed."""
    rollback_problems: tuple[str, ...] = ()
    """What the rollback could not undo (empty when it undid everything)."""

    @property
    def ok(self) -> bool:
        """Whether the rollout succeeded."""
        return self.failed_step is None

    def summary(self) -> str:
        """One line for the operator."""
        if self.ok:
            return f"rollout done: traffic is on {self.target}"
        where = f"traffic is on {self.live}" if self.live else "nothing is live"
        text = f"rollout FAILED at step {self.failed_step}: {self.reason}; {where}"
        if self.rollback_problems:
            text += "; rollback incomplete: " + "; ".join(self.rollback_problems)
        return text


Progress = Callable[[str], None]
"""Receives one line per step (and per rollback action)."""


@dataclass
class Rollout:
    """Runs one rollout on a platform; `run` never raises for a failed step."""

    platform: Platform
    smoke: Smoke
    timeouts: Timeouts = field(default_factory=Timeouts)
    progress: Progress = print
    clock: Callable[[], float] = time.monotonic
    """Monotonic seconds, to report how long each step took."""

    def run(self, target: Color | None = None) -> Outcome:
        """Move traffic to `target` (default: the idle color) or roll back; say what happened.

        Raises:
            StepFailed: `target` is the live color already (nothing to roll out to).
        """
        previous = self.platform.live_color()
        if target is None:
            target = previous.other if previous is not None else Color.BLUE
        if target is previous:
            raise StepFailed(f"{target} is live already; roll out to {target.other}")
        self.progress(f"rollout to {target} (live: {previous or 'nothing'})")
        flipped = False
        for number, (step, subject, action) in enumerate(self._steps(target, previous), start=1):
            if step in STEPS_AFTER_FLIP and previous is None:
                self.progress(f"[{number}/{len(Step)}] {step}: skipped, nothing was live")
                continue
            # A flip that failed may have half happened: undo it like one that succeeded.
            flipped = flipped or step is Step.FLIP
            failure = self._do(f"[{number}/{len(Step)}] {step} ({subject})", action)
            if failure is not None:
                return self._roll_back(target, previous, step, failure, flipped=flipped)
        outcome = Outcome(target, previous, live=target)
        self.progress(outcome.summary())
        return outcome

    def _steps(
        self, target: Color, previous: Color | None
    ) -> list[tuple[Step, Color, Callable[[], None]]]:
        """Each step, the color it acts on, and what it does."""
        platform, timeouts = self.platform, self.timeouts
        old = previous if previous is not None else target.other
        return [
            (Step.APPLY, target, lambda: platform.apply(target)),
            (Step.READY, target, lambda: platform.wait_ready(target, timeouts.ready)),
            (Step.SMOKE_HEALTH, target, lambda: self._preview(target, self.smoke.health)),
            (Step.SMOKE_READ, target, lambda: self._preview(target, self.smoke.read)),
            (Step.FLIP, target, lambda: platform.flip(target)),
            (Step.DRAIN, old, lambda: platform.drain(old, timeouts.drain)),
            (Step.SCALE_DOWN, old, lambda: platform.scale_down(old)),
        ]

    def _preview(self, color: Color, check: Callable[[str], None]) -> None:
        with self.platform.preview(color) as endpoint:
            check(endpoint)

    def _do(self, label: str, action: Callable[[], None]) -> str | None:
        """Run one step; return why it failed, or None."""
        started = self.clock()
        try:
            action()
        except Exception as e:  # any failure of any step means roll back, with its reason
            took = self.clock() - started
            reason = str(e) if isinstance(e, StepFailed) else f"{type(e).__name__}: {e}"
            self.progress(f"{label}: FAILED after {took:.1f} s")
            self.progress(f"    {reason}")
            return reason
        took = self.clock() - started
        self.progress(f"{label}: ok ({took:.1f} s)")
        return None

    def _roll_back(
        self, target: Color, previous: Color | None, step: Step, reason: str, *, flipped: bool
    ) -> Outcome:
        problems: list[str] = []
        live: Color | None = previous
        if flipped and previous is not None:
            live = self._move_back(target, previous, problems)
        if live is not target and not self._attempt(
            f"scale {target} down", lambda: self.platform.scale_down(target)
        ):
            problems.append(f"{target} could not be scaled down")
        outcome = Outcome(target, previous, live, step, reason, tuple(problems))
        self.progress(outcome.summary())
        return outcome

    def _move_back(self, target: Color, previous: Color, problems: list[str]) -> Color:
        """Point the live endpoint back at `previous` if it can take the traffic."""
        if not self._attempt(f"{previous} still ready", lambda: self._require_ready(previous)):
            problems.append(f"{previous} is not ready, so traffic stays on {target}")
            return target
        if not self._attempt(f"traffic back to {previous}", lambda: self.platform.flip(previous)):
            problems.append(f"traffic could not be moved back to {previous}")
            return target
        return previous

    def _require_ready(self, color: Color) -> None:
        if not self.platform.is_ready(color):
            raise StepFailed(f"{color} does not report ready")

    def _attempt(self, what: str, action: Callable[[], None]) -> bool:
        try:
            action()
        except Exception as e:  # a rollback action failing is reported, the rest still runs
            self.progress(f"rollback: {what}: FAILED: {e}")
            return False
        self.progress(f"rollback: {what}: ok")
        return True
