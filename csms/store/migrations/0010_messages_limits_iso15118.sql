-- Blocks O (display messages), K (profile reports, composite schedules, external limits,
-- EV charging schedules) and M (ISO 15118 certificates installed on a station).

-- O01/O02/O06: the display messages a station holds, as far as the CSMS knows: a message
-- the station accepted through SetDisplayMessage, or one it reported in a complete,
-- unfiltered NotifyDisplayMessages report (the station is the truth: O04).
CREATE TABLE display_messages (
    station_id     text NOT NULL REFERENCES stations ON DELETE CASCADE,
    message_id     integer NOT NULL,
    priority       text NOT NULL,
    state          text,
    starts_at      timestamptz,
    ends_at        timestamptz,
    transaction_id text,
    evse_id        integer,
    format         text NOT NULL,
    language       text,
    content        text NOT NULL,
    source         text NOT NULL CHECK (source IN ('set', 'reported')),
    message        jsonb NOT NULL,  -- the MessageInfo as sent or reported
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (station_id, message_id)
);

-- K09 and O03/O04: a report the CSMS asked for with a requestId (GetChargingProfiles,
-- GetDisplayMessages) and the station sends in parts (ReportChargingProfiles,
-- NotifyDisplayMessages with tbc), assembled in arrival order.
CREATE TABLE station_reports (
    station_id   text NOT NULL REFERENCES stations ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('ChargingProfiles', 'DisplayMessages')),
    request_id   integer NOT NULL,
    request      jsonb NOT NULL DEFAULT '{}',   -- the request as sent (its filter)
    status       text,                          -- the station's answer to the request
    items        jsonb NOT NULL DEFAULT '[]',   -- the parts' entries, concatenated
    parts        integer NOT NULL DEFAULT 0,
    truncated    boolean NOT NULL DEFAULT false,
    complete     boolean NOT NULL DEFAULT false,
    requested_at timestamptz,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (station_id, kind, request_id)
);

-- K08: GetCompositeSchedule answers, kept so they can be read (and compared) later.
CREATE TABLE composite_schedules (
    id           bigserial PRIMARY KEY,
    station_id   text NOT NULL REFERENCES stations ON DELETE CASCADE,
    evse_id      integer NOT NULL,
    duration_s   integer NOT NULL,
    rate_unit    text,
    status       text NOT NULL,
    schedule     jsonb,
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL
);
CREATE INDEX composite_schedules_station ON composite_schedules (station_id, requested_at);

-- K11-K14: the limit an external system (EMS, grid operator) puts on a station or EVSE,
-- from NotifyChargingLimit until ClearedChargingLimit. evse_id 0: the whole station.
CREATE TABLE external_charging_limits (
    station_id    text NOT NULL REFERENCES stations ON DELETE CASCADE,
    evse_id       integer NOT NULL,
    source        text NOT NULL,
    grid_critical boolean,
    schedules     jsonb NOT NULL,  -- chargingSchedule[] as sent; [] when none was given
    notified_at   timestamptz NOT NULL,
    PRIMARY KEY (station_id, evse_id, source)
);

-- K15-K17: the charging schedule an ISO 15118 EV chose (NotifyEVChargingSchedule).
CREATE TABLE ev_charging_schedules (
    id             bigserial PRIMARY KEY,
    station_id     text NOT NULL REFERENCES stations ON DELETE CASCADE,
    evse_id        integer NOT NULL,
    transaction_id text,
    time_base      timestamptz NOT NULL,
    schedule       jsonb NOT NULL,
    received_at    timestamptz NOT NULL
);
CREATE INDEX ev_charging_schedules_station ON ev_charging_schedules (station_id, received_at);

-- M: the certificates a station reported in GetInstalledCertificateIds, per type.
CREATE TABLE station_certificate_ids (
    station_id       text NOT NULL REFERENCES stations ON DELETE CASCADE,
    certificate_type text NOT NULL,
    serial_number    text NOT NULL,
    issuer_name_hash text NOT NULL,
    issuer_key_hash  text NOT NULL,
    hash_algorithm   text NOT NULL,
    children         jsonb NOT NULL DEFAULT '[]',
    reported_at      timestamptz NOT NULL,
    PRIMARY KEY (station_id, certificate_type, serial_number, issuer_key_hash)
);
