"""Adapters loaded and unloaded at run time, through vLLM's own HTTP calls.

Fifty adapters of mixed ranks, written beside the served model and not known to it at
start, are loaded through `/v1/load_lora_adapter` and listed by `/v1/models` at once; each
then serves exactly the greedy text plain vLLM serves with it. Unloading refuses new
requests with a 404 and lets a request under way finish. A name loaded again with other
weights serves the new weights (no engine slot or KV page of the old one is reused).
Every bad load is a 4xx in OpenAI's error shape that changes nothing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from cluster.config import DeploymentConfig
from cluster.model_factory import AdapterSet, make_model
from tests.support import plain_vllm, serving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ADAPTER_COUNT = 50
PROMPT = "The adapter store keeps every page of the"
MAX_TOKENS = 8
CHUNK_TOKENS = 128


@pytest.fixture(scope="module")
def lora_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fifty adapters of ranks 8, 16, 32 and 64 for the tiny model (its base weights are
    those of every seed-0 tiny model), in a folder of their own."""
    adapters = AdapterSet(count=ADAPTER_COUNT, ranks=(8, 16, 32, 64))
    model = make_model(tmp_path_factory.mktemp("many") / "tiny", "tiny", 0, adapters)
    return model / "adapters"


@pytest.fixture(scope="module")
def expected(tiny_model: Path, lora_root: Path) -> dict[str, str]:
    """Plain vLLM's greedy text for every adapter, loaded as its own LoRA request."""
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    llm = plain_vllm(tiny_model, max_model_len=512)
    try:
        params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0)
        folders = sorted(p for p in lora_root.iterdir() if p.is_dir())
        requests = [LoRARequest(p.name, i + 1, str(p)) for i, p in enumerate(folders)]
        outputs = llm.generate([PROMPT] * len(requests), params, lora_request=requests)
        return {p.name: o.outputs[0].text for p, o in zip(folders, outputs, strict=True)}
    finally:
        llm.llm_engine.engine_core.shutdown()
        del llm


@pytest.fixture(scope="module")
def server(tiny_model: Path, lora_root: Path, expected: dict[str, str]) -> Iterator[str]:
    config = DeploymentConfig(model_dir=tiny_model, lora_root=lora_root, chunk_tokens=CHUNK_TOKENS)
    with serving(config) as url:
        yield url


def _load(server: str, name: str, path: Path | str) -> httpx.Response:
    body = {"lora_name": name, "lora_path": str(path)}
    return httpx.post(f"{server}/v1/load_lora_adapter", json=body, timeout=60)


def _unload(server: str, name: str) -> httpx.Response:
    return httpx.post(f"{server}/v1/unload_lora_adapter", json={"lora_name": name}, timeout=60)


def _models(server: str) -> list[str]:
    return [card["id"] for card in httpx.get(f"{server}/v1/models", timeout=60).json()["data"]]


def _complete(server: str, adapter: str, max_tokens: int = MAX_TOKENS) -> httpx.Response:
    body = {
        "model": f"base:{adapter}",
        "prompt": PROMPT,
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    return httpx.post(f"{server}/v1/completions", json=body, timeout=300)


def test_fifty_adapters_loaded_at_run_time_serve_plain_vllms_text(
    server: str, lora_root: Path, expected: dict[str, str]
) -> None:
    names = sorted(expected)
    assert not set(names) & {m.removeprefix("base:") for m in _models(server)}
    for name in names:
        answer = _load(server, name, lora_root / name)
        assert answer.status_code == 200, answer.text
        assert answer.text == f"Success: LoRA adapter '{name}' added successfully."
    assert {f"base:{name}" for name in names} <= set(_models(server))
    # All at once: more adapters than the engines' LoRA slots and the instances' host tier.
    with ThreadPoolExecutor(8) as pool:
        answers = dict(zip(names, pool.map(lambda n: _complete(server, n), names), strict=True))
    served = {name: answer.json()["choices"][0]["text"] for name, answer in answers.items()}
    assert served == expected
    assert len(set(served.values())) > 1  # the adapters do change the text


def _outside(lora_root: Path) -> Path:
    outside = lora_root.parent.parent / "outside"
    if not outside.exists():
        shutil.copytree(lora_root / sorted(p.name for p in lora_root.iterdir())[0], outside)
    return outside


BAD_LOADS = {
    "path outside the root": (lambda root: ("x1", _outside(root)), 400, "outside"),
    "missing files": (lambda root: ("x2", root / "nothing-here"), 400, "not a directory"),
    "no name": (lambda root: ("", root), 400, "must be provided"),
    "name taken": (
        lambda root: ("r8", root / sorted(p.name for p in root.iterdir())[0]),
        400,
        "already been loaded",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_LOADS))
def test_a_bad_load_is_a_4xx_that_changes_nothing(server: str, lora_root: Path, case: str) -> None:
    make, status, reason = BAD_LOADS[case]
    name, path = make(lora_root)
    before = _models(server)
    answer = _load(server, name, path)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert reason in error["message"] and error["code"] == status
    assert error["type"] == "BadRequestError" and error["param"] is None  # as vLLM answers
    assert _models(server) == before
    assert _complete(server, "r8").status_code == 200


def test_a_malformed_body_is_a_400(server: str) -> None:
    answer = httpx.post(f"{server}/v1/load_lora_adapter", json={"lora_name": "x"}, timeout=60)
    assert answer.status_code == 400
    assert "lora_path" in answer.json()["error"]["message"]


def test_unloading_lets_a_running_request_finish_and_refuses_new_ones(
    server: str, lora_root: Path
) -> None:
    name = sorted(p.name for p in lora_root.iterdir())[1]
    assert _load(server, "leaving", lora_root / name).status_code == 200
    body = {
        "model": "base:leaving",
        "prompt": PROMPT,
        "max_tokens": 64,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
    }
    with httpx.stream("POST", f"{server}/v1/completions", json=body, timeout=300) as stream:
        events = stream.iter_lines()
        first = next(line for line in events if line.startswith("data: "))
        assert json.loads(first.removeprefix("data: "))["choices"][0]["finish_reason"] is None
        # Unloaded while the request is under way: its first token is out, 63 are to come.
        unloaded = _unload(server, "leaving")
        assert unloaded.status_code == 200
        assert unloaded.text == "Success: LoRA adapter 'leaving' removed successfully."
        rest = [line.removeprefix("data: ") for line in events if line.startswith("data: ")]
    assert rest[-1] == "[DONE]"
    assert json.loads(rest[-2])["choices"][0]["finish_reason"] == "length"
    assert _complete(server, "leaving").status_code == 404
    assert "base:leaving" not in _models(server)
    again = _unload(server, "leaving")
    assert again.status_code == 404 and again.json()["error"]["type"] == "NotFoundError"


def test_a_name_loaded_again_serves_its_new_weights(
    server: str, lora_root: Path, expected: dict[str, str]
) -> None:
    first = sorted(expected)[0]
    second = next(n for n in sorted(expected) if expected[n] != expected[first])
    assert _load(server, "again", lora_root / first).status_code == 200
    assert _complete(server, "again").json()["choices"][0]["text"] == expected[first]
    assert _unload(server, "again").status_code == 200
    assert _load(server, "again", lora_root / second).status_code == 200
    assert _complete(server, "again").json()["choices"][0]["text"] == expected[second]
