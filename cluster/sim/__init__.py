"""A deterministic discrete-event simulator of a tetriserve cluster, on the live policies.

events.py       the clock: timed events, ties in push order
cost_model.py   engine step costs from a JSON file in costs/ (prefill knee, decode, KV)
workload.py     requests: Poisson arrivals, the five TetriInfer workloads
prediction.py   predicted decode lengths: the live LengthPredictor, or given lengths
batching.py     continuous batching in one engine, with preemption
instances.py    prefill and decode instances (PrefillQueue, admission, KV link)
cluster_sim.py  the disaggregated cluster: placement, dispatch, monitor rounds, flips
baseline.py     colocated vLLM-like instances, with or without chunked prefill
results.py      TTFT, JCT, resource and utilisation of a run
replay.py       paper replays (`tetriinfer_rows`)
lora_routing.py LoRA requests routed over instances by rank (`tetriserve sim caraserve`)
"""
