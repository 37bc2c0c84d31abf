"""The rollout state machine on an in-memory platform: every failure branch rolls back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from ordermesh.rollout.machine import Color, Outcome, Rollout, Step, StepFailed, Timeouts

BLUE, GREEN = Color.BLUE, Color.GREEN


@dataclass
class FakePlatform:
    """Colors in memory: which run, which are ready, where live and preview point."""

    live: Color | None = BLUE
    running: set[Color] = field(default_factory=lambda: {BLUE})
    connections: dict[Color, int] = field(default_factory=dict)
    fail: dict[str, str] = field(default_factory=dict)
    """"<method> <color>" -> the reason that call fails with."""
    never_ready: bool = False
    preview_target: Color | None = None
    calls: list[str] = field(default_factory=list)

    def _enter(self, name: str, color: Color) -> None:
        call = f"{name} {color}"
        self.calls.append(call)
        if call in self.fail:
            raise StepFailed(self.fail[call])

    def live_color(self) -> Color | None:
        return self.live

    def apply(self, color: Color) -> None:
        self._enter("apply", color)
        self.running.add(color)

    def wait_ready(self, color: Color, timeout: float) -> None:
        self._enter("wait_ready", color)
        if self.never_ready:
            raise StepFailed(f"{color} is not ready after {timeout:g} s: health says NOT_SERVING")

    def is_ready(self, color: Color) -> bool:
        return color in self.running

    @contextlib.contextmanager
    def preview(self, color: Color) -> Iterator[str]:
        self._enter("preview", color)
        self.preview_target = color
        yield f"preview-of-{color}:1"

    def flip(self, color: Color) -> None:
        self._enter("flip", color)
        self.live = color

    def drain(self, color: Color, timeout: float) -> None:
        self._enter("drain", color)
        if self.connections.get(color, 0):
            raise StepFailed(f"{color} still has {self.connections[color]} connection(s)")

    def scale_down(self, color: Color) -> None:
        self._enter("scale_down", color)
        self.running.discard(color)


@dataclass
class FakeSmoke:
    health_reason: str = ""
    read_reason: str = ""
    endpoints: list[str] = field(default_factory=list)

    def health(self, endpoint: str) -> None:
        self.endpoints.append(endpoint)
        if self.health_reason:
            raise StepFailed(self.health_reason)

    def read(self, endpoint: str) -> None:
        self.endpoints.append(endpoint)
        if self.read_reason:
            raise StepFailed(self.read_reason)


def roll(platform: FakePlatform, smoke: FakeSmoke | None = None) -> tuple[Outcome, list[str]]:
    lines: list[str] = []
    rollout = Rollout(
        platform, smoke or FakeSmoke(), Timeouts(ready=5, drain=7), progress=lines.append
    )
    return rollout.run(), lines


def test_success_moves_traffic_to_the_idle_color_and_stops_the_old_one():
    platform = FakePlatform()
    smoke = FakeSmoke()
    outcome, lines = roll(platform, smoke)
    assert outcome.ok
    assert (outcome.previous, outcome.target, outcome.live) == (BLUE, GREEN, GREEN)
    assert platform.live is GREEN
    assert platform.running == {GREEN}
    assert smoke.endpoints == ["preview-of-green:1"] * 2
    assert platform.calls == [
        "apply green", "wait_ready green", "preview green", "preview green", "flip green",
        "drain blue", "scale_down blue",
    ]  # fmt: skip
    assert [line.split(":")[0] for line in lines[1:-1]] == [
        "[1/7] apply (green)", "[2/7] ready (green)", "[3/7] smoke-health (green)",
        "[4/7] smoke-read (green)", "[5/7] flip (green)", "[6/7] drain (blue)",
        "[7/7] scale-down (blue)",
    ]  # fmt: skip
    assert lines[-1] == "rollout done: traffic is on green"


def test_the_first_rollout_has_nothing_to_drain():
    platform = FakePlatform(live=None, running=set())
    outcome, lines = roll(platform)
    assert outcome.ok
    assert (outcome.previous, platform.live, platform.running) == (None, BLUE, {BLUE})
    assert "[6/7] drain: skipped, nothing was live" in lines
    assert not any(call.startswith(("drain", "scale_down")) for call in platform.calls)


def test_rolling_out_to_the_live_color_is_refused_before_any_step():
    platform = FakePlatform()
    with pytest.raises(StepFailed, match="blue is live already"):
        Rollout(platform, FakeSmoke(), progress=lambda _: None).run(BLUE)
    assert platform.calls == []


def assert_rolled_back(platform: FakePlatform, outcome: Outcome, step: Step, reason: str) -> None:
    assert not outcome.ok
    assert outcome.failed_step is step
    assert reason in outcome.reason
    assert outcome.live is BLUE
    assert platform.live is BLUE, "traffic must be back on the old color"
    assert platform.running == {BLUE}, "the new color must be stopped, the old one kept"
    assert outcome.rollback_problems == ()
    assert outcome.summary().startswith(f"rollout FAILED at step {step}: ")
    assert outcome.summary().endswith("traffic is on blue")


FAILURES = [
    pytest.param(Step.APPLY, {"fail": {"apply green": "overlay rejected"}}, {},
                 "overlay rejected", id="apply-fails"),
    pytest.param(Step.READY, {"never_ready": True}, {}, "health says NOT_SERVING",
                 id="never-ready"),
    pytest.param(Step.SMOKE_HEALTH, {}, {"health_reason": "health is NOT_SERVING"},
                 "health is NOT_SERVING", id="smoke-health-fails"),
    pytest.param(Step.SMOKE_READ, {}, {"read_reason": "ListSymbols failed: UNAUTHENTICATED"},
                 "UNAUTHENTICATED", id="smoke-read-fails"),
    pytest.param(Step.FLIP, {"fail": {"flip green": "selector patch refused"}}, {},
                 "selector patch refused", id="flip-fails"),
    pytest.param(Step.DRAIN, {"connections": {BLUE: 3}}, {}, "still has 3 connection(s)",
                 id="drain-times-out"),
    pytest.param(Step.SCALE_DOWN, {"fail": {"scale_down blue": "scale refused"}}, {},
                 "scale refused", id="scale-down-fails"),
]  # fmt: skip


@pytest.mark.parametrize(("step", "platform_faults", "smoke_faults", "reason"), FAILURES)
def test_each_failed_step_puts_traffic_back_on_the_old_color(
    step, platform_faults, smoke_faults, reason
):
    platform = FakePlatform(**platform_faults)
    outcome, lines = roll(platform, FakeSmoke(**smoke_faults))
    assert_rolled_back(platform, outcome, step, reason)
    number = list(Step).index(step) + 1
    subject = "blue" if step in {Step.DRAIN, Step.SCALE_DOWN} else "green"
    failed = [line for line in lines if line.startswith(f"[{number}/7] {step} ({subject}): FAILED")]
    assert len(failed) == 1, lines
    assert not any(line.startswith(f"[{number + 1}/7]") for line in lines), "stopped at the step"
    moved_back = "rollback: traffic back to blue: ok" in lines
    assert moved_back is (step in {Step.FLIP, Step.DRAIN, Step.SCALE_DOWN}), lines
    assert "rollback: scale green down: ok" in lines


def test_traffic_stays_on_the_new_color_when_the_old_one_cannot_take_it_back():
    platform = FakePlatform(fail={"scale_down blue": "timed out"})
    original = platform.scale_down

    def scale_down_kills_blue(color: Color) -> None:
        platform.running.discard(color)  # it went down, but the step still failed
        original(color)

    platform.scale_down = scale_down_kills_blue  # type: ignore[method-assign]
    outcome, _ = roll(platform)
    assert outcome.failed_step is Step.SCALE_DOWN
    assert (outcome.live, platform.live) == (GREEN, GREEN)
    assert GREEN in platform.running, "the only color able to serve must not be stopped"
    assert outcome.rollback_problems == ("blue is not ready, so traffic stays on green",)
    assert "rollback incomplete" in outcome.summary()


def test_a_failed_flip_back_is_reported_and_green_kept():
    platform = FakePlatform(connections={BLUE: 2}, fail={"flip blue": "api server down"})
    outcome, _ = roll(platform)
    assert outcome.failed_step is Step.DRAIN
    assert outcome.live is GREEN
    assert GREEN in platform.running
    assert outcome.rollback_problems == ("traffic could not be moved back to blue",)


def test_an_unexpected_error_is_a_failure_with_its_type():
    platform = FakePlatform()

    def broken(color: Color, timeout: float) -> None:
        raise ConnectionResetError("peer went away")

    platform.wait_ready = broken  # type: ignore[method-assign]
    outcome, _ = roll(platform)
    assert outcome.failed_step is Step.READY
    assert outcome.reason == "ConnectionResetError: peer went away"
    assert platform.live is BLUE
    assert platform.running == {BLUE}
