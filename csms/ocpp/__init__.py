"""OCPP 2.0.1 message handlers, one module per functional block; `routes` is the table."""
