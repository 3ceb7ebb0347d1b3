-- Blocks B, C, D: the operator's say on boots, report requests, network profiles, and the
-- local authorization list kept in step with the token table.

-- B02/B03: what an operator holds a station at (NULL: the configured boot rules);
-- pending_since: when its boot was first answered Pending (bounds the wait for a report).
ALTER TABLE stations
    ADD COLUMN boot_hold text CHECK (boot_hold IN ('Pending', 'Rejected')),
    ADD COLUMN pending_since timestamptz,
    -- D01/D02: the local list version the station holds (as it last told us, or as we set)
    ADD COLUMN local_list_version integer,
    ADD COLUMN local_list_synced_at timestamptz;

-- B07/B08: one row per GetBaseReport / GetReport, assembled from its NotifyReport parts.
CREATE TABLE report_requests (
    station_id   text NOT NULL REFERENCES stations ON DELETE CASCADE,
    request_id   bigint NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('base', 'custom')),
    request      jsonb NOT NULL,
    status       text NOT NULL,        -- the station's answer, then Complete
    requested_at timestamptz NOT NULL,
    parts        integer NOT NULL DEFAULT 0,
    items        integer NOT NULL DEFAULT 0,
    last_seq_no  integer,
    completed_at timestamptz,
    PRIMARY KEY (station_id, request_id)
);

-- B09/B10: network connection profiles an operator keeps, and which went to which station.
CREATE TABLE network_profiles (
    name            text PRIMARY KEY,
    connection_data jsonb NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE TABLE station_network_profiles (
    station_id   text NOT NULL REFERENCES stations ON DELETE CASCADE,
    slot         integer NOT NULL,
    profile      text NOT NULL,
    status       text NOT NULL,        -- SetNetworkProfile answer, then Active once reset
    priority     text,
    sent_at      timestamptz NOT NULL,
    PRIMARY KEY (station_id, slot)
);

-- D: every change of the token table gets a version from one sequence, so a differential
-- local list holds exactly what changed since the version a station has.
CREATE SEQUENCE id_token_versions;
ALTER TABLE id_tokens ADD COLUMN version bigint NOT NULL DEFAULT nextval('id_token_versions');
CREATE INDEX id_tokens_version ON id_tokens (version);
CREATE TABLE id_token_removals (
    id_token   text NOT NULL,
    type       text NOT NULL,
    version    bigint NOT NULL DEFAULT nextval('id_token_versions'),
    removed_at timestamptz NOT NULL,
    PRIMARY KEY (id_token, type)
);
