-- Tokens for the operator HTTP API. Only the SHA-256 of each token is kept: the token itself
-- is shown once, when it is created (see csms/api/auth.py for why a plain hash suffices).
CREATE TABLE api_tokens (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL UNIQUE,
    role       text NOT NULL CHECK (role IN ('admin', 'operator', 'grid', 'viewer')),
    token_hash bytea NOT NULL UNIQUE,
    nodes      text[] NOT NULL DEFAULT '{}',  -- the nodes a grid token may act on
    created_at timestamptz NOT NULL
);

-- Charging needs a driver or an app set through the API (the EV's own ISO 15118 needs land
-- in the same columns), and the driver's opt-out of ordered charging.
ALTER TABLE transactions
    ADD COLUMN charge_now       boolean NOT NULL DEFAULT false,
    ADD COLUMN needs_source     text,
    ADD COLUMN needs_updated_at timestamptz;
