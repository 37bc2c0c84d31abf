"""The hand-over of a stateful service (ubscore, matcher) by Kafka fencing (DESIGN §9).

An instance runs as the owner (`active`) or as a `standby`: a standby restores the newest
snapshot and tails the log read_committed, producing nothing, until it is told to take over
with the admin RPC `ordermesh.v1.Admin/Promote`. Taking over starts the transactional
producer(s) under the owner's transactional id(s), which fences the old owner (its next
transaction fails and it exits with EXIT_FENCED) and aborts its open transaction; the new
owner then writes an owner record naming itself, reads the log to its end and serves.

The owner record is what keeps a hand-over from ping-ponging: at start an instance reads it,
and starts as standby when it names another instance whatever its configured role, and as
active when it names this one (the owner restarting after a fail-stop). Only when no hand-over
ever happened does the configured role decide.

Health: the service's own name (and "") says SERVING only while active and live; the name
"<service>/standby" says SERVING while a standby is caught up (lag within a bound), so a
rollout tool can wait for it before promoting while a Kubernetes Service never routes to it.

`python -m ordermesh.handover role|wait|promote --target host:port` drives it from a script.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import grpc
import structlog

from ordermesh.bus.base import Producer
from ordermesh.runtime import EXIT_FATAL, EXIT_FENCED
from ordermesh.snapshots import SnapshotStore
from ordermesh.v1 import admin_pb2, admin_pb2_grpc

log = structlog.get_logger(__name__)

ROLES: Final = ("active", "standby")
"""The roles an instance may be started in (setting `role`, env ORDERMESH_ROLE)."""
STANDBY_SUFFIX: Final = "/standby"
"""Appended to a service's health name for the standby's "caught up" signal."""
ADMIN_SERVICE: Final = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name
"""ordermesh.v1.Admin."""


def default_instance() -> str:
    """This instance's default name: the host name (the pod name in Kubernetes)."""
    return socket.gethostname()


class Role(enum.IntEnum):
    """What an instance does now (numbers of ordermesh.v1.Role)."""

    STANDBY = admin_pb2.ROLE_STANDBY
    PROMOTING = admin_pb2.ROLE_PROMOTING
    ACTIVE = admin_pb2.ROLE_ACTIVE
    STOPPED = admin_pb2.ROLE_STOPPED


def starting_role(configured: str, owner: str | None, instance: str) -> Role:
    """The role to start in: the owner record decides when there is one, else `configured`."""
    if owner is None:
        return Role.ACTIVE if configured == "active" else Role.STANDBY
    return Role.ACTIVE if owner == instance else Role.STANDBY


class OwnerRecord:
    """Who owns a transactional id now, kept in the snapshot store under "owner/<id>".

    Args:
        store: the service's snapshot store (a compacted topic).
        transactional_id: the owner's transactional id (or the first of them).
    """

    def __init__(self, store: SnapshotStore, transactional_id: str) -> None:
        self._store = store
        self.key = f"owner/{transactional_id}"

    async def load(self) -> str | None:
        """The owner's instance name, or None when no hand-over ever happened."""
        data = await self._store.load(self.key)
        return None if data is None else data.decode()

    async def save(self, instance: str, producer: Producer) -> None:
        """Name `instance` the owner, in one transaction of the (just fenced) `producer`."""
        await producer.begin_transaction()
        await self._store.save(self.key, instance.encode(), producer=producer)
        await producer.commit_transaction()


