-- The OCPP version of each station's latest connection: the subprotocol it chose in the
-- WebSocket handshake ('2.0.1' or '2.1'); NULL until it first connects.
ALTER TABLE stations ADD COLUMN ocpp_version text;
