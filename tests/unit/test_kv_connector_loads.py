"""The KV connector's scheduler side plans a request's page load once: a load that failed
(pages gone from the memory node) is recomputed, never sent for again."""

from __future__ import annotations

from types import SimpleNamespace

from actors.engine.kv_connector import TetriserveConnector
from cluster.kv_transfer import PARAMS_KEY

BLOCK = 4
PROMPT = list(range(10))


def scheduler_side() -> TetriserveConnector:
    """The connector's scheduler-side state alone, without an engine to configure it."""
    connector = TetriserveConnector.__new__(TetriserveConnector)
    connector._block_size = BLOCK
    connector._producing = {}
    connector._to_load = []
    connector._load_planned = set()
    return connector


def consuming_request(request_id: str = "r1") -> SimpleNamespace:
    pages = [["memory-0", page * 4096, 4096, "arena-0", page * 4096] for page in range(3)]
    body = {"role": "consume", "tenant": 1, "num_tokens": 10, "nonce": 7, "pages": pages}
    return SimpleNamespace(
        request_id=request_id, kv_transfer_params={PARAMS_KEY: body}, prompt_token_ids=PROMPT
    )


def fake_blocks(*block_ids: int) -> SimpleNamespace:
    return SimpleNamespace(get_block_ids=lambda: (list(block_ids),))


def test_the_prompt_is_loaded_asynchronously_up_to_its_last_token() -> None:
    connector = scheduler_side()
    # The engine computes the prompt's last token itself: 9 of 10 come from the pages.
    assert connector.get_num_new_matched_tokens(consuming_request(), 0) == (9, True)
    connector.update_state_after_alloc(consuming_request(), fake_blocks(5, 6, 7), 9)
    (load,) = connector._to_load
    assert [page.block_id for page in load.pages] == [5, 6, 7]
    assert [page.needed_tokens for page in load.pages] == [4, 4, 1]


def test_a_request_back_in_the_queue_after_its_load_recomputes() -> None:
    connector = scheduler_side()
    request = consuming_request()
    assert connector.get_num_new_matched_tokens(request, 0) == (9, True)
    connector.update_state_after_alloc(request, fake_blocks(5, 6, 7), 9)
    # The load failed and vLLM put the request back with nothing computed: asking the
    # same pages again would fail again, for ever.
    assert connector.get_num_new_matched_tokens(request, 0) == (0, False)


def test_a_request_whose_blocks_were_not_allocated_is_asked_again() -> None:
    connector = scheduler_side()
    request = consuming_request()
    assert connector.get_num_new_matched_tokens(request, 0) == (9, True)
    # No room this step: vLLM asks again next step, and the pages are still to load.
    assert connector.get_num_new_matched_tokens(request, 0) == (9, True)
    assert connector._to_load == []


def test_a_finished_request_is_forgotten() -> None:
    connector = scheduler_side()
    request = consuming_request()
    connector.update_state_after_alloc(request, fake_blocks(5, 6, 7), 9)
    connector.request_finished(request, [5, 6, 7])
    assert connector._load_planned == set()
