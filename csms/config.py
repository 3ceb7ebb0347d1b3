"""Configuration: a TOML file (config/csms.toml documents every key), then CLI flags and
environment variables on top. One frozen dataclass per section."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from vpp import Programme


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 9000
    max_message_bytes: int = 65_536
    tls_cert: str = ""
    tls_key: str = ""
    tls_cert_2: str = ""  # a second certificate of the other key type (RSA / ECDSA)
    tls_key_2: str = ""
    tls_client_ca: str = ""  # PEM file: CAs besides the CSMS's own that sign station certs
    auto_register: bool = False
    call_timeout_s: float = 30.0
    ping_interval_s: float = 60.0
    max_connections: int = 100_000  # sockets, handshaking or open; above: HTTP 503
    max_handshakes: int = 2_000  # handshakes in progress at once; above: HTTP 503
    auth_free_failures: int = 5  # failed logins per station id / address before a lockout
    auth_lockout_max_s: float = 300.0  # the lockout doubles from 1 s up to this
    reuse_port: bool = False  # SO_REUSEPORT: several workers share the port (csms/cluster/)

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_handshakes < 1:
            raise ValueError("[server] max_connections and max_handshakes must be positive")
        if self.auth_free_failures < 0 or self.auth_lockout_max_s < 0:
            raise ValueError("[server] auth_free_failures, auth_lockout_max_s: not negative")


@dataclass(frozen=True)
class SecurityConfig:
    """Block A: the CSMS's certificate authority for station certificates (Security
    Profile 3, A02/A03) and when to renew them (csms/ca.py, csms/certificates.py)."""

    ca_cert: str = ""  # the operator's CA (PEM); empty: the CSMS's own, made in ca_dir
    ca_key: str = ""
    ca_dir: str = ""  # empty: "ca" beside database.data_dir (data/ca)
    # the audit log's signing key (audit.key, audit.pub); every node of a cluster must
    # share it. Empty: "audit" beside database.data_dir (data/audit)
    audit_dir: str = ""
    organization: str = ""  # O= a station's CSR must carry (empty: not checked)
    certificate_days: int = 365
    renew_before_days: float = 30.0
    renew_check_interval_s: float = 3600.0  # 0: no renewal check

    def __post_init__(self) -> None:
        if not 1 <= self.certificate_days <= 3650:
            raise ValueError("[security] certificate_days must be 1 to 3650")
        if self.renew_before_days < 0 or self.renew_check_interval_s < 0:
            raise ValueError("[security] renew_before_days and renew_check_interval_s must "
                             "not be negative")
        if bool(self.ca_cert) != bool(self.ca_key):
            raise ValueError("[security] ca_cert and ca_key go together")


@dataclass(frozen=True)
class BootConfig:
    heartbeat_interval_s: int = 300
    retry_interval_s: int = 30
    pending_until_reported: bool = False
    # B02: a station held Pending for its report is accepted at its first boot after this
    # many seconds, report or not (0: wait for the report for ever)
    pending_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.heartbeat_interval_s < 1 or self.retry_interval_s < 1:
            raise ValueError("[boot] intervals must be at least 1 s")
        if self.pending_timeout_s < 0:
            raise ValueError("[boot] pending_timeout_s must not be negative (0 = no bound)")


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
    """Smart charging: which sites to plan and how often (see docs/decisions/0008-scheduler.md).

    `enabled` unset means on when `sites` names a file: listing a site is asking for it to
    be planned, and a second switch left off made `csms serve` plan nothing."""

    enabled: bool | None = None  # None: on if `sites` lists a file
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
    # how the site's drivers really leave against the departure they gave, learnt once a
    # day from this many days of finished transactions (0: trust the estimates)
    learn_departures_days: float = 60.0
    keep_plans_days: float = 30.0  # stored plans older than this are deleted; 0 = keep all
    lease_retry_s: float = 5.0  # how often to check this process's leases, try free sites
    node_name: str = ""  # who holds a lease, as shown; empty: host:pid

    def __post_init__(self) -> None:
        object.__setattr__(self, "sites", tuple(self.sites))
        if self.lease_retry_s <= 0:
            raise ValueError("[scheduler] lease_retry_s must be positive")
        if self.keep_plans_days < 0 or self.learn_departures_days < 0:
            raise ValueError("[scheduler] keep_plans_days and learn_departures_days must not "
                             "be negative")
        if self.interval_s <= 0 or self.debounce_s < 0:
            raise ValueError("[scheduler] interval_s must be positive, debounce_s not negative")
        if self.max_concurrent_calls < 1:
            raise ValueError("[scheduler] max_concurrent_calls must be at least 1")

    @property
    def on(self) -> bool:
        """Plan the sites: as `enabled` says, else whenever `sites` lists one."""
        return bool(self.sites) if self.enabled is None else self.enabled


@dataclass(frozen=True)
class ApiConfig:
    """The operator HTTP API (csms/api/), served in the same process as the OCPP server."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 8080  # 0 = any free port (tests)
    reuse_port: bool = False  # SO_REUSEPORT: several workers share the port (csms/cluster/)


