"""The gRPC front door serves what the HTTP one serves, and refuses with gRPC status codes.

One Serve app on the tiny model with both proxies up: a real `grpc.insecure_channel` calls
`tetriserve.v1.Generation/Generate`; its streamed greedy text equals `/v1/completions` for
the same prompt and adapter; bad input ends with INVALID_ARGUMENT or NOT_FOUND, and the
server keeps serving afterwards. Adapters load and unload over gRPC as over HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import ray
from ray import serve
from ray.serve.generated import serve_pb2, serve_pb2_grpc

from cluster.config import DeploymentConfig
from deploy.app_builder import build_app
from deploy.grpc_ingress import grpc_options
from tests.support import free_port
from tetriserve.v1 import adapters_pb2, generate_pb2, generate_pb2_grpc

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

APP = "tetriserve"
METADATA = (("application", APP),)
PROMPT = "The prefill instance hands its pages to the decode instance"


def wait_for_app(channel: grpc.Channel, timeout_s: float = 60) -> None:
    """Until the gRPC proxy routes to the app (its route table lags `serve.run` a little)."""
    stub = serve_pb2_grpc.RayServeAPIServiceStub(channel)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            apps = stub.ListApplications(serve_pb2.ListApplicationsRequest(), timeout=5)
            if APP in apps.application_names:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.5)
    pytest.fail("the gRPC proxy never listed the app")


@pytest.fixture(scope="module")
def servers(tiny_model: Path) -> Iterator[tuple[str, grpc.Channel]]:
    http_port, grpc_port = free_port(), free_port()
    ray.init(namespace="tetriserve-grpc-test", include_dashboard=False)
    serve.start(
        http_options={"host": "127.0.0.1", "port": http_port},
        grpc_options=grpc_options(grpc_port),
    )
    serve.run(build_app(DeploymentConfig(model_dir=tiny_model)), name=APP, route_prefix="/")
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    try:
        wait_for_app(channel)
        yield f"http://127.0.0.1:{http_port}", channel
    finally:
        channel.close()
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def stub(servers: tuple[str, grpc.Channel]) -> generate_pb2_grpc.GenerationStub:
    return generate_pb2_grpc.GenerationStub(servers[1])


def generate(
    stub: generate_pb2_grpc.GenerationStub, **fields
) -> list[generate_pb2.GenerateResponse]:
    request = generate_pb2.GenerateRequest(**fields)
    return list(stub.Generate(request, metadata=METADATA, timeout=120))


def http_text(base: str, model: str, prompt: str, max_tokens: int) -> str:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    response = httpx.post(f"{base}/v1/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["text"]


@pytest.mark.parametrize("model", ["base", "base:r8"])
def test_streamed_text_equals_http_completion(
    servers: tuple[str, grpc.Channel], stub: generate_pb2_grpc.GenerationStub, model: str
) -> None:
    sampling = generate_pb2.SamplingParams(max_tokens=8)
    messages = generate(stub, model=model, prompt=PROMPT, sampling=sampling)
    assert len(messages) > 1
    assert "".join(m.text_delta for m in messages) == http_text(servers[0], model, PROMPT, 8)
    assert sum(len(m.token_ids) for m in messages) == 8
    last = messages[-1]
    assert last.finish_reason == generate_pb2.FINISH_REASON_LENGTH
    assert last.completion_tokens == 8 and not last.error
    assert all(m.finish_reason == generate_pb2.FINISH_REASON_UNSPECIFIED for m in messages[:-1])
    assert {m.request_id for m in messages} == {messages[0].request_id} != {""}


def test_token_id_prompt_and_default_max_tokens(
    stub: generate_pb2_grpc.GenerationStub, tiny_model: Path
) -> None:
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(str(tiny_model))(PROMPT)["input_ids"]
    by_text = generate(stub, model="base", prompt=PROMPT, request_id="mine")
    by_ids = generate(stub, model="base", prompt_token_ids=ids)
    assert by_text[-1].completion_tokens == 16  # max_tokens 0 means the default
    assert {m.request_id for m in by_text} == {"mine"}
    # The same text and tokens; how a stream is cut into messages depends on timing.
    assert "".join(m.text_delta for m in by_ids) == "".join(m.text_delta for m in by_text)
    assert [t for m in by_ids for t in m.token_ids] == [t for m in by_text for t in m.token_ids]


REFUSED = {
    "unknown adapter": ({"model": "base:nope", "prompt": "x"}, grpc.StatusCode.NOT_FOUND),
    "unknown model": ({"model": "gpt-4", "prompt": "x"}, grpc.StatusCode.NOT_FOUND),
    "empty prompt": ({"model": "base"}, grpc.StatusCode.INVALID_ARGUMENT),
    "prompt over context": (
        {"model": "base", "prompt": "word " * 5000},
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_input_gets_status_code_and_server_keeps_serving(
    stub: generate_pb2_grpc.GenerationStub, case: str
) -> None:
    fields, code = REFUSED[case]
    with pytest.raises(grpc.RpcError) as refused:
        generate(stub, **fields)
    assert refused.value.code() == code
    assert refused.value.details()
    sampling = generate_pb2.SamplingParams(max_tokens=2)
    after = generate(stub, model="base", prompt="still up?", sampling=sampling)
    assert after[-1].completion_tokens == 2


def _text(responses: list[generate_pb2.GenerateResponse]) -> str:
    return "".join(r.text_delta for r in responses)


def test_adapters_load_and_unload_over_grpc(
    stub: generate_pb2_grpc.GenerationStub, tiny_model: Path
) -> None:
    path = str(tiny_model / "adapters" / "r8")
    load = adapters_pb2.LoadLoraAdapterRequest(lora_name="grpc-copy", lora_path=path)
    reply = stub.LoadLoraAdapter(load, metadata=METADATA, timeout=60)
    assert reply.message == "Success: LoRA adapter 'grpc-copy' added successfully."
    sampling = generate_pb2.SamplingParams(max_tokens=8)
    copy = generate(stub, model="base:grpc-copy", prompt=PROMPT, sampling=sampling)
    original = generate(stub, model="base:r8", prompt=PROMPT, sampling=sampling)
    assert _text(copy) == _text(original)  # the same weights under another name
    with pytest.raises(grpc.RpcError) as taken:
        stub.LoadLoraAdapter(load, metadata=METADATA, timeout=60)
    assert taken.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "already been loaded" in taken.value.details()
    unload = adapters_pb2.UnloadLoraAdapterRequest(lora_name="grpc-copy")
    stub.UnloadLoraAdapter(unload, metadata=METADATA, timeout=60)
    with pytest.raises(grpc.RpcError) as gone:
        generate(stub, model="base:grpc-copy", prompt=PROMPT, sampling=sampling)
    assert gone.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as unknown:
        stub.UnloadLoraAdapter(unload, metadata=METADATA, timeout=60)
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
