"""OCPP 2.0.1 charging station management system."""
