"""A memory node's shared arena: only its own user may map it, and an engine attaches it by
name."""

from __future__ import annotations

import stat

from actors.kv.arena import SharedArena


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
