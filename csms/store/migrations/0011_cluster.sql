-- Scale-out (csms/cluster/): which worker process holds each station's socket, and the
-- workers alive. Written on connect and disconnect; a worker not seen for a while is
-- swept by any other, with its stations (docs/decisions/0024-cluster-broker.md).
CREATE TABLE cluster_workers (
    worker_id   text PRIMARY KEY,
    node        text NOT NULL,
    worker      integer NOT NULL,
    pid         integer NOT NULL,
    started_at  timestamptz NOT NULL,
    seen_at     timestamptz NOT NULL
);

CREATE TABLE station_sockets (
    station_id    text PRIMARY KEY,
    worker_id     text NOT NULL,
    connected_at  timestamptz NOT NULL
);
CREATE INDEX station_sockets_worker ON station_sockets (worker_id);
