"""All repositories over one pool."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from csms.store.audit import AuditRepo
from csms.store.carbon import CarbonRepo
from csms.store.charging import ChargingRepo
from csms.store.customers import CustomerRepo
from csms.store.devices import DeviceRepo
from csms.store.diagnostics import AlertRepo, LogRepo, MonitoringRepo
from csms.store.display import DisplayMessageRepo
from csms.store.driver_tariffs import DriverTariffRepo
from csms.store.firmware import FirmwareRepo
from csms.store.grid import GridRepo
from csms.store.iso15118 import InstalledCertificateRepo
from csms.store.meter import MeterWriter
from csms.store.network_profiles import NetworkProfileRepo
from csms.store.notifications import NotificationRepo
from csms.store.plans import PlanRepo
from csms.store.portfolios import PortfolioRepo
from csms.store.reports import ReportRepo
from csms.store.reservations import ReservationRepo
from csms.store.security import CertificateRepo, SecurityEventRepo
from csms.store.station_reports import StationReportRepo
from csms.store.stations import StationRepo
from csms.store.storage import StorageRepo
from csms.store.tokens import TokenRepo
from csms.store.transactions import TransactionRepo
from csms.store.v2g import V2gRepo
from csms.store.vpp import VppRepo


@dataclass
class Store:
    pool: asyncpg.Pool
    stations: StationRepo = field(init=False)
    tokens: TokenRepo = field(init=False)
    transactions: TransactionRepo = field(init=False)
    devices: DeviceRepo = field(init=False)
    notifications: NotificationRepo = field(init=False)
    meter: MeterWriter = field(init=False)
    plans: PlanRepo = field(init=False)
    grid: GridRepo = field(init=False)
    certificates: CertificateRepo = field(init=False)
    security_events: SecurityEventRepo = field(init=False)
    reports: ReportRepo = field(init=False)
    network_profiles: NetworkProfileRepo = field(init=False)
    reservations: ReservationRepo = field(init=False)
    driver_tariffs: DriverTariffRepo = field(init=False)
    firmware: FirmwareRepo = field(init=False)
    logs: LogRepo = field(init=False)
    monitoring: MonitoringRepo = field(init=False)
    alerts: AlertRepo = field(init=False)
    customers: CustomerRepo = field(init=False)
    station_reports: StationReportRepo = field(init=False)
    display: DisplayMessageRepo = field(init=False)
    charging: ChargingRepo = field(init=False)
    installed_certificates: InstalledCertificateRepo = field(init=False)
    portfolios: PortfolioRepo = field(init=False)
    audit: AuditRepo = field(init=False)
    v2g: V2gRepo = field(init=False)
    carbon: CarbonRepo = field(init=False)  # emission factors, revenue shares, ledger
    vpp: VppRepo = field(init=False)
    storage: StorageRepo = field(init=False)  # battery SoC and solar forecasts (0017)

    def __post_init__(self) -> None:
        self.stations = StationRepo(self.pool)
        self.tokens = TokenRepo(self.pool)
        self.transactions = TransactionRepo(self.pool)
        self.devices = DeviceRepo(self.pool)
        self.notifications = NotificationRepo(self.pool)
        self.meter = MeterWriter(self.pool)
        self.plans = PlanRepo(self.pool)
        self.grid = GridRepo(self.pool)
        self.certificates = CertificateRepo(self.pool)
        self.security_events = SecurityEventRepo(self.pool)
        self.reports = ReportRepo(self.pool)
        self.network_profiles = NetworkProfileRepo(self.pool)
        self.reservations = ReservationRepo(self.pool)
        self.driver_tariffs = DriverTariffRepo(self.pool)
        self.firmware = FirmwareRepo(self.pool)
        self.logs = LogRepo(self.pool)
        self.monitoring = MonitoringRepo(self.pool)
        self.alerts = AlertRepo(self.pool)
        self.customers = CustomerRepo(self.pool)
        self.station_reports = StationReportRepo(self.pool)
        self.display = DisplayMessageRepo(self.pool)
        self.charging = ChargingRepo(self.pool)
        self.installed_certificates = InstalledCertificateRepo(self.pool)
        self.portfolios = PortfolioRepo(self.pool)
        self.audit = AuditRepo(self.pool)
        self.v2g = V2gRepo(self.pool)
        self.carbon = CarbonRepo(self.pool)
        self.vpp = VppRepo(self.pool)
        self.storage = StorageRepo(self.pool)

    async def close(self) -> None:
        await self.transactions.close()
        await self.meter.close()
        await self.stations.close()
        await self.devices.close()