async def fenced_after_all(
    status: int, owner: OwnerRecord, handover: Handover, seconds: float = 3.0
) -> int:
    """The exit status of a run that ended in `status`, told apart from a fence.

    A new owner's first transaction can make the old owner's commit in flight fail with an
    error the broker does not name as a fence (seen: UNKNOWN_SERVER_ERROR on EndTxn). An
    active instance that fail-stopped therefore looks at the owner record for up to
    `seconds` (the new owner writes it right after fencing): when it names another
    instance, the run ended by a hand-over, EXIT_FENCED; otherwise `status` stands.
    """
    if status != EXIT_FATAL or not handover.was_active:
        return status
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        try:
            async with asyncio.timeout(max(0.1, deadline - loop.time())):
                current = await owner.load()
        except Exception as e:
            log.warning("cannot read the owner record after a fail-stop", error=repr(e))
            return status
        if current is not None and current != handover.instance:
            log.warning(
                "stopped by a hand-over",
                reason=f"fenced: the owner record names {current!r} now",
                instance=handover.instance,
            )
            return EXIT_FENCED
        if loop.time() >= deadline:
            return status
        await asyncio.sleep(0.2)


SetHealth = Callable[[str, bool], Awaitable[None]]


class PromotionRefusedError(Exception):
    """The instance stopped (failed or fenced) and cannot take over."""


class Handover:
    """One instance's role, its standby readiness, and the promotion request.

    Args:
        service_name: the main gRPC service's full name (its health name).
        instance: the name recorded as owner on promotion.
        max_lag: a standby this many records behind the log end or fewer is caught up.
        set_health: reports one health name (GrpcServer.set_health).
    """

    def __init__(
        self, service_name: str, instance: str, max_lag: int, set_health: SetHealth
    ) -> None:
        self.instance = instance
        self._standby_name = service_name + STANDBY_SUFFIX
        self._max_lag = max_lag
        self._set_health = set_health
        self._role = Role.STANDBY
        self._lag: int | None = None
        self._reason = ""
        self._reported: bool | None = None
        self.requested = asyncio.Event()
        """Set by Promote; the service's standby loop waits for it."""
        self.was_active = False
        """The instance served as the owner at some point of this run."""
        self._changed = asyncio.Event()

    @property
    def role(self) -> Role:
        """The current role."""
        return self._role

    @property
    def caught_up(self) -> bool:
        """A standby whose last measured lag is within the bound."""
        return self._role is Role.STANDBY and self._lag is not None and self._lag <= self._max_lag

    async def begin(self, role: Role) -> None:
        """Set the starting role (ACTIVE: promotion counts as already requested)."""
        self._role = role
        if role is Role.ACTIVE:
            self.was_active = True
            self.requested.set()
        await self._report()

    async def start(self, configured: str, owner: OwnerRecord) -> tuple[Role, str | None]:
        """Begin in the role `configured` and the owner record decide; return it and the owner.

        Logs when the owner record overrides the configured role (see `starting_role`).
        """
        current = await owner.load()
        role = starting_role(configured, current, self.instance)
        if role.name.lower() != configured:
            log.warning(
                "role overridden by owner record",
                configured=configured,
                role=role.name.lower(),
                owner=current,
            )
        await self.begin(role)
        return role, current

    async def note_lag(self, lag: int) -> None:
        """A standby measured how far behind the log end it is."""
        self._lag = lag
        await self._report()

    async def promoting(self) -> None:
        """The take-over began."""
        self._move(Role.PROMOTING)
        await self._report()

    async def activated(self) -> None:
        """The take-over is done: the instance serves."""
        self.was_active = True
        self._move(Role.ACTIVE)
        await self._report()

    def stopped(self, reason: str) -> None:
        """The instance failed or was fenced; Promote callers hear FAILED_PRECONDITION."""
        self._reason = reason
        self._move(Role.STOPPED)

    async def promote(self) -> Role:
        """Ask for the take-over and wait until it is done.

        Raises:
            PromotionRefusedError: the instance stopped instead.
        """
        self.requested.set()
        while self._role in (Role.STANDBY, Role.PROMOTING):
            await self._changed.wait()
        if self._role is Role.STOPPED:
            raise PromotionRefusedError(
                f"instance {self.instance} stopped and cannot be promoted: {self._reason}"
            )
        return self._role

    def describe(self) -> admin_pb2.AdminGetRoleResponse:
        """The GetRole answer."""
        return admin_pb2.AdminGetRoleResponse(
            role=int(self._role),  # type: ignore[arg-type]  # the enum holds the proto numbers
            instance=self.instance,
            caught_up=self.caught_up,
            lag=self._lag or 0,
            reason=self._reason,
        )

    def _move(self, role: Role) -> None:
        if self._role is not role:
            log.info("role changed", previous=self._role.name, role=role.name)
        self._role = role
        self._changed.set()
        self._changed = asyncio.Event()

    async def _report(self) -> None:
        caught_up = self.caught_up
        if caught_up != self._reported:
            self._reported = caught_up
            await self._set_health(self._standby_name, caught_up)


