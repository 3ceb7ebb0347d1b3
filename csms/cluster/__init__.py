"""Several CSMS processes, on one machine or many, as one CSMS: a NATS broker routes CALLs
to the process holding a station's socket, fans events out, and tells a process when a
station it holds reconnected elsewhere. Only what one process does not need lives here;
without a broker URL none of it runs (docs/decisions/0024-cluster-broker.md)."""
