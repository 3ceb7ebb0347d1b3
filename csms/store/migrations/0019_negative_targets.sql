-- A target may be below zero (issue 14): the EV load under the node feeding back, as V2G
-- cars do when a portfolio's dispatch counts what they can lend. A limit stays >= 0.
ALTER TABLE grid_events DROP CONSTRAINT grid_events_kw_check;
ALTER TABLE grid_events ADD CONSTRAINT grid_events_kw_check CHECK (kw >= 0 OR kind = 'target');
