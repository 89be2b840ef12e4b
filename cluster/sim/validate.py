"""The simulator against the live system: the same requests, served twice, side by side.

`tetriserve sim validate` serves a workload on the live deployment with vLLM's benchmark
client, then replays the very requests it sent (their arrival times, prompt and output
lengths, from the client's detailed result) in the simulator, on a cost model profiled on
the same machine. This module turns a client result into simulator requests and the two
runs into rows: mean and p99 TTFT and JCT, live and simulated, and the error (sim / live -
1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cluster.sim.results import Latency
from cluster.sim.workload import SimRequest

METRICS = ("mean TTFT", "p99 TTFT", "mean JCT", "p99 JCT")
Row = dict[str, Any]


def _succeeded(result: dict[str, Any]) -> list[int]:
    return [i for i, error in enumerate(result["errors"]) if not error]


def requests_from_client(result: dict[str, Any]) -> list[SimRequest]:
    """The requests a client run sent (only those served), in arrival order, arrivals
    counted from the first; each runs to the output length it got."""
    served = _succeeded(result)
    if not served:
        raise ValueError("the client run served no request")
    starts = result["start_times"]
    first = min(starts[i] for i in served)
    order = sorted(served, key=lambda i: starts[i])
    return [
        SimRequest(
            index=index,
            arrival_s=starts[i] - first,
            prompt_tokens=int(result["input_lens"][i]),
            output_tokens=int(result["output_lens"][i]),
            family=0,
        )
        for index, i in enumerate(order)
    ]


def _figures(ttfts: Sequence[float], jcts: Sequence[float]) -> dict[str, float]:
    ttft, jct = Latency.of(ttfts), Latency.of(jcts)
    return {
        "mean TTFT": ttft.mean_s,
        "p99 TTFT": ttft.p99_s,
        "mean JCT": jct.mean_s,
        "p99 JCT": jct.p99_s,
    }


def validation_rows(
    workload: str, result: dict[str, Any], simulated: Sequence[SimRequest]
) -> list[Row]:
    """`{"workload", "metric", "live", "sim", "error"}` per metric, in seconds."""
    served = _succeeded(result)
    live = _figures([result["ttfts"][i] for i in served], [result["latencies"][i] for i in served])
    sim = _figures([r.ttft_s for r in simulated], [r.jct_s for r in simulated])
    return [
        {
            "workload": workload,
            "metric": metric,
            "live": live[metric],
            "sim": sim[metric],
            "error": sim[metric] / live[metric] - 1.0,
        }
        for metric in METRICS
    ]
