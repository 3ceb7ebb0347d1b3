-- Issue 15, CSMS side: V2G terms per vehicle and per session, and what the car reports.
-- A vehicle is known by the id token its driver charges with (one vehicle per token).
CREATE TABLE vehicles (
    id                    text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    id_token              text UNIQUE CHECK (length(id_token) BETWEEN 1 AND 255),
    battery_kwh           double precision CHECK (battery_kwh > 0 AND battery_kwh <= 1000),
    v2g_opted_in          boolean NOT NULL DEFAULT false,
    v2g_mode              text NOT NULL DEFAULT 'charge_only'
        CHECK (v2g_mode IN ('charge_only', 'backup_only', 'export_allowed')),
    min_soc               double precision NOT NULL DEFAULT 0 CHECK (min_soc BETWEEN 0 AND 1),
    compensation_per_kwh  double precision NOT NULL DEFAULT 0
        CHECK (compensation_per_kwh BETWEEN 0 AND 100),
    updated_at            timestamptz NOT NULL
);

-- One row per transaction with V2G facts: the terms the driver or operator set for this
-- session (NULL: the vehicle's) and the car's own V2X parameters (2.1
-- NotifyEVChargingNeeds); the stricter of the two is planned (csms/v2g.py).
CREATE TABLE session_v2g (
    station_id            text NOT NULL,
    transaction_id        text NOT NULL,
    opted_in              boolean,
    mode                  text CHECK (mode IN ('charge_only', 'backup_only', 'export_allowed')),
    min_soc               double precision CHECK (min_soc BETWEEN 0 AND 1),
    compensation_per_kwh  double precision CHECK (compensation_per_kwh BETWEEN 0 AND 100),
    ev_bidirectional      boolean,           -- a *_BPT mode requested or available
    ev_battery_kwh        double precision,  -- evEnergyCapacity
    ev_soc                double precision,  -- percent, stateOfCharge
    ev_max_discharge_w    double precision,  -- maxDischargePower
    ev_min_v2x_energy_wh  double precision,  -- evMinV2XEnergyRequest: to the V2X floor
    ev_updated_at         timestamptz,
    updated_at            timestamptz NOT NULL,
    PRIMARY KEY (station_id, transaction_id)
);