class AdminServicer(admin_pb2_grpc.AdminServicer):
    """ordermesh.v1.Admin over one instance's `Handover`."""

    def __init__(self, handover: Handover) -> None:
        self._handover = handover

    async def Promote(
        self,
        request: admin_pb2.AdminPromoteRequest,  # noqa: ARG002 - it has no fields
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> admin_pb2.AdminPromoteResponse:
        """Take over and answer once serving."""
        log.info("promotion requested", instance=self._handover.instance)
        try:
            role = await self._handover.promote()
        except PromotionRefusedError as e:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        return admin_pb2.AdminPromoteResponse(
            role=int(role),  # type: ignore[arg-type]  # the enum holds the proto numbers
            instance=self._handover.instance,
        )

    async def GetRole(
        self,
        request: admin_pb2.AdminGetRoleRequest,  # noqa: ARG002 - it has no fields
        context: grpc.aio.ServicerContext[Any, Any],  # noqa: ARG002 - never refused
    ) -> admin_pb2.AdminGetRoleResponse:
        """The role, readiness and lag now."""
        return self._handover.describe()


def registrar(handover: Handover) -> Callable[[grpc.aio.Server], None]:
    """Adds ordermesh.v1.Admin over `handover` to a server (a GrpcServer registrar)."""
    servicer = AdminServicer(handover)
    return lambda server: admin_pb2_grpc.add_AdminServicer_to_server(servicer, server)


# -- the command line ----------------------------------------------------------------------


def _as_json(response: admin_pb2.AdminGetRoleResponse | admin_pb2.AdminPromoteResponse) -> str:
    fields: dict[str, object] = {"role": admin_pb2.Role.Name(response.role)}
    fields["instance"] = response.instance
    if isinstance(response, admin_pb2.AdminGetRoleResponse):
        fields |= {"caught_up": response.caught_up, "lag": response.lag}
        if response.reason:
            fields["reason"] = response.reason
    return json.dumps(fields)


async def _command(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.target) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        if args.command == "promote":
            promoted = await stub.Promote(admin_pb2.AdminPromoteRequest(), timeout=args.timeout)
            print(_as_json(promoted))
            return 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.timeout
        while True:
            role = await stub.GetRole(admin_pb2.AdminGetRoleRequest(), timeout=args.timeout)
            if args.command == "role" or role.caught_up or role.role == admin_pb2.ROLE_ACTIVE:
                print(_as_json(role))
                return 0
            if role.role == admin_pb2.ROLE_STOPPED or loop.time() >= deadline:
                print(_as_json(role), file=sys.stderr)
                return 1
            # Remote state with no notification to wait on: poll it.
            await asyncio.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ordermesh.handover`: show the role, wait until caught up, or promote."""
    parser = argparse.ArgumentParser(
        prog="python -m ordermesh.handover",
        description="Hand a stateful ordermesh service (ubscore, matcher) over to a standby.",
        epilog="Exit status 0: done (JSON on stdout); 1: refused, stopped or timed out.",
    )
    parser.add_argument(
        "command",
        choices=("role", "wait", "promote"),
        help="role: print it; wait: until the standby is caught up; promote: take over",
    )
    parser.add_argument("--target", default="127.0.0.1:50052", help="host:port of the instance")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to allow")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_command(args))
    except grpc.aio.AioRpcError as e:
        print(f"{args.command} {args.target}: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
