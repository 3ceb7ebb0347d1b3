-- Block A security: each station's security profile, the certificates the CSMS's CA
-- issued, and the security events stations report (A04), kept as alerts.

-- The lowest profile the station may connect with (A05: never lower once raised).
-- NULL: not set yet (the first successful connection sets it).
ALTER TABLE stations ADD COLUMN security_profile smallint
    CHECK (security_profile BETWEEN 0 AND 3);

CREATE TABLE station_certificates (
    serial           text PRIMARY KEY,   -- hex
    station_id       text NOT NULL REFERENCES stations ON DELETE CASCADE,
    certificate_type text NOT NULL,      -- ChargingStationCertificate
    subject          text NOT NULL,
    not_before       timestamptz NOT NULL,
    not_after        timestamptz NOT NULL,
    pem              text NOT NULL,
    issued_at        timestamptz NOT NULL,
    source           text NOT NULL,      -- csr (SignCertificate) | cli (stations add)
    status           text NOT NULL,      -- Issued | Accepted | Rejected | Failed
    renewal_requested_at timestamptz
);
CREATE INDEX station_certificates_by_station ON station_certificates (station_id, not_after);

CREATE TABLE security_events (
    id          bigserial PRIMARY KEY,
    station_id  text NOT NULL REFERENCES stations ON DELETE CASCADE,
    type        text NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    tech_info   text,
    critical    boolean NOT NULL
);
CREATE INDEX security_events_by_time ON security_events (received_at DESC);
CREATE INDEX security_events_by_station ON security_events (station_id, received_at DESC);
