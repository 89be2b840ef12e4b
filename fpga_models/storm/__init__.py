"""Storm: the RDMA dataplane for small metadata lookups and transactions."""
