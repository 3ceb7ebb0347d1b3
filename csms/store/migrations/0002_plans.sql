-- Every plan the scheduler made, so an operator can see why a car got what it got:
-- the inputs it saw (sessions, reservations, headroom), the setpoints per EVSE, how the
-- solver did, and what the stations said to the profiles.
CREATE TABLE plans (
    id                bigserial PRIMARY KEY,
    site_id           text NOT NULL,
    planned_at        timestamptz NOT NULL,
    trigger           text NOT NULL,
    sessions          integer NOT NULL,
    inputs            jsonb NOT NULL,
    schedule          jsonb NOT NULL,
    status            text NOT NULL,
    iterations        integer NOT NULL DEFAULT 0,
    fallback_used     boolean NOT NULL DEFAULT false,
    fallback_reason   text,
    solve_seconds     double precision NOT NULL DEFAULT 0,
    build_seconds     double precision NOT NULL DEFAULT 0,
    profiles_sent     integer NOT NULL DEFAULT 0,
    profiles_rejected integer NOT NULL DEFAULT 0,
    profiles_failed   integer NOT NULL DEFAULT 0
);
CREATE INDEX plans_site_time ON plans (site_id, planned_at DESC);
