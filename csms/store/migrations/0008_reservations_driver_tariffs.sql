-- Block H: reservations the CSMS asked a station for (ReserveNow), with the station's
-- answer and what became of them. The id is the OCPP reservation id (an integer).
-- status: Requested (sent, no answer yet), the ReserveNow answer (Accepted, Faulted,
-- Occupied, Rejected, Unavailable), Failed (no answer: offline, error, timeout), then
-- for an Accepted one: Cancelled (CancelReservation), Expired, Removed
-- (ReservationStatusUpdate) or Used (a transaction named it).
CREATE TABLE reservations (
    id              serial PRIMARY KEY,
    station_id      text NOT NULL REFERENCES stations ON DELETE CASCADE,
    evse_id         integer CHECK (evse_id IS NULL OR evse_id > 0),  -- NULL: any EVSE
    connector_type  text,
    id_token        text NOT NULL,
    token_type      text NOT NULL,
    group_id_token  text,
    group_token_type text,
    expires_at      timestamptz NOT NULL,
    status          text NOT NULL,
    status_reason   text,
    transaction_id  text,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    ended_at        timestamptz
);
CREATE INDEX reservations_station_status ON reservations (station_id, status);
CREATE INDEX reservations_expiry ON reservations (expires_at) WHERE status = 'Accepted';

-- Block I: the prices drivers pay (not the site's energy tariff used for planning).
-- A tariff with group_id applies to the id tokens of that group; the one without is the
-- default for every other token. Money is numeric: exact decimal arithmetic.
CREATE TABLE driver_tariffs (
    id                      text PRIMARY KEY,
    group_id                text UNIQUE,   -- NULL: the default tariff (at most one)
    currency                text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    price_per_kwh           numeric NOT NULL DEFAULT 0 CHECK (price_per_kwh >= 0),
    bands                   jsonb NOT NULL DEFAULT '[]',  -- time-of-use prices per kWh
    utc_offset_minutes      integer NOT NULL DEFAULT 0,
    price_per_hour_charging numeric NOT NULL DEFAULT 0 CHECK (price_per_hour_charging >= 0),
    price_per_hour_parked   numeric NOT NULL DEFAULT 0 CHECK (price_per_hour_parked >= 0),
    parking_grace_minutes   integer NOT NULL DEFAULT 0 CHECK (parking_grace_minutes >= 0),
    session_fee             numeric NOT NULL DEFAULT 0 CHECK (session_fee >= 0),
    description             text,
    updated_by              text NOT NULL,
    updated_at              timestamptz NOT NULL
);
CREATE UNIQUE INDEX driver_tariffs_one_default ON driver_tariffs ((group_id IS NULL))
    WHERE group_id IS NULL;

-- The cost of each transaction: the running cost while it runs, the final cost once it
-- ended. The tariff is fixed when the driver's token is first known, so a tariff changed
-- later does not reprice a session already under way.
CREATE TABLE transaction_costs (
    station_id     text NOT NULL,
    transaction_id text NOT NULL,
    tariff_id      text NOT NULL,
    tariff         jsonb NOT NULL,   -- the tariff it is priced with
    tariff_fixed   boolean NOT NULL DEFAULT false,  -- set once the driver's token is known
    currency       text NOT NULL,
    cost           numeric NOT NULL,
    breakdown      jsonb NOT NULL,
    final          boolean NOT NULL DEFAULT false,
    computed_at    timestamptz NOT NULL,
    PRIMARY KEY (station_id, transaction_id)
);
