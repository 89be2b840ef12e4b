"""Which Ray node this process runs on: the host a server of this process binds and
publishes, so that other nodes can dial it (the node's address; outside Ray, loopback),
and the node's tag, which says whether another actor's shared memory is on this node
(actors/kv/arena.py). Ray picks the address for its own services on the node; a multi-node
cluster on one machine gives each node its own loopback address (127.0.0.2, 127.0.0.3,
...), and each node is its own place all the same: nothing is shared between nodes but
what the network carries."""

from __future__ import annotations

LOOPBACK = "127.0.0.1"
LOCAL_TAG = "local"
NODE_TAG_CHARS = 16


def node_host() -> str:
    import ray

    if not ray.is_initialized():
        return LOOPBACK
    return ray.util.get_node_ip_address()


def node_tag() -> str:
    """A short name of this Ray node ("local" outside Ray)."""
    import ray

    if not ray.is_initialized():
        return LOCAL_TAG
    return ray.get_runtime_context().get_node_id()[:NODE_TAG_CHARS]