@dataclass(frozen=True)
class ClusterConfig:
    """Several processes or machines as one CSMS over a NATS broker (csms/cluster/,
    docs/decisions/0024-cluster-broker.md). No broker_url: one process, no broker, as ever."""

    broker_url: str = ""  # nats://host:4222 (comma-separated for several servers)
    node: str = ""  # this machine's name in the cluster; empty: the host name
    worker: int = 0  # this process's index on its node (`csms serve --workers` sets it)
    heartbeat_s: float = 5.0  # each worker's row in the registry is refreshed this often
    worker_ttl_s: float = 20.0  # a worker not seen for this long is dead: its stations go
    call_margin_s: float = 5.0  # a routed CALL waits the station's timeout plus this
    plans: bool = True  # run the scheduler in this process; each planning process takes
                        # its share of the sites (the site leases: one planner per site)

    def __post_init__(self) -> None:
        if len(self.node) > 64 or not (self.node == "" or self.node.isprintable()):
            raise ValueError("[cluster] node: up to 64 printable characters")
        if not 0 <= self.worker < 1024:
            raise ValueError("[cluster] worker must be 0 to 1023")
        if self.heartbeat_s <= 0 or self.worker_ttl_s <= 2 * self.heartbeat_s:
            raise ValueError("[cluster] heartbeat_s positive, worker_ttl_s over twice it")
        if self.call_margin_s < 0:
            raise ValueError("[cluster] call_margin_s must not be negative")


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
class BillingConfig:
    """Cost shown to drivers (block I; csms/cost_updates.py)."""

    cost_updated_interval_s: float = 300.0  # CostUpdated to stations showing cost; 0 = off

    def __post_init__(self) -> None:
        if self.cost_updated_interval_s < 0:
            raise ValueError("[billing] cost_updated_interval_s must not be negative")


