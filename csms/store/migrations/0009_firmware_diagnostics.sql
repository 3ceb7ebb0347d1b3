-- Block L (firmware) and block N (diagnostics): the CSMS-initiated flows that take a while
-- and report back, kept as status resources. `request_id` is the requestId sent to the
-- station (Commands.next_request_id), so a notification finds its request with
-- (station_id, request_id): the newest such row.

-- L: a rollout of one firmware image over many stations, at most `max_concurrent` at once.
CREATE TABLE firmware_rollouts (
    id               bigserial PRIMARY KEY,
    firmware         jsonb NOT NULL,   -- location, retrieve/install time, signature, certificate
    retries          integer,          -- passed to each station (its own download retries)
    retry_interval_s integer,
    max_concurrent   integer NOT NULL CHECK (max_concurrent >= 1),
    max_attempts     integer NOT NULL CHECK (max_attempts >= 1),
    retry_after_s    double precision NOT NULL CHECK (retry_after_s >= 0),
    stall_timeout_s  double precision NOT NULL CHECK (stall_timeout_s > 0),
    status           text NOT NULL,   -- running | completed | cancelled
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL,
    finished_at      timestamptz
);

CREATE TABLE firmware_rollout_stations (
    rollout_id bigint NOT NULL REFERENCES firmware_rollouts ON DELETE CASCADE,
    station_id text NOT NULL,
    position   integer NOT NULL,  -- the order the operator gave
    attempts   integer NOT NULL DEFAULT 0,
    update_id  bigint,            -- the newest firmware_updates row for this station
    PRIMARY KEY (rollout_id, station_id)
);

-- One UpdateFirmware sent to one station (L01/L02) and what became of it.
CREATE TABLE firmware_updates (
    id                  bigserial PRIMARY KEY,
    station_id          text NOT NULL,
    request_id          integer NOT NULL,
    rollout_id          bigint REFERENCES firmware_rollouts ON DELETE SET NULL,
    location            text NOT NULL,
    retrieve_at         timestamptz NOT NULL,
    install_at          timestamptz,
    retries             integer,
    retry_interval_s    integer,
    signature           text,
    signing_certificate text,
    reply_status        text,       -- the UpdateFirmwareResponse status
    reply_reason        text,       -- its statusInfo.reasonCode, or why there was no answer
    status              text NOT NULL,  -- newest FirmwareStatus, or Requested/NoAnswer/...
    outcome             text NOT NULL,  -- in_progress | installed | failed | cancelled
    history             jsonb NOT NULL DEFAULT '[]',
    created_by          text NOT NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX firmware_updates_station ON firmware_updates (station_id, request_id, id DESC);

-- N01: a GetLog request, its one-time upload token (SHA-256 only) and the uploaded file.
CREATE TABLE log_requests (
    id               bigserial PRIMARY KEY,
    station_id       text NOT NULL,
    request_id       integer NOT NULL,
    log_type         text NOT NULL,
    oldest_at        timestamptz,
    latest_at        timestamptz,
    retries          integer,
    retry_interval_s integer,
    token_hash       bytea,                   -- null once used
    token_expires_at timestamptz NOT NULL,
    reply_status     text,
    reply_reason     text,
    filename         text,                    -- as the station named it
    status           text NOT NULL,           -- newest UploadLogStatus, or Requested/...
    history          jsonb NOT NULL DEFAULT '[]',
    content          bytea,
    content_type     text,
    size_bytes       integer,
    uploaded_at      timestamptz,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX log_requests_station ON log_requests (station_id, request_id, id DESC);

-- N02-N06: the variable monitors a station has, as set through the CSMS or reported.
CREATE TABLE variable_monitors (
    station_id         text NOT NULL,
    monitor_id         integer NOT NULL,
    component          text NOT NULL,
    component_instance text NOT NULL DEFAULT '',
    evse_id            integer,
    connector_id       integer,
    variable           text NOT NULL,
    variable_instance  text NOT NULL DEFAULT '',
    type               text NOT NULL,
    value              double precision NOT NULL,
    severity           integer NOT NULL,
    transaction        boolean NOT NULL DEFAULT false,
    source             text NOT NULL,  -- set (by the CSMS) | report (NotifyMonitoringReport)
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (station_id, monitor_id)
);

-- N05: a GetMonitoringReport and the NotifyMonitoringReport parts that answer it.
CREATE TABLE monitoring_reports (
    id           bigserial PRIMARY KEY,
    station_id   text NOT NULL,
    request_id   integer NOT NULL,
    criteria     jsonb NOT NULL,          -- the request's filters, as sent
    reply_status text,
    parts        integer NOT NULL DEFAULT 0,
    monitors     jsonb NOT NULL DEFAULT '[]',
    complete     boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    completed_at timestamptz
);
CREATE INDEX monitoring_reports_station ON monitoring_reports (station_id, request_id, id DESC);

-- N07/N08: NotifyEvent's events, as alerts an operator lists.
CREATE TABLE alerts (
    id                bigserial PRIMARY KEY,
    station_id        text NOT NULL,
    event_id          integer NOT NULL,
    ts                timestamptz NOT NULL,
    trigger           text NOT NULL,
    cause             integer,
    actual_value      text NOT NULL,
    tech_code         text,
    tech_info         text,
    cleared           boolean NOT NULL,
    transaction_id    text,
    component         text NOT NULL,
    component_instance text,
    evse_id           integer,
    connector_id      integer,
    variable          text NOT NULL,
    variable_instance text,
    monitor_id        integer,
    notification_type text NOT NULL,
    severity          integer,   -- the monitor's, when the CSMS knows it
    received_at       timestamptz NOT NULL
);
CREATE INDEX alerts_received ON alerts (received_at DESC);
CREATE INDEX alerts_station ON alerts (station_id, received_at DESC);

-- N09/N10: one customer's data, asked of (and/or cleared on) stations and the CSMS itself.
-- A request to clear keeps no copy of the token: only its SHA-256 (subject_hash).
CREATE TABLE customer_requests (
    id                  bigserial PRIMARY KEY,
    request_id          integer NOT NULL,       -- sent to every station asked
    subject_hash        text NOT NULL,
    id_token            text,
    token_type          text,
    customer_identifier text,
    report              boolean NOT NULL,
    clear               boolean NOT NULL,
    csms_export         jsonb,                  -- what the CSMS held (report)
    csms_cleared        jsonb,                  -- counts of what it erased (clear)
    created_by          text NOT NULL,
    created_at          timestamptz NOT NULL
);

CREATE TABLE customer_request_stations (
    customer_request_id bigint NOT NULL REFERENCES customer_requests ON DELETE CASCADE,
    station_id   text NOT NULL,
    reply_status text,
    reply_reason text,
    chunks       jsonb NOT NULL DEFAULT '{}',  -- NotifyCustomerInformation data by seqNo
    complete     boolean NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (customer_request_id, station_id)
);
