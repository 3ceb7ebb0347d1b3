"""Configuration: a TOML file (config/csms.toml documents every key), then CLI flags and
environment variables on top. One frozen dataclass per section."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 9000
    max_message_bytes: int = 65_536
    tls_cert: str = ""
    tls_key: str = ""
    auto_register: bool = False
    call_timeout_s: float = 30.0
    ping_interval_s: float = 60.0


@dataclass(frozen=True)
class BootConfig:
    heartbeat_interval_s: int = 300
    retry_interval_s: int = 30
    pending_until_reported: bool = False


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = ""
    data_dir: str = "data/postgres"


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    json: bool = False


@dataclass(frozen=True)
class SchedulerConfig:
    """Smart charging: which sites to plan and how often (see docs/decisions/scheduler.md)."""

    enabled: bool = False
    sites: tuple[str, ...] = ()
    tariffs_dir: str = ""
    interval_s: float = 300.0
    debounce_s: float = 10.0
    slot_minutes: int = 15
    horizon_slots: int = 96
    stack_level: int = 0
    material_change_kw: float = 1.0
    lookahead_s: float = 3600.0
    departure_margin_s: float = 900.0
    overstay_s: float = 3600.0
    tx_default_profile: bool = True
    max_concurrent_calls: int = 50
    non_compliance_margin_w: float = 500.0
    non_compliance_grace_s: float = 120.0
    learn_car_max: bool = True
    keep_plans_days: float = 30.0  # stored plans older than this are deleted; 0 = keep all

    def __post_init__(self) -> None:
        object.__setattr__(self, "sites", tuple(self.sites))
        if self.keep_plans_days < 0:
            raise ValueError("[scheduler] keep_plans_days must not be negative")
        if self.interval_s <= 0 or self.debounce_s < 0:
            raise ValueError("[scheduler] interval_s must be positive, debounce_s not negative")
        if self.max_concurrent_calls < 1:
            raise ValueError("[scheduler] max_concurrent_calls must be at least 1")


@dataclass(frozen=True)
class ApiConfig:
    """The operator HTTP API (csms/api/), served in the same process as the OCPP server."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 8080  # 0 = any free port (tests)


@dataclass(frozen=True)
class GcConfig:
    """Garbage-collection policy (csms/collector.py); 0 turns a part off."""

    freeze_interval_s: float = 10.0
    full_interval_s: float = 3600.0
    full_after_closed: float = 0.5

    def __post_init__(self) -> None:
        if self.freeze_interval_s < 0 or self.full_interval_s < 0:
            raise ValueError("[gc] intervals must not be negative")
        if self.full_after_closed < 0:
            raise ValueError("[gc] full_after_closed must not be negative (0 = off)")


@dataclass(frozen=True)
class Iso15118Config:
    """Block M: who stands behind ISO 15118 Plug & Charge (csms/iso15118.py).

    `contract_service_url`: the contract CA / mobility operator's endpoint that turns a
    Get15118EVCertificate into a signed EXI response (empty: answered Failed).
    `ocsp_responders`: OCSP responder URLs (prefixes) the CSMS may query for a station's
    GetCertificateStatus; a responderURL not among them is not fetched (answered Failed).
    `ocsp_ca_cert`/`ocsp_ca_key`/`ocsp_crl`: PEM files of a CA the CSMS answers OCSP for
    itself, from the CA's revocation list. `v2g_root_certificate`/`mo_root_certificate`:
    PEM files installed on stations through the API (InstallCertificate).
    """

    contract_service_url: str = ""
    ocsp_responders: tuple[str, ...] = ()
    ocsp_ca_cert: str = ""
    ocsp_ca_key: str = ""
    ocsp_crl: str = ""
    v2g_root_certificate: str = ""
    mo_root_certificate: str = ""
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ocsp_responders", tuple(self.ocsp_responders))
        if self.timeout_s <= 0:
            raise ValueError("[iso15118] timeout_s must be positive")
        if bool(self.ocsp_ca_cert) != bool(self.ocsp_ca_key):
            raise ValueError("[iso15118] ocsp_ca_cert and ocsp_ca_key go together")


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    boot: BootConfig = field(default_factory=BootConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    log: LogConfig = field(default_factory=LogConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    gc: GcConfig = field(default_factory=GcConfig)
    iso15118: Iso15118Config = field(default_factory=Iso15118Config)


def _section(cls: type[Any], data: dict[str, Any], name: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown key(s) in [{name}]: {', '.join(sorted(unknown))}")
    return cls(**data)


def from_dict(data: dict[str, Any]) -> Config:
    sections = {f.name: f.type for f in fields(Config)}
    unknown = set(data) - set(sections)
    if unknown:
        raise ValueError(f"unknown section(s): {', '.join(sorted(unknown))}")
    defaults = Config()
    return Config(**{
        name: _section(type(getattr(defaults, name)), data.get(name, {}), name)
        for name in sections
    })


def load(
    path: str | Path | None = None,
    *,
    database_url: str | None = None,
    data_dir: str | None = None,
    host: str | None = None,
    port: int | None = None,
    api_port: int | None = None,
) -> Config:
    """File, then DATABASE_URL, then explicit arguments (the CLI flags)."""
    data: dict[str, Any] = {}
    if path:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    config = from_dict(data)
    db = config.database
    url = database_url or os.environ.get("DATABASE_URL") or db.url
    db = replace(db, url=url, data_dir=data_dir or db.data_dir)
    server = replace(
        config.server,
        host=host if host is not None else config.server.host,
        port=port if port is not None else config.server.port,
    )
    api = replace(config.api, port=api_port if api_port is not None else config.api.port)
    return replace(config, database=db, server=server, api=api)
