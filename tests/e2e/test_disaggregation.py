"""The disaggregated path serves exactly what one plain vLLM engine serves.

Prefill instance → KV pages through the SuperNIC switch into a memory node → decode
instance, on the tiny model. The prefill engine samples the first token, which the decode
engine continues from with the KV of every prompt token read, not recomputed. Greedy text,
finish reason and token count equal plain vLLM's for prompts of mixed lengths (shorter than
a KV block, several blocks, longer than a prefill chunk), with and without adapters, with
stop strings (one may end the output at the first token) and penalties (which count the
first token as output), and for a hundred concurrent requests; a seeded sampled request
gives the same text every run; adapters never share KV; vLLM's own benchmark client
finishes 100 requests with no failure.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
import ray

from cluster.config import DeploymentConfig
from tests.support import plain_vllm, serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CHUNK_TOKENS = 128
ADAPTERS = (None, "r8", "r32")
WORDS = ["serve", "prefill", "decode", "memory", "switch", "page", "token", "adapter"]
WORDS += ["chunk", "lease", "node"]
NO_PENALTIES = (0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Case:
    """One greedy request; `penalties` are (frequency, presence, repetition)."""

    prompt: str
    adapter: str | None
    max_tokens: int
    stop: tuple[str, ...] = ()
    penalties: tuple[float, float, float] = NO_PENALTIES
    ignore_eos: bool = False


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str
    completion_tokens: int


def make_prompts(count: int, seed: int = 7) -> list[Case]:
    """Word counts from 2 to ~300, adapters in turn, 1, 8 or 16 tokens."""
    rng = random.Random(seed)
    lengths = [2, 5, 20, 31, 40, 70, 120, 200, 300, 150]
    cases = []
    for i in range(count):
        words = [rng.choice(WORDS) for _ in range(lengths[i % len(lengths)])]
        cases.append(Case(" ".join(words), ADAPTERS[i % len(ADAPTERS)], (1, 8, 16)[i % 3]))
    return cases


def isolation_cases() -> list[Case]:
    prompt = " ".join(WORDS * 6)
    return [Case(prompt, "r8", 12), Case(prompt, "r32", 12)]


def stop_and_penalty_cases() -> list[Case]:
    """Stop strings that may end the output at its first token or later, and penalties that
    must count the prefill's first token as output, with the same prompts unpenalised."""
    base = make_prompts(12, seed=11)
    stops = [("e",), ("a", "o"), (" s",), ("in",), ("zz",), ("t",)]
    penalties = [(1.5, 0.0, 1.0), (0.0, 1.2, 1.0), (0.8, 0.5, 1.3), (-0.5, 0.0, 1.0)]
    cases = [Case(c.prompt, c.adapter, 16, stop=stops[i % len(stops)]) for i, c in enumerate(base)]
    cases += [
        Case(c.prompt, c.adapter, 16, penalties=penalties[i % len(penalties)])
        for i, c in enumerate(base)
    ]
    return cases + [Case(c.prompt, c.adapter, 16) for c in base]


def failover_cases() -> list[Case]:
    """Long outputs, still streaming when a decode instance is killed under them."""
    rng = random.Random(3)
    return [
        Case(" ".join(rng.choice(WORDS) for _ in range(12)), None, 400, ignore_eos=True)
        for _ in range(6)
    ]


def handoff_cases() -> list[Case]:
    """A hundred requests of 2 to 24 tokens: every one hands its first token over."""
    rng = random.Random(5)
    return [
        Case(
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 60))),
            (None, "r8")[i % 2],
            rng.randint(2, 24),
        )
        for i in range(100)
    ]


def hundred_stop_cases() -> list[Case]:
    """The hundred handoff prompts with stop strings: some end the output at its first token,
    some across the handoff, some later, some never."""
    stops = [("e",), ("a", "o"), (" s",), ("in",), ("zz",), ("t",), ("er", "on"), (".",)]
    return [
        Case(case.prompt, case.adapter, 24, stop=stops[i % len(stops)])
        for i, case in enumerate(handoff_cases())
    ]


