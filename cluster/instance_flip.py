"""Instance flip: moving an instance between the prefill and decode roles.

Roles are virtual: every instance can run either. The cluster monitor feeds each round's
loads to `FlipController.observe`; when one role has an instance idle for a sustained stretch
while every active instance of the other role is busy, that instance starts draining. The
global scheduler routes only to `routable` instances, so a draining one receives no new work;
once its outstanding work reaches zero it is `ready_to_flip`, the scheduler switches it, and
`flipped` confirms the new role, after which it is routable again under that role.

`reported` takes each instance's own word for its role, so a scheduler started again (with
the deployment's first roles) routes by the roles instances hold. `take_over` keeps both
roles served when instances die: a role none of whose instances
answers (Ray may be starting them again) is taken on by an instance of the other role,
drained and flipped the same way, as long as another instance keeps that role.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from cluster.placement import InstanceLoad


class Role(StrEnum):
    PREFILL = "prefill"
    DECODE = "decode"


class FlipState(StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"


@dataclass(slots=True)
class InstanceState:
    """One instance as the flip controller tracks it."""

    instance_id: str
    role: Role
    state: FlipState = FlipState.ACTIVE
    idle_rounds: int = 0  # consecutive observed rounds with nothing outstanding
    outstanding: int = 0  # as last observed


class FlipController:
    """Decides when an instance drains for a flip, and tracks it until the flip is confirmed.

    `idle_rounds`: consecutive idle monitor rounds before an instance may flip; None: never
    on its own, only on `request_flip`.
    `busy_outstanding`: outstanding requests at which an instance of the other role is busy.
    `min_per_role`: active instances each role keeps; neither flips below it.
    """

    def __init__(
        self,
        roles: Mapping[str, Role],
        idle_rounds: int | None = 30,
        busy_outstanding: int = 2,
        min_per_role: int = 1,
    ) -> None:
        if (
            (idle_rounds is not None and idle_rounds < 1)
            or busy_outstanding < 1
            or min_per_role < 0
        ):
            raise ValueError("need idle_rounds >= 1, busy_outstanding >= 1, min_per_role >= 0")
        self._idle_rounds = idle_rounds
        self._busy_outstanding = busy_outstanding
        self._min_per_role = min_per_role
        self._states = {iid: InstanceState(iid, Role(role)) for iid, role in roles.items()}

    def observe(self, loads: Mapping[str, InstanceLoad]) -> list[str]:
        """Take one monitor round; return the ids that started draining in it (at most one).

        Instances missing from `loads` keep their last observation; unknown ids are ignored.
        """
        for iid, load in loads.items():
            if iid in self._states:
                self._record(self._states[iid], load.outstanding)
        if self._idle_rounds is None:
            return []
        # Per role, once a round: whether an idle instance of it may start draining.
        may_drain = {
            role: self._role_busy(_other(role)) and self._may_lose_one(role) for role in Role
        }
        eligible = [
            state
            for state in self._states.values()
            if state.state is FlipState.ACTIVE
            and state.idle_rounds >= self._idle_rounds
            and may_drain[state.role]
        ]
        if not eligible:
            return []
        chosen = min(eligible, key=lambda state: (-state.idle_rounds, state.instance_id))
        chosen.state = FlipState.DRAINING
        return [chosen.instance_id]

    def request_flip(self, instance_id: str) -> None:
        """Start draining `instance_id` on request, keeping `min_per_role` active instances."""
        state = self._state(instance_id)
        if state.state is not FlipState.ACTIVE:
            raise ValueError(f"{instance_id} is already draining")
        if not self._may_lose_one(state.role):
            raise ValueError(f"{instance_id} is among the last {self._min_per_role} {state.role}")
        state.state = FlipState.DRAINING

    def take_over(self, reachable: Collection[str]) -> str | None:
        """When no `reachable` instance is active in a role, the least busy reachable,
        active instance of the other role starts draining to take it on, if another
        reachable instance keeps that role. Returns it, or None. (With no other one, the
        scheduler sends work of both roles to the survivors, GlobalScheduler._reachable.)"""
        for role in Role:
            donor_role = _other(role)
            if any(s.instance_id in reachable for s in self._active(role)) or any(
                s.role is donor_role and s.state is FlipState.DRAINING
                for s in self._states.values()
            ):
                continue  # served, or already being taken over
            keepers = [s for s in self._active(donor_role) if s.instance_id in reachable]
            if len(keepers) >= 2:
                chosen = min(keepers, key=lambda s: (s.outstanding, s.instance_id))
                chosen.state = FlipState.DRAINING
                return chosen.instance_id
        return None

    def reported(self, instance_id: str, role: Role) -> None:
        """The instance says it serves as `role`. Where that is not its role here, the
        instance's word holds: this controller started again with the deployment's first
        roles (its scheduler was restarted), or the instance did (Ray started it again in
        the role it was built with), or a flip was made that was never confirmed."""
        state = self._states.get(instance_id)
        if state is None or state.role is role:
            return
        state.role = role
        state.state = FlipState.ACTIVE
        state.idle_rounds = 0

    def routable(self, role: Role) -> list[str]:
        """Active instances of `role`, by id; draining ones take no new work."""
        return sorted(s.instance_id for s in self._active(role))

    def ready_to_flip(self) -> list[str]:
        """Draining instances with nothing outstanding at the last observation, by id."""
        return sorted(
            s.instance_id
            for s in self._states.values()
            if s.state is FlipState.DRAINING and s.outstanding == 0
        )

    def changing(self) -> bool:
        """Whether an instance is draining towards the other role."""
        return any(s.state is FlipState.DRAINING for s in self._states.values())

    def flipped(self, instance_id: str) -> Role:
        """Confirm the flip of a ready instance: new role, active, counters reset."""
        if instance_id not in self.ready_to_flip():
            raise ValueError(f"{instance_id} is not drained and ready to flip")
        state = self._state(instance_id)
        state.role = _other(state.role)
        state.state = FlipState.ACTIVE
        state.idle_rounds = 0
        state.outstanding = 0
        return state.role

    def role(self, instance_id: str) -> Role:
        return self._state(instance_id).role

    def state(self, instance_id: str) -> FlipState:
        return self._state(instance_id).state

    def _state(self, instance_id: str) -> InstanceState:
        try:
            return self._states[instance_id]
        except KeyError:
            raise KeyError(f"unknown instance {instance_id!r}") from None

    def _record(self, state: InstanceState, outstanding: int) -> None:
        state.outstanding = outstanding
        state.idle_rounds = state.idle_rounds + 1 if outstanding == 0 else 0

    def _role_busy(self, role: Role) -> bool:
        """At least one active instance of `role`, and every one of them busy."""
        active = self._active(role)
        return bool(active) and all(s.outstanding >= self._busy_outstanding for s in active)

    def _may_lose_one(self, role: Role) -> bool:
        return len(self._active(role)) - 1 >= self._min_per_role

    def _active(self, role: Role) -> list[InstanceState]:
        return [s for s in self._states.values() if s.role is role and s.state is FlipState.ACTIVE]


def _other(role: Role) -> Role:
    return Role.DECODE if role is Role.PREFILL else Role.PREFILL
