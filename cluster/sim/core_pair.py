"""Two simulated engines on one node's cores: a prefill instance and its decode partner.

On the live path this is what actors/engine/core_share.py does to the two vLLM engines of a
pair, by `cluster.core_sharing`'s rule: the prefill engine leads, the decode engine yields.
The cost model prices a pass on all of the node's cores (`wide`); on its home core alone a
pass takes `CostModel.narrow` times as long. Each pass's width is decided when it starts
and kept to its end (the live decode checks again after every layer; a pass here is one
decision):

- a prefill pass runs wide while its partner is idle, or while its `LeadBudget` allows;
  else narrow;
- a decode step runs wide while the prefill engine is idle; while a prefill pass runs wide
  the decode's threads wait (they run at idle priority on its core), so its step starts
  when that pass ends, narrow; beside a narrow prefill pass it runs narrow.

An engine is busy from the start of its pass to `LINGER_S` after its end, as on the live
board. An instance that flips role keeps its engine's side, as a live one does.
"""

from __future__ import annotations

from cluster.core_sharing import LINGER_S, LeadBudget
from cluster.sim.cost_model import NarrowCost


class CorePair:
    def __init__(self, lead_share: float, narrow: NarrowCost) -> None:
        self.budget = LeadBudget(lead_share)
        self.narrow = narrow
        self._prefill_until = float("-inf")  # end of the prefill's current or last pass
        self._prefill_wide = False
        self._decode_until = float("-inf")  # end of the decode's current or last step

    def _busy(self, until: float, now: float) -> bool:
        return now < until + LINGER_S

    def leading_pass(self, now: float, wide_s: float) -> float:
        """Seconds a pass of the leading engine (the pair's prefill) of `wide_s` on all
        cores takes when it starts now."""
        if not self._busy(self._decode_until, now):
            seconds, wide = wide_s, True
        elif self.budget.allows(now):
            seconds, wide = wide_s, True
            self.budget.spent(now, now + seconds)
        else:
            seconds, wide = wide_s * self.narrow.prefill, False
        self._prefill_until, self._prefill_wide = now + seconds, wide
        return seconds

    def yielding_pass(self, now: float, wide_s: float) -> float:
        """Seconds from now until a pass of the yielding engine (the pair's decode) of
        `wide_s` on all cores, due now, has run."""
        if not self._busy(self._prefill_until, now):
            seconds = wide_s
        elif self._prefill_wide and now < self._prefill_until:
            seconds = self._prefill_until - now + wide_s * self.narrow.decode
        else:
            seconds = wide_s * self.narrow.decode
        self._decode_until = now + seconds
        return seconds