@pytest.fixture(scope="module")
def reference(tiny_model: Path) -> dict[Case, Answer]:
    """Greedy completions from one plain vLLM engine."""
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    cases = make_prompts(30) + isolation_cases() + make_prompts(12, seed=99)
    cases += stop_and_penalty_cases() + handoff_cases() + failover_cases()
    cases += hundred_stop_cases()
    llm = plain_vllm(tiny_model)
    try:
        loras = {
            name: LoRARequest(name, i + 1, str(tiny_model / "adapters" / name))
            for i, name in enumerate(a for a in ADAPTERS if a)
        }
        # One batch per adapter: this vLLM build on CPU corrupts base-model rows that share
        # a batch with LoRA rows, so a mixed batch would not be a trustworthy oracle.
        answers = {}
        for adapter in ADAPTERS:
            group = list(dict.fromkeys(case for case in cases if case.adapter == adapter))
            params = [
                SamplingParams(
                    max_tokens=case.max_tokens,
                    temperature=0.0,
                    stop=list(case.stop) or None,
                    frequency_penalty=case.penalties[0],
                    presence_penalty=case.penalties[1],
                    repetition_penalty=case.penalties[2],
                    ignore_eos=case.ignore_eos,
                )
                for case in group
            ]
            outputs = llm.generate(
                [case.prompt for case in group],
                params,
                lora_request=loras.get(adapter) if adapter else None,
            )
            for case, out in zip(group, outputs, strict=True):
                done = out.outputs[0]
                answers[case] = Answer(done.text, done.finish_reason, len(done.token_ids))
        return answers
    finally:
        llm.llm_engine.engine_core.shutdown()


