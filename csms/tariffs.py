"""The tariffs the CSMS knows: the TOML files next to the site files, and which one each
configured site names. A tariff set through the API (stored per site) takes precedence at
the next plan (csms/grid.py)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csms.sites import Sites, tariffs_folder


@dataclass(frozen=True)
class TariffCatalog:
    tariffs: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> as in its TOML
    by_site: dict[str, str | None] = field(default_factory=dict)  # site id -> tariff id
    slot_minutes: int = 15


def load_catalog(sites: Sites, slot_minutes: int = 15) -> TariffCatalog:
    """Every tariff file in the folders the configured sites take their tariffs from."""
    catalog = TariffCatalog(slot_minutes=slot_minutes)
    folders: set[Path] = set()
    for f in sites.values():
        catalog.by_site[f.site.id] = f.tariff
        folders.add(tariffs_folder(f.path, sites.tariffs_dir))
    for folder in sorted(folders):
        for file in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
            with open(file, "rb") as fh:
                data = tomllib.load(fh)
            catalog.tariffs[file.stem] = {**data, "id": file.stem}
    return catalog
