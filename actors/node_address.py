"""The host a server of this process binds and publishes, so that other nodes can dial it:
the address of the Ray node the process runs on (outside Ray, loopback). Ray picks that
address for its own services on the node; a multi-node cluster on one machine gives each
node its own loopback address (127.0.0.2, 127.0.0.3, ...)."""

from __future__ import annotations

LOOPBACK = "127.0.0.1"


def node_host() -> str:
    import ray

    if not ray.is_initialized():
        return LOOPBACK
    return ray.util.get_node_ip_address()
