-- Issue 14, the VPP: demand-response invitations with the offer proposed for each, and the
-- dispatch an accepted offer becomes (its per-site grid events, shares and re-splits).
CREATE TABLE vpp_invitations (
    id            bigserial PRIMARY KEY,
    portfolio_id  text NOT NULL REFERENCES portfolios ON DELETE CASCADE,
    programme     text NOT NULL,
    direction     text NOT NULL CHECK (direction IN ('down', 'up')),
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL CHECK (ends_at > starts_at),
    requested_kw  double precision NOT NULL CHECK (requested_kw > 0),
    price_per_kwh double precision NOT NULL CHECK (price_per_kwh >= 0),
    answer_by     timestamptz NOT NULL,
    reference     text,
    offer         jsonb NOT NULL,  -- the proposal, with each site's capacity and baseline
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE INDEX vpp_invitations_portfolio ON vpp_invitations (portfolio_id, starts_at);

-- One accepted offer: the portfolio's commitment over the window, split across sites.
CREATE TABLE vpp_dispatches (
    id            bigserial PRIMARY KEY,
    invitation_id bigint NOT NULL UNIQUE REFERENCES vpp_invitations ON DELETE CASCADE,
    portfolio_id  text NOT NULL,
    direction     text NOT NULL CHECK (direction IN ('down', 'up')),
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL CHECK (ends_at > starts_at),
    committed_kw  double precision NOT NULL CHECK (committed_kw >= 0),
    first_shares  jsonb NOT NULL,  -- member -> kW, as accepted
    shares        jsonb NOT NULL,  -- member -> kW it holds now (changes on a re-split)
    accepted_by   text NOT NULL,
    accepted_at   timestamptz NOT NULL
);
CREATE INDEX vpp_dispatches_window ON vpp_dispatches (ends_at);

-- The grid events (csms/grid.py) that carry a dispatch to each site's engine.
CREATE TABLE vpp_dispatch_events (
    dispatch_id bigint NOT NULL REFERENCES vpp_dispatches ON DELETE CASCADE,
    member      text NOT NULL,  -- "site" or "site/node", as in the portfolio
    event_id    bigint NOT NULL REFERENCES grid_events ON DELETE CASCADE,
    PRIMARY KEY (dispatch_id, event_id)
);

-- Every re-split: when, the shares before and after, and which sites fell short.
CREATE TABLE vpp_resplits (
    dispatch_id bigint NOT NULL REFERENCES vpp_dispatches ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    short_sites text[] NOT NULL,
    before      jsonb NOT NULL,
    after       jsonb NOT NULL
);

-- A site's past sessions by start, for the arrival history behind its forecast.
CREATE INDEX transactions_station_started ON transactions (station_id, started_at);
