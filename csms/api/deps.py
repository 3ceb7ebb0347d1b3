"""What the HTTP API works with: the running CSMS's parts, handed to every route.

The API gets these parts rather than the `Csms` object, so `csms.app` can import the API
without an import cycle, and a route's needs are visible in one small type.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, HTTPException, Request, status

from csms.ca import CertificateAuthority
from csms.clock import Clock
from csms.cluster.registry import Registry
from csms.commands import Commands
from csms.config import SchedulerConfig, VppConfig
from csms.connection import Connections
from csms.diagnostics import Diagnostics
from csms.events import EventBus
from csms.firmware import FirmwareUpdates
from csms.iso15118 import Iso15118
from csms.store import Store
from csms.store.api_tokens import ApiTokenRepo
from csms.tariffs import TariffCatalog
from smart_charging.model import Carbon, Site, SiteEnergy


@dataclass(frozen=True)
class Parts:
    clock: Clock
    store: Store
    events: EventBus
    connections: Connections
    commands: Commands
    api_tokens: ApiTokenRepo
    sites: Mapping[str, Site] = field(default_factory=dict)  # the sites the scheduler plans
    tariffs: TariffCatalog = field(default_factory=TariffCatalog)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)  # set: live feeds end
    ca: CertificateAuthority | None = None  # signs station certificates (block A)
    firmware: FirmwareUpdates | None = None  # updates and rollouts (block L)
    diagnostics: Diagnostics | None = None  # logs, monitors, customer data (block N)
    iso15118: Iso15118 | None = None  # block M: root certificates to install
    cluster: Registry | None = None  # who holds which station, in a cluster (csms/cluster/)
    audit_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    carbon: Mapping[str, Carbon] = field(default_factory=dict)  # site files' [carbon]
    vpp: VppConfig = field(default_factory=VppConfig)  # programmes, history (issue 14)
    energy: Mapping[str, SiteEnergy] = field(default_factory=dict)  # batteries and solar
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)  # rules of forecasts


def parts(request: Request) -> Parts:
    found: Parts = request.app.state.parts
    return found


PartsDep = Annotated[Parts, Depends(parts)]


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no {what}")
