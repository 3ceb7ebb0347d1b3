-- Stations provisioned by the operator, with their boot and connection state.
CREATE TABLE stations (
    id                 text PRIMARY KEY,
    password_hash      text,
    created_at         timestamptz NOT NULL,
    vendor             text,
    model              text,
    serial_number      text,
    firmware_version   text,
    boot_status        text,
    boot_reason        text,
    last_boot_at       timestamptz,
    online             boolean NOT NULL DEFAULT false,
    connected_at       timestamptz,
    disconnected_at    timestamptz,
    last_seen          timestamptz,
    report_complete_at timestamptz
);

-- Latest StatusNotification per connector.
CREATE TABLE connectors (
    station_id   text NOT NULL REFERENCES stations ON DELETE CASCADE,
    evse_id      integer NOT NULL,
    connector_id integer NOT NULL,
    status       text NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (station_id, evse_id, connector_id)
);

-- Device model, from NotifyReport (and GetVariables answers).
CREATE TABLE variables (
    station_id         text NOT NULL REFERENCES stations ON DELETE CASCADE,
    component          text NOT NULL,
    component_instance text NOT NULL DEFAULT '',
    evse_id            integer NOT NULL DEFAULT 0,
    connector_id       integer NOT NULL DEFAULT 0,
    variable           text NOT NULL,
    variable_instance  text NOT NULL DEFAULT '',
    attribute_type     text NOT NULL DEFAULT 'Actual',
    value              text,
    mutability         text,
    data_type          text,
    unit               text,
    reported_at        timestamptz NOT NULL,
    PRIMARY KEY (station_id, component, component_instance, evse_id, connector_id,
                 variable, variable_instance, attribute_type)
);

CREATE TABLE id_tokens (
    id_token   text NOT NULL,
    type       text NOT NULL,
    status     text NOT NULL DEFAULT 'Accepted',
    group_id   text,
    expires_at timestamptz,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (id_token, type)
);

-- One row per transaction. Meter start/stop are the lowest and highest energy register
-- readings seen, so totals do not depend on delivery order and a replay changes nothing.
CREATE TABLE transactions (
    station_id        text NOT NULL REFERENCES stations ON DELETE CASCADE,
    transaction_id    text NOT NULL,
    evse_id           integer,
    connector_id      integer,
    id_token          text,
    token_type        text,
    started_at        timestamptz,
    ended_at          timestamptz,
    charging_state    text,
    stopped_reason    text,
    meter_start_wh    double precision,
    meter_stop_wh     double precision,
    energy_wh         double precision GENERATED ALWAYS AS (meter_stop_wh - meter_start_wh) STORED,
    max_seq_no        integer NOT NULL DEFAULT -1,
    event_count       integer NOT NULL DEFAULT 0,
    offline_events    integer NOT NULL DEFAULT 0,
    departure_time    timestamptz,
    energy_wanted_wh  double precision,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (station_id, transaction_id)
);
CREATE INDEX transactions_active ON transactions (station_id, evse_id) WHERE ended_at IS NULL;

-- Every TransactionEvent once: (station, transaction, seqNo) is the de-duplication key.
CREATE TABLE transaction_events (
    station_id     text NOT NULL,
    transaction_id text NOT NULL,
    seq_no         integer NOT NULL,
    event_type     text NOT NULL,
    trigger_reason text NOT NULL,
    ts             timestamptz NOT NULL,
    offline        boolean NOT NULL,
    received_at    timestamptz NOT NULL,
    payload        jsonb NOT NULL,
    PRIMARY KEY (station_id, transaction_id, seq_no)
);

-- One row per sampled value; the key makes a re-delivered sample a no-op.
CREATE TABLE meter_values (
    station_id     text NOT NULL,
    evse_id        integer NOT NULL,
    ts             timestamptz NOT NULL,
    measurand      text NOT NULL,
    phase          text NOT NULL DEFAULT '',
    location       text NOT NULL DEFAULT '',
    context        text,
    transaction_id text,
    value          double precision NOT NULL,
    unit           text,
    PRIMARY KEY (station_id, evse_id, ts, measurand, phase, location)
);
CREATE INDEX meter_values_transaction ON meter_values (station_id, transaction_id)
    WHERE transaction_id IS NOT NULL;

-- ISO 15118 charging needs (NotifyEVChargingNeeds), kept as sent.
CREATE TABLE ev_charging_needs (
    id               bigserial PRIMARY KEY,
    station_id       text NOT NULL,
    evse_id          integer NOT NULL,
    transaction_id   text,
    received_at      timestamptz NOT NULL,
    departure_time   timestamptz,
    energy_amount_wh double precision,
    transfer_mode    text,
    payload          jsonb NOT NULL
);

-- Charger-initiated notifications whose content we keep but do not act on.
CREATE TABLE notifications (
    id          bigserial PRIMARY KEY,
    station_id  text NOT NULL,
    action      text NOT NULL,
    received_at timestamptz NOT NULL,
    payload     jsonb NOT NULL
);
CREATE INDEX notifications_station ON notifications (station_id, action, received_at);
