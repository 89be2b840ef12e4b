"""The rule by which a prefill engine and a decode engine share a node's cores.

On a machine with few cores, the default deployment gives prefill instance i and decode
instance i a core each, and each engine also runs on its partner's core: the prefill
engine *leads* (it runs on both cores whenever it has work, and a decode never delays it),
the decode engine *yields* (it borrows the prefill's core only while the prefill engine is
idle). So that a backlog of prompts cannot starve the decodes, the prefill's steps on the
decode's core while the decode has work add up to at most a share of any second
(`LeadBudget`). An engine counts as busy until `LINGER_S` after its last step ends: the gap
between two steps of one burst is a few milliseconds.

This is pure bookkeeping, used twice: by the vLLM plugin that applies it to live engines
(actors/engine/core_share.py, over a shared-memory board of deadlines) and by the
simulator's core pairs (cluster/sim/core_pair.py).
"""

from __future__ import annotations

from collections import deque

# A core's home engine counts as busy this long after its last forward pass ends.
LINGER_S = 0.01
# The window over which a leading engine's share of its partner's cores is counted.
LEAD_WINDOW_S = 1.0


class LeadBudget:
    """How much of its partner's cores a leading engine may take: steps on them add up to at
    most `share` of the last `window_s` seconds."""

    def __init__(self, share: float, window_s: float = LEAD_WINDOW_S) -> None:
        self.share = share
        self.window_s = window_s
        self._steps: deque[tuple[float, float]] = deque()

    def allows(self, now: float) -> bool:
        if self.share >= 1.0:
            return True
        start = now - self.window_s
        while self._steps and self._steps[0][1] <= start:
            self._steps.popleft()
        used = sum(min(end, now) - max(begin, start) for begin, end in self._steps)
        return used < self.share * self.window_s

    def spent(self, begin: float, end: float) -> None:
        if self.share < 1.0:
            self._steps.append((begin, end))
