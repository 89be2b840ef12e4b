"""A memory node's shared arena: only its own user may map it, and an engine attaches it by
name, when it runs on the arena's node."""

from __future__ import annotations

import stat

from actors.kv.arena import SharedArena, arena_node


def test_the_arena_is_owner_only_and_attaches_by_name() -> None:
    arena = SharedArena.create(1 << 16)
    try:
        assert stat.S_IMODE(arena.path.stat().st_mode) == 0o600
        arena.buffer[:4] = b"page"
        attached = SharedArena.attach(arena.name)
        assert attached is not None and bytes(attached.buffer[:4]) == b"page"
        attached.close()
        assert SharedArena.attach(arena.name + "0") is None
    finally:
        arena.close()
    assert not arena.path.exists()


def test_an_engine_attaches_only_the_arenas_of_its_own_node() -> None:
    arena = SharedArena.create(1 << 16, node="nodea")
    try:
        assert arena_node(arena.name) == "nodea"
        here = SharedArena.attach(arena.name, node="nodea")
        assert here is not None
        here.close()
        # Another Ray node on the same machine: the file is there, but not for it.
        assert SharedArena.attach(arena.name, node="nodeb") is None
        anywhere = SharedArena.attach(arena.name)  # no node given: any on this machine
        assert anywhere is not None
        anywhere.close()
    finally:
        arena.close()
