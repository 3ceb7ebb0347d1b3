"""The tariffs the CSMS knows: the TOML files next to the site files, and which one each
configured site names. A tariff set through the API (stored per site) takes precedence at
the next plan (csms/grid.py)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csms.config import SchedulerConfig


@dataclass(frozen=True)
class TariffCatalog:
    tariffs: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> as in its TOML
    by_site: dict[str, str | None] = field(default_factory=dict)  # site id -> tariff id
    slot_minutes: int = 15


def _folder(site_path: Path, tariffs_dir: str) -> Path:
    return Path(tariffs_dir) if tariffs_dir else site_path.parent.parent / "tariffs"


def load_catalog(config: SchedulerConfig) -> TariffCatalog:
    """Every tariff file in the folders the configured sites take their tariffs from (the
    same lookup as `csms.scheduler.load_site`)."""
    catalog = TariffCatalog(slot_minutes=config.slot_minutes)
    folders: set[Path] = set()
    for raw in config.sites:
        path = Path(raw)
        with open(path, "rb") as f:
            meta = tomllib.load(f).get("site", {})
        tariff = meta.get("tariff") or None
        catalog.by_site[str(meta.get("id"))] = (
            None if tariff is None else str(tariff).removesuffix(".toml"))
        folders.add(_folder(path, config.tariffs_dir))
    for folder in sorted(folders):
        for file in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            with open(file, "rb") as f:
                data = tomllib.load(f)
            catalog.tariffs[file.stem] = {**data, "id": file.stem}
    return catalog
