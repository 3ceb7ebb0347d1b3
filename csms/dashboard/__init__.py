"""The web dashboard, served by the HTTP API's process on its port: `/` and `/sites/{id}`."""

from csms.dashboard.pages import install

__all__ = ["install"]
