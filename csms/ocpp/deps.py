"""What handlers depend on, handed to each as fields."""

from __future__ import annotations

from dataclasses import dataclass

from csms.ca import CertificateAuthority
from csms.clock import Clock
from csms.config import BootConfig
from csms.events import EventBus
from csms.iso15118 import Iso15118
from csms.store import Store


@dataclass(frozen=True)
class Deps:
    store: Store
    clock: Clock
    events: EventBus
    boot: BootConfig
    ca: CertificateAuthority | None = None  # signs station CSRs (A02/A03)
    iso15118: Iso15118 | None = None  # block M: contract service and OCSP sources