@pytest.fixture(scope="module")
def server(tiny_model: Path, reference: dict) -> Iterator[str]:
    with serving(DeploymentConfig(model_dir=tiny_model, chunk_tokens=CHUNK_TOKENS)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def answer(client: openai.OpenAI, case: Case) -> Answer:
    frequency, presence, repetition = case.penalties
    response = client.completions.create(
        model=f"base:{case.adapter}" if case.adapter else "base",
        prompt=case.prompt,
        max_tokens=case.max_tokens,
        temperature=0,
        stop=list(case.stop) or None,
        frequency_penalty=frequency,
        presence_penalty=presence,
        extra_body={"repetition_penalty": repetition, "ignore_eos": case.ignore_eos},
    )
    choice = response.choices[0]
    return Answer(choice.text, choice.finish_reason, response.usage.completion_tokens)


def answer_all(client: openai.OpenAI, cases: list[Case]) -> dict[Case, Answer]:
    """The cases' answers, eight requests at a time."""
    with ThreadPoolExecutor(8) as pool:
        return dict(zip(cases, pool.map(lambda case: answer(client, case), cases), strict=True))


def complete(client: openai.OpenAI, case: Case) -> str:
    served = answer(client, case)
    assert served.completion_tokens == case.max_tokens
    return served.text


def decode_instances() -> list[str]:
    names = ray.util.list_named_actors(all_namespaces=True)
    return sorted(a["name"] for a in names if a["name"].startswith("decode-"))


def decode_counters() -> Counter[str]:
    """The decode instances' counters, summed."""
    total: Counter[str] = Counter()
    for name in decode_instances():
        stats = ray.get(ray.get_actor(name, namespace="tetriserve-test").stats.remote())
        total.update(
            {key: stats[key] for key in ("requests", "kv_tokens_loaded", "kv_pages_leased")}
        )
    return total


def mismatches(served: dict[Case, Answer], reference: dict[Case, Answer]) -> str:
    return "\n".join(
        f"{case}:\n  served {served[case]}\n  vLLM   {reference[case]}"
        for case in served
        if served[case] != reference[case]
    )


def test_greedy_text_equals_plain_vllm_and_decode_reads_kv(
    client: openai.OpenAI, reference: dict, tiny_model: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    before = decode_counters()
    cases = make_prompts(30)
    served = {case: answer(client, case) for case in cases}
    assert mismatches(served, reference) == ""
    after = decode_counters()
    decoded = [c for c in cases if c.max_tokens > 1]
    assert after["requests"] - before["requests"] == len(decoded)
    # The decode continued from the prefill's first token with the KV of every prompt token
    # read from the memory node: it computed none of them again.
    expected = sum(len(tokenizer(case.prompt)["input_ids"]) for case in decoded)
    assert after["kv_tokens_loaded"] - before["kv_tokens_loaded"] == expected
    assert after["kv_pages_leased"] > before["kv_pages_leased"]


def test_stop_strings_and_penalties_count_the_first_token_as_vllm_does(
    client: openai.OpenAI, reference: dict
) -> None:
    cases = stop_and_penalty_cases()
    served = {case: answer(client, case) for case in cases}
    assert mismatches(served, reference) == ""
    # The cases do what they are for: some stop strings end the output at its first token,
    # some later, and the penalties change the text.
    stopped = [served[c].completion_tokens for c in cases if c.stop and c.stop != ("zz",)]
    assert min(stopped) == 1 and max(stopped) > 1
    penalised = [c for c in cases if c.penalties != NO_PENALTIES]
    assert any(served[c] != served[Case(c.prompt, c.adapter, 16)] for c in penalised)


def test_a_hundred_decodes_continue_from_the_first_token_without_repeat_or_drop(
    client: openai.OpenAI, reference: dict
) -> None:
    cases = handoff_cases()
    served = answer_all(client, cases)
    assert mismatches(served, reference) == ""
    assert all(served[case].completion_tokens == case.max_tokens for case in cases)


def test_a_hundred_greedy_requests_with_stop_strings_end_as_plain_vllm_ends_them(
    client: openai.OpenAI, reference: dict
) -> None:
    cases = hundred_stop_cases()
    served = answer_all(client, cases)
    assert mismatches(served, reference) == ""
    reasons = Counter(served[case].finish_reason for case in cases)
    assert reasons["stop"] and reasons["length"]
    assert any(served[case].completion_tokens == 1 for case in cases if case.stop != ("zz",))


def test_a_seeded_sampled_request_gives_the_same_text_every_run(client: openai.OpenAI) -> None:
    def sample(prompt: str, seed: int) -> str:
        response = client.completions.create(
            model="base", prompt=prompt, max_tokens=24, temperature=0.9, top_p=0.95,
            seed=seed, extra_body={"top_k": 50},
        )  # fmt: skip
        return response.choices[0].text

    prompts = [case.prompt for case in make_prompts(4, seed=3)]
    first = {(p, seed): sample(p, seed) for p in prompts for seed in (1, 2)}
    with ThreadPoolExecutor(4) as pool:  # again, in other batches
        again = dict(zip(first, pool.map(lambda key: sample(*key), first), strict=True))
    assert again == first
    assert any(first[(p, 1)] != first[(p, 2)] for p in prompts)


def test_the_switch_accounts_the_kv_bytes_engines_moved_one_sided(client: openai.OpenAI) -> None:
    switch = ray.get_actor("switch-0", namespace="tetriserve-test")
    time.sleep(0.5)  # the engines report what they moved every 0.2 s
    stats = ray.get(switch.stats.remote())
    tenants = stats["tenants"].values()
    assert sum(t["bytes_in"] for t in tenants) > 0 and sum(t["bytes_out"] for t in tenants) > 0
    # On one machine the pages never crossed a network: no checksum or compression ran.
    assert stats["checksums_verified"] == 0 and stats["compression_ratio"] == 1.0
    assert ray.get(switch.stats.remote())["ops"]["Account"] > 0


def test_adapters_never_share_kv(client: openai.OpenAI, reference: dict) -> None:
    first, second = isolation_cases()
    for order in ((first, second), (second, first)):
        for case in order:
            assert complete(client, case) == reference[case].text
    assert reference[first] != reference[second]


def test_vllm_benchmark_client_completes_100_requests(
    server: str, tiny_model: Path, tmp_path: Path
) -> None:
    script = (
        "import argparse, sys\n"
        "from vllm.benchmarks.serve import add_cli_args, main\n"
        "parser = argparse.ArgumentParser(); add_cli_args(parser)\n"
        "main(parser.parse_args(sys.argv[1:]))\n"
    )
    args = [
        "--backend", "openai", "--base-url", server, "--endpoint", "/v1/completions",
        "--model", "base", "--tokenizer", str(tiny_model), "--dataset-name", "random",
        "--random-input-len", "64", "--random-output-len", "8", "--num-prompts", "100",
        "--max-concurrency", "8", "--ignore-eos", "--disable-tqdm", "--save-result",
        "--save-detailed", "--result-dir", str(tmp_path), "--result-filename", "result.json",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    errors = [error for error in result["errors"] if error]
    assert (result["completed"], errors) == (100, [])


# The failure tests run last: they kill parts of the module's deployment.


def test_a_killed_switch_is_started_again_and_kv_moves_through_it_again(
    client: openai.OpenAI, reference: dict
) -> None:
    """The switch's process dies: requests still get vLLM's text (their KV recomputed while
    it is down); Ray starts it again on its port, and KV moves through it again."""
    os.kill(_actor_pid("switch-0"), signal.SIGKILL)
    cases = [case for case in make_prompts(30) if case.max_tokens > 1][:6]
    assert [complete(client, case) for case in cases] == [reference[case].text for case in cases]
    deadline = time.monotonic() + 120
    for seed in range(1000, 2000):  # fresh prompts: no engine holds their KV
        fresh = next(case for case in make_prompts(3, seed=seed) if case.max_tokens > 1)
        before = decode_counters()["kv_tokens_loaded"]
        answer(client, fresh)
        if decode_counters()["kv_tokens_loaded"] > before:
            break
        assert time.monotonic() < deadline, "no KV moved through the restarted switch"
        time.sleep(2)


def test_lost_memory_node_means_recompute_not_wrong_text(
    client: openai.OpenAI, reference: dict
) -> None:
    ray.kill(ray.get_actor("memory-0", namespace="tetriserve-test"))
    before = decode_counters()
    cases = [case for case in make_prompts(9, seed=99) if case.max_tokens > 1]  # none cached
    assert [complete(client, case) for case in cases] == [reference[case].text for case in cases]
    after = decode_counters()
    assert after["requests"] - before["requests"] == len(cases)
    assert after["kv_tokens_loaded"] == before["kv_tokens_loaded"]  # all recomputed


def _streamed(client: openai.OpenAI, case: Case, streaming: threading.Semaphore) -> Answer:
    """`case` as a stream; `streaming` is released once its first tokens arrived."""
    chunks = client.completions.create(
        model="base",
        prompt=case.prompt,
        max_tokens=case.max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": case.ignore_eos},
    )
    text, reason, tokens = [], None, 0
    for chunk in chunks:
        if chunk.choices:
            if not text:
                streaming.release()
            text.append(chunk.choices[0].text)
            reason = chunk.choices[0].finish_reason or reason
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return Answer("".join(text), reason, tokens)


def _actor_pid(name: str) -> int:
    actor = ray.get_actor(name, namespace="tetriserve-test")
    return ray.get(actor.__ray_call__.remote(lambda _: os.getpid()))


def test_streams_on_a_killed_decode_instance_finish_as_without_the_fault(
    client: openai.OpenAI, reference: dict
) -> None:
    """decode-0's process dies mid-stream: its streams go on from another decode instance,
    token-identical; new requests are served; Ray starts decode-0 again and it rejoins."""
    cases = failover_cases()
    streaming = threading.Semaphore(0)
    with ThreadPoolExecutor(len(cases)) as pool:
        futures = {case: pool.submit(_streamed, client, case, streaming) for case in cases}
        for _ in cases:
            assert streaming.acquire(timeout=120)
        os.kill(_actor_pid("decode-0"), signal.SIGKILL)
        served = {case: future.result(timeout=300) for case, future in futures.items()}
    assert mismatches(served, reference) == ""
    after = make_prompts(3, seed=5)[1]
    assert answer(client, after).completion_tokens == after.max_tokens
    _rejoins("decode-0")


def _rejoins(name: str) -> None:
    """Ray starts `name` again, and it answers the scheduler's monitor once more."""
    scheduler = ray.get_actor("global-scheduler", namespace="tetriserve-test")
    deadline = time.monotonic() + 300
    while name in ray.get(scheduler.stats.remote())["unreachable"]:
        assert time.monotonic() < deadline, f"{name} did not rejoin"
        time.sleep(2)
    assert ray.get(ray.get_actor(name, namespace="tetriserve-test").stats.remote())


def test_requests_on_a_killed_prefill_instance_finish_as_without_the_fault(
    client: openai.OpenAI, reference: dict
) -> None:
    """prefill-0's process dies with requests queued and in flight: those without a token
    yet wait for Ray to start it again and are placed there; those with one go on from
    it on a decode instance. Every one finishes as without the fault."""
    cases = make_prompts(12, seed=99)
    with ThreadPoolExecutor(len(cases)) as pool:
        futures = {case: pool.submit(answer, client, case) for case in cases}
        time.sleep(0.05)
        os.kill(_actor_pid("prefill-0"), signal.SIGKILL)
        served = {case: future.result(timeout=300) for case, future in futures.items()}
    assert mismatches(served, reference) == ""
    _rejoins("prefill-0")


def test_with_every_decode_instance_gone_for_good_the_prefill_instance_decodes_too(
    client: openai.OpenAI, reference: dict
) -> None:
    """No decode instance is left, nor will Ray start one again: the prefill instance runs
    the decodes as well, and the text is the same."""
    for name in decode_instances():
        ray.kill(ray.get_actor(name, namespace="tetriserve-test"))
    cases = make_prompts(6, seed=99)
    served = {case: answer(client, case) for case in cases}
    assert mismatches(served, reference) == ""
