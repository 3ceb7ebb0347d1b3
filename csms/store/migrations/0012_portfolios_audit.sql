-- Issue 14, first part: portfolios of sites an aggregator pools, the aggregator role scoped
-- to its portfolios, and the tamper-evident log of what was dispatched and settled.
CREATE TABLE portfolios (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    operator    text NOT NULL CHECK (length(operator) BETWEEN 1 AND 200),
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL
);

-- A member is a whole site (node NULL) or one node of it.
CREATE TABLE portfolio_members (
    portfolio_id text NOT NULL REFERENCES portfolios ON DELETE CASCADE,
    site_id      text NOT NULL,
    node         text NOT NULL DEFAULT '',  -- '': the whole site
    PRIMARY KEY (portfolio_id, site_id, node)
);

ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens
    ADD CONSTRAINT api_tokens_role_check
        CHECK (role IN ('admin', 'operator', 'grid', 'aggregator', 'viewer')),
    ADD COLUMN portfolios text[] NOT NULL DEFAULT '{}';  -- what an aggregator token may see

-- Append-only, hash-chained and signed (csms/audit.py): each entry's hash covers the
-- previous entry's hash, so a changed, removed or reordered entry breaks the chain.
CREATE TABLE audit_log (
    seq        bigint PRIMARY KEY,
    at         timestamptz NOT NULL,
    actor      text NOT NULL,
    kind       text NOT NULL,
    body       jsonb NOT NULL,
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL,
    signature  bytea NOT NULL
);
