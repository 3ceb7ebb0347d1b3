-- Issue 15 (sites with solar and storage): what an operator or an integration reports of
-- a site's stationary battery and on-site solar through the API. The site file holds
-- the plant; these rows hold what changes: a battery's measured state of charge (the
-- newest only) and a solar forecast for the next hours in place of the site file's day.

CREATE TABLE storage_soc (
    site_id     text NOT NULL,
    storage_id  text NOT NULL,
    soc         double precision NOT NULL CHECK (soc >= 0 AND soc <= 1),
    measured_at timestamptz NOT NULL,
    set_by      text NOT NULL,
    set_at      timestamptz NOT NULL,
    PRIMARY KEY (site_id, storage_id)
);

-- kw[k] holds over [starts_at + k x step_minutes, + step_minutes); one forecast per plant,
-- a new one replaces it.
CREATE TABLE solar_forecasts (
    site_id      text NOT NULL,
    solar_id     text NOT NULL,
    starts_at    timestamptz NOT NULL,
    step_minutes integer NOT NULL CHECK (step_minutes BETWEEN 1 AND 60),
    kw           double precision[] NOT NULL CHECK (cardinality(kw) BETWEEN 1 AND 576),
    set_by       text NOT NULL,
    set_at       timestamptz NOT NULL,
    PRIMARY KEY (site_id, solar_id)
);
