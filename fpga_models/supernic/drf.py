"""Dominant Resource Fairness: how the sNIC splits its resources among tenants each epoch.

A tenant's demand is a vector: how much of each resource (ingress and egress bandwidth, each
NT's throughput, packet store, NT memory) one unit of its traffic uses. Its dominant share is
the largest fraction of any one resource it holds. DRF raises every tenant's dominant share at
the same pace (progressive filling); a tenant stops when it reaches its demand cap or when a
resource it needs runs out. `drf_tasks` is the discrete form of the DRF paper (whole tasks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Vector = Mapping[str, float]
_EPSILON = 1e-12


def dominant_share(usage: Vector, capacities: Vector) -> float:
    return max(
        (amount / capacities[resource] for resource, amount in usage.items() if amount > 0),
        default=0.0,
    )


def drf_allocate(
    capacities: Vector,
    per_unit: Mapping[str, Vector],
    caps: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Units of traffic per tenant under DRF with optional per-tenant caps (their demand)."""
    caps = caps or {}
    dominant = {user: dominant_share(vector, capacities) for user, vector in per_unit.items()}
    units = dict.fromkeys(per_unit, 0.0)
    used = dict.fromkeys(capacities, 0.0)
    active = {user for user, share in dominant.items() if share > 0 and caps.get(user, 1.0) > 0}
    while active:
        # Raising the common dominant share by `step` gives user u step / dominant[u] units.
        pace = {
            resource: sum(per_unit[user].get(resource, 0.0) / dominant[user] for user in active)
            for resource in capacities
        }
        step = min(
            [
                (capacities[resource] - used[resource]) / pace[resource]
                for resource in capacities
                if pace[resource] > 0
            ]
            + [(caps[user] - units[user]) * dominant[user] for user in active if user in caps]
        )
        step = max(step, 0.0)
        for user in active:
            units[user] += step / dominant[user]
        for resource in capacities:
            used[resource] += step * pace[resource]
        full = {r for r in capacities if used[r] >= capacities[r] * (1 - 1e-9) - _EPSILON}
        active = {
            user
            for user in active
            if not (user in caps and units[user] >= caps[user] * (1 - 1e-9))
            and not any(per_unit[user].get(resource, 0.0) > 0 for resource in full)
        }
    return units


def drf_tasks(capacities: Vector, task_demand: Mapping[str, Vector]) -> dict[str, int]:
    """Whole tasks per user: repeatedly launch a task for the user with the lowest dominant
    share whose next task still fits, until none fits."""
    tasks = dict.fromkeys(task_demand, 0)
    used = dict.fromkeys(capacities, 0.0)
    candidates = set(task_demand)
    while candidates:
        user = min(
            candidates,
            key=lambda u: (
                dominant_share({r: a * tasks[u] for r, a in task_demand[u].items()}, capacities),
                u,
            ),
        )
        demand = task_demand[user]
        if all(used[r] + demand.get(r, 0.0) <= capacities[r] + _EPSILON for r in capacities):
            tasks[user] += 1
            for resource, amount in demand.items():
                used[resource] += amount
        else:
            candidates.discard(user)
    return tasks


def jain_index(values: Sequence[float]) -> float:
    """(sum x)^2 / (n * sum x^2): 1.0 when all are equal, 1/n when one holds everything."""
    total = sum(values)
    squares = sum(value * value for value in values)
    return total * total / (len(values) * squares) if squares > 0 else 1.0