@dataclass(frozen=True)
class FirmwareConfig:
    """Firmware updates and rollouts (csms/firmware.py)."""

    rollout_tick_s: float = 5.0  # how often running rollouts are advanced (and on each end)

    def __post_init__(self) -> None:
        if self.rollout_tick_s <= 0:
            raise ValueError("[firmware] rollout_tick_s must be positive")


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Log uploads (N01; csms/diagnostics.py)."""

    # Where stations upload logs: this CSMS's API as stations reach it, e.g.
    # "http://csms.example.net:8080". Empty: http://<api.host>:<api port> (a 0.0.0.0 host
    # becomes this machine's name).
    upload_base_url: str = ""
    max_upload_bytes: int = 16 * 1024 * 1024
    upload_window_s: float = 86_400.0  # an upload URL expires this long after the request

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1 or self.upload_window_s <= 0:
            raise ValueError("[diagnostics] max_upload_bytes and upload_window_s must be "
                             "positive")
        if self.upload_base_url and not self.upload_base_url.startswith(
                ("http://", "https://")):
            raise ValueError("[diagnostics] upload_base_url must be an http(s) URL")


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


def programme_of(name: str, rules: Mapping[str, Any]) -> Programme:
    """A `[vpp.programmes.NAME]` table as `vpp` rules (defaults: `vpp.Programme`'s)."""
    return Programme(
        name, min_kw=float(rules.get("min_kw", 300.0)),
        min_duration=timedelta(minutes=float(rules.get("min_duration_minutes", 120))),
        confidence=rules.get("confidence", "p90"),
        penalty_per_kwh=float(rules.get("penalty_per_kwh", 0.0)),
        baseline=rules.get("baseline", "similar_days"),
        baseline_days=int(rules.get("baseline_days", 5)),
        adjustment=rules.get("adjustment", "none"),
        threshold=float(rules.get("threshold", 0.8)), pay_cap=float(rules.get("pay_cap", 1.2)))


def _default_programmes() -> dict[str, dict[str, Any]]:
    return {  # Chinese provincial demand response (docs/shared domain): 0.3 MW at least
        "interruptible": {"min_kw": 300.0, "min_duration_minutes": 120},
        "invitation": {"min_kw": 300.0, "min_duration_minutes": 30},
    }


@dataclass(frozen=True)
class VppConfig:
    """Demand response for portfolios (issue 14; csms/flexibility.py, csms/dispatch.py).

    `programmes`: name -> rules, `[vpp.programmes.NAME]` with `min_kw`,
    `min_duration_minutes`, `confidence` ("p90", "p50" or "p10": the forecast an offer
    promises) and `penalty_per_kwh` (prices risk on the bid curve). A site short of its
    share for `resplit_after_minutes` minutes in a row (past the first `grace_minutes`)
    hands the rest to the others. `check_offers`: the engine re-plans each site against
    its share of an offer before it is proposed (csms/invitations.py).
    """

    programmes: dict[str, dict[str, Any]] = field(default_factory=_default_programmes)
    history_days: int = 28  # past sessions behind the expected arrivals
    track_interval_s: float = 60.0
    resplit_after_minutes: int = 3
    grace_minutes: int = 2
    check_offers: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.history_days <= 365 or self.track_interval_s <= 0:
            raise ValueError("[vpp] history_days 1-365, track_interval_s positive")
        if self.resplit_after_minutes < 1 or self.grace_minutes < 0:
            raise ValueError("[vpp] resplit_after_minutes >= 1, grace_minutes >= 0")
        words = {"confidence": ("p90", "p50", "p10"), "baseline": ("similar_days", "plan"),
                 "adjustment": ("none", "additive", "multiplicative")}
        known = {"min_kw", "min_duration_minutes", "penalty_per_kwh", "baseline_days",
                 "threshold", "pay_cap"} | set(words)
        for name, rules in self.programmes.items():
            if not isinstance(rules, dict) or set(rules) - known:
                raise ValueError(f"[vpp.programmes.{name}]: keys are {', '.join(sorted(known))}")
            numbers = [rules.get(k, 0) for k in known - set(words)]
            bad = [k for k, allowed in words.items() if rules.get(k, allowed[0]) not in allowed]
            if bad or not all(isinstance(v, int | float) and not isinstance(v, bool)
                              and 0 <= v < 1e9 for v in numbers):
                raise ValueError(f"[vpp.programmes.{name}]: confidence p90, p50 or p10; "
                                 "baseline similar_days or plan; adjustment none, additive "
                                 "or multiplicative; numbers >= 0")
            try:  # the ranges are the programme's own (vpp.Programme)
                programme_of(name, rules)
            except ValueError as e:
                raise ValueError(f"[vpp.programmes.{name}]: {e}") from None


@dataclass(frozen=True)
class OpenAdrConfig:
    """The OpenADR 2.0b VEN (csms/openadr.py, docs/decisions/0030-openadr-carbon-ledger.md):
    registers with a utility's VTN, turns its events into grid events on the portfolio's
    sites, answers optIn/optOut and reports the portfolio's metered load. No vtn_url: off."""

    vtn_url: str = ""  # e.g. https://vtn.example.net/OpenADR2/Simple/2.0b
    ven_name: str = ""  # how this VEN is known to the VTN
    portfolio: str = ""  # the portfolio (csms portfolios) whose sites the events act on
    ven_id: str = ""  # empty: the VTN assigns one at registration
    report_interval_s: float = 60.0  # metered load per interval of this length
    cert: str = ""  # PEM certificate and key signing messages (and TLS client auth)
    key: str = ""
    vtn_fingerprint: str = ""  # the VTN certificate's fingerprint, checked on messages
    ca_file: str = ""  # CA for the VTN's TLS certificate
    retry_s: float = 30.0  # registration is retried this often while the VTN is away
    # a LOAD_DISPATCH delta (a change against the baseline) is answered as an invitation
    # under this `[vpp.programmes]` programme: offered, accepted, dispatched, settled
    programme: str = "invitation"

    def __post_init__(self) -> None:
        if not self.vtn_url:
            return
        if not self.vtn_url.startswith(("http://", "https://")):
            raise ValueError("[openadr] vtn_url must be an http(s) URL")
        if not self.ven_name or not self.portfolio:
            raise ValueError("[openadr] vtn_url needs ven_name and portfolio")
        if not 1 <= self.report_interval_s <= 86_400 or self.retry_s <= 0:
            raise ValueError("[openadr] report_interval_s 1 to 86400, retry_s positive")
        if bool(self.cert) != bool(self.key):
            raise ValueError("[openadr] cert and key go together")


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
    firmware: FirmwareConfig = field(default_factory=FirmwareConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    billing: BillingConfig = field(default_factory=BillingConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    openadr: OpenAdrConfig = field(default_factory=OpenAdrConfig)
    vpp: VppConfig = field(default_factory=VppConfig)

    def __post_init__(self) -> None:
        if self.openadr.vtn_url and self.openadr.programme not in self.vpp.programmes:
            raise ValueError(f"[openadr] programme {self.openadr.programme!r} is not one of "
                             f"[vpp.programmes]: {', '.join(sorted(self.vpp.programmes))}")

    def ca_dir(self) -> str:
        """Where the CSMS's own CA lives: configured, or beside the database folder."""
        return self.security.ca_dir or str(Path(self.database.data_dir).parent / "ca")

    def audit_dir(self) -> Path:
        """Where the audit log's signing key lives: configured, or beside the database."""
        return Path(self.security.audit_dir or Path(self.database.data_dir).parent / "audit")


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
    broker_url: str | None = None,
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
    cluster = replace(config.cluster, broker_url=broker_url or os.environ.get(
        "CSMS_BROKER_URL") or config.cluster.broker_url)
    return replace(config, database=db, server=server, api=api, cluster=cluster)
