"""`tetriserve batch`: a file of OpenAI Batch API requests, answered into a file of results.

It sends each request of the input (deploy/batch_file.py) to a running deployment's
OpenAI API (`--url`), or to a deployment of its own on the Ray cluster it runs on (a
Ray job's, or a new local one), at most `--concurrency` at a time, and appends each answer
to the output as it arrives, so that a run that is killed loses nothing it was told. A
rerun with the same output skips the lines already answered; answers that say the server
was overloaded or failing (429, 5xx, or no answer at all after `--retries` tries) are
asked again. A bad line is answered with its own error, and the batch goes on.

    ray job submit --working-dir . -- \
        tetriserve batch --input requests.jsonl --output results.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
from tqdm import tqdm

from deploy import batch_file
from deploy.batch_file import BadLine, BatchRequest
from deploy.bench_args import positive
from deploy.serve_cmd import add_scheduling_args, scheduling_from_args

APP_NAME = "tetriserve-batch"
BACKOFF_S = 1.0  # before the first retry; doubled for each next one


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="answer a file of OpenAI Batch API requests",
        description="Send every request of an OpenAI Batch API input file (JSON lines of "
        "custom_id, method, url, body) and write one result line per request; a rerun skips "
        "what an earlier run answered.",
    )
    parser.add_argument("--input", type=Path, required=True, help="JSON lines of requests")
    parser.add_argument("--output", type=Path, required=True, help="JSON lines of results")
    parser.add_argument(
        "--url",
        default=None,
        help="a running deployment's base URL (default: deploy one on this Ray cluster)",
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="model of the own deployment (default: tiny)"
    )
    parser.add_argument("--serve-port", type=int, default=8000, help="own deployment's port")
    parser.add_argument("--concurrency", type=positive, default=8, help="requests at once")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    parser.add_argument(
        "--retries", type=int, default=3, help="tries again after a 429, a 5xx or no answer"
    )
    add_scheduling_args(parser)  # the own deployment's: ChunkSize, policies, streaming
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.input.is_file():
        raise SystemExit(f"tetriserve batch: no input file {args.input}")
    items = batch_file.read_requests(args.input)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    done = batch_file.keep_settled(args.output)
    pending = [item for item in items if item.key not in done]
    skipped = len(items) - len(pending)
    print(f"{len(items)} lines in {args.input}: {skipped} answered before")
    with _base_url(args) as url, args.output.open("a", encoding="utf-8") as output:
        counts = asyncio.run(_answer_all(url, pending, output, args, skipped))
    print(
        f"answered {counts['answered']} lines ({counts['errors']} with an error), "
        f"{counts['unsettled']} to ask again; results in {args.output}"
    )
    return 1 if counts["unsettled"] else 0


@contextmanager
def _base_url(args: argparse.Namespace) -> Iterator[str]:
    if args.url:
        yield args.url.rstrip("/")
        return
    from cluster.config import DeploymentConfig
    from deploy.app_builder import deployed_on_cluster
    from deploy.local_ray import init_ray

    address = os.environ.get("RAY_ADDRESS")
    init_ray(address=address, namespace=APP_NAME, log_to_driver=False, ignore_reinit_error=True)
    config = DeploymentConfig(
        model_dir=args.model,
        metrics_port=None,
        chunk_tokens=args.chunk_tokens,
        scheduling=scheduling_from_args(args),
    )
    print(f"deploying on Ray at {address or 'a new local cluster'}")
    with deployed_on_cluster(config, APP_NAME, args.serve_port) as url:
        yield url


async def _answer_all(
    url: str,
    pending: list[BatchRequest | BadLine],
    output: IO[str],
    args: argparse.Namespace,
    skipped: int,
) -> dict[str, int]:
    counts = {"answered": 0, "errors": 0, "unsettled": 0}
    queue: asyncio.Queue[BatchRequest | BadLine] = asyncio.Queue()
    for item in pending:
        queue.put_nowait(item)
    progress = tqdm(total=skipped + len(pending), initial=skipped, unit="line", file=sys.stdout)
    timeout = httpx.Timeout(args.timeout, connect=30.0)
    limits = httpx.Limits(max_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                item = queue.get_nowait()
                record = await _answer(client, item, args.retries)
                output.write(json.dumps(record) + "\n")
                output.flush()
                counts["answered"] += 1
                counts["errors"] += _is_error(record)
                counts["unsettled"] += not batch_file.settled(record)
                progress.update(1)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    progress.close()
    return counts


async def _answer(client: httpx.AsyncClient, item: BatchRequest | BadLine, retries: int) -> dict:
    if isinstance(item, BadLine):
        return batch_file.failure(item, item.code, item.message)
    problem = ""
    for attempt in range(retries + 1):
        if attempt:
            await asyncio.sleep(BACKOFF_S * 2 ** (attempt - 1))
        try:
            response = await client.post(item.url, json=item.body)
        except httpx.HTTPError as exc:
            problem = f"no answer from the server: {type(exc).__name__}: {exc}"
            continue
        body = _body(response)
        answer = batch_file.answer(item, response.status_code, body, _id(body, response))
        if batch_file.settled(answer) or attempt == retries:
            return answer
    return batch_file.failure(item, batch_file.UNANSWERED, problem)


def _body(response: httpx.Response) -> object:
    try:
        return response.json()
    except json.JSONDecodeError:
        return {"error": {"message": response.text, "type": "server_error", "code": None}}


def _id(body: object, response: httpx.Response) -> str:
    """The request id the server gave the answer (its body's `id`, else its header)."""
    if isinstance(body, dict) and isinstance(body.get("id"), str):
        return body["id"]
    return response.headers.get("x-request-id", "")


def _is_error(record: dict) -> bool:
    return record["error"] is not None or record["response"]["status_code"] >= 400
