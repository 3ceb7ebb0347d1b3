-- What the grid side sets on a site's electrical tree through the HTTP API.
-- Grid events: a time-bounded limit (curtailment) or EV load target (demand response) on
-- one node. Their status (scheduled/active/completed) follows from the clock; only a
-- cancellation is stored.
CREATE TABLE grid_events (
    id           bigserial PRIMARY KEY,
    site_id      text NOT NULL,
    node         text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('limit', 'target')),
    kw           double precision NOT NULL CHECK (kw >= 0),
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL CHECK (ends_at > starts_at),
    reference    text,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL,
    cancelled_at timestamptz
);
CREATE INDEX grid_events_site_end ON grid_events (site_id, ends_at);

-- A node's static limit set through the API, in place of the one in the site's TOML.
CREATE TABLE node_limits (
    site_id  text NOT NULL,
    node     text NOT NULL,
    limit_kw double precision NOT NULL CHECK (limit_kw > 0),
    set_by   text NOT NULL,
    set_at   timestamptz NOT NULL,
    PRIMARY KEY (site_id, node)
);

-- A site's tariff set through the API (same shape as config/tariffs/*.toml), in place of
-- the one its TOML names.
CREATE TABLE site_tariffs (
    site_id text PRIMARY KEY,
    tariff  jsonb NOT NULL,
    set_by  text NOT NULL,
    set_at  timestamptz NOT NULL
);
