-- Issue 14: grid emission factors per site, revenue shares per portfolio and programme,
-- and the revenue-split ledger of settled events.

-- Emission factors set through the API (grid company, aggregator, admin), in place of the
-- site file's `[carbon] kg_per_kwh_daily` over [starts_at, ends_at).
CREATE TABLE emission_factors (
    site_id    text NOT NULL,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL CHECK (ends_at > starts_at),
    kg_per_kwh double precision NOT NULL CHECK (kg_per_kwh >= 0 AND kg_per_kwh <= 3),
    set_by     text NOT NULL,
    set_at     timestamptz NOT NULL,
    PRIMARY KEY (site_id, starts_at)
);

-- How a settled event's net revenue is split; programme '' is the portfolio's default.
CREATE TABLE revenue_shares (
    portfolio_id  text NOT NULL REFERENCES portfolios ON DELETE CASCADE,
    programme     text NOT NULL DEFAULT '' CHECK (length(programme) <= 64),
    aggregator    double precision NOT NULL CHECK (aggregator >= 0),
    site_operator double precision NOT NULL CHECK (site_operator >= 0),
    drivers       double precision NOT NULL CHECK (drivers >= 0),
    set_by        text NOT NULL,
    set_at        timestamptz NOT NULL,
    PRIMARY KEY (portfolio_id, programme),
    CHECK (abs(aggregator + site_operator + drivers - 1) < 1e-6)
);

-- One row per payee of a settled event; each row has its own audit entry (audit_seq).
-- No foreign key to portfolios: the ledger outlives a removed portfolio. Drivers appear
-- only by pseudonym (a keyed hash), never by name or id token.
CREATE TABLE ledger_entries (
    id               bigserial PRIMARY KEY,
    portfolio_id     text NOT NULL,
    programme        text NOT NULL,
    site_id          text NOT NULL,
    event_id         bigint NOT NULL,
    settlement_seq   bigint NOT NULL,
    party            text NOT NULL CHECK (party IN ('aggregator', 'site_operator', 'driver')),
    payee            text NOT NULL,
    contribution_kwh double precision,
    amount           numeric(16, 2) NOT NULL,
    currency         text NOT NULL,
    audit_seq        bigint NOT NULL,
    recorded_at      timestamptz NOT NULL,
    UNIQUE (portfolio_id, site_id, event_id, party, payee)
);
CREATE INDEX ledger_entries_portfolio ON ledger_entries (portfolio_id, recorded_at);
