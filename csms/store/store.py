"""All repositories over one pool."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from csms.store.charging import ChargingRepo
from csms.store.devices import DeviceRepo
from csms.store.display import DisplayMessageRepo
from csms.store.grid import GridRepo
from csms.store.iso15118 import InstalledCertificateRepo
from csms.store.meter import MeterWriter
from csms.store.notifications import NotificationRepo
from csms.store.plans import PlanRepo
from csms.store.reports import StationReportRepo
from csms.store.stations import StationRepo
from csms.store.tokens import TokenRepo
from csms.store.transactions import TransactionRepo


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
    reports: StationReportRepo = field(init=False)
    display: DisplayMessageRepo = field(init=False)
    charging: ChargingRepo = field(init=False)
    installed_certificates: InstalledCertificateRepo = field(init=False)

    def __post_init__(self) -> None:
        self.stations = StationRepo(self.pool)
        self.tokens = TokenRepo(self.pool)
        self.transactions = TransactionRepo(self.pool)
        self.devices = DeviceRepo(self.pool)
        self.notifications = NotificationRepo(self.pool)
        self.meter = MeterWriter(self.pool)
        self.plans = PlanRepo(self.pool)
        self.grid = GridRepo(self.pool)
        self.reports = StationReportRepo(self.pool)
        self.display = DisplayMessageRepo(self.pool)
        self.charging = ChargingRepo(self.pool)
        self.installed_certificates = InstalledCertificateRepo(self.pool)

    async def close(self) -> None:
        await self.meter.close()
        await self.stations.close()
        await self.devices.close()
