"""The site files (`[scheduler] sites`), read once at start and handed to both the HTTP API
and the scheduler, so the API knows the sites even when the scheduler is off.

One rule for a site's id: it is its file name without `.toml` (config/sites/test-small.toml
is /api/sites/test-small). A `[site] id` in the file may repeat it and nothing else: two
names for one site meant a URL that matched no file, and stored plans, limits and events
are keyed by the id, so a file with another id stops the start with the fix in the message
(rename the file to keep the stored history under the old id).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from smart_charging import Carbon, Prices, Site, prices_from_dict, site_from_dict
from smart_charging.config import carbon_from_dict


@dataclass(frozen=True)
class SiteFile:
    """One site as configured: its tree and EVSEs, its tariff's prices (with the site's
    `[carbon]` section, which the engine weighs beside price), and where from."""

    site: Site
    prices: Prices
    path: Path
    tariff: str | None  # the tariff id it names (`[site] tariff`), None if none

    @property
    def carbon(self) -> Carbon:
        return self.prices.carbon


def site_id_of(path: str | Path) -> str:
    """A site's id: its file name without the extension."""
    return Path(path).stem


def tariffs_folder(site_path: Path, tariffs_dir: str = "") -> Path:
    """Where a site's `tariff = "<id>"` is found as <id>.toml: `tariffs_dir`, else the
    tariffs/ folder next to the site's folder."""
    return Path(tariffs_dir) if tariffs_dir else site_path.parent.parent / "tariffs"


def load_site_file(path: str | Path, tariffs_dir: str = "") -> SiteFile:
    """A site TOML and its tariff; raises ValueError if `[site] id` is not the file name."""
    path = Path(path)
    with open(path, "rb") as f:
        data = tomllib.load(f)
    meta = dict(data.get("site", {}))
    site_id = site_id_of(path)
    if "id" in meta and str(meta["id"]) != site_id:
        raise ValueError(
            f"{path}: [site] id = {meta['id']!r}, but a site's id is its file name "
            f"({site_id!r}); remove the id, or rename the file to {meta['id']}.toml to keep "
            "what is stored under that id")
    meta["id"] = site_id
    site = site_from_dict({**data, "site": meta})
    try:
        carbon = carbon_from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    tariff = meta.get("tariff") or None
    if not tariff:
        return SiteFile(site, Prices(carbon=carbon), path, None)
    tariff = str(tariff).removesuffix(".toml")
    with open(tariffs_folder(path, tariffs_dir) / f"{tariff}.toml", "rb") as f:
        prices = prices_from_dict(tomllib.load(f))
    return SiteFile(site, replace(prices, carbon=carbon), path, tariff)


def load_site(path: str | Path, tariffs_dir: str = "") -> tuple[Site, Prices]:
    """A site TOML and its tariff's prices (`[site] tariff = "<id>"`)."""
    loaded = load_site_file(path, tariffs_dir)
    return loaded.site, loaded.prices


@dataclass(frozen=True)
class Sites(Mapping[str, SiteFile]):
    """The configured sites by id, in the order configured."""

    files: tuple[SiteFile, ...] = ()
    tariffs_dir: str = ""

    @classmethod
    def load(cls, paths: Iterable[str | Path], tariffs_dir: str = "") -> Sites:
        files = tuple(load_site_file(p, tariffs_dir) for p in paths)
        seen: dict[str, Path] = {}
        for f in files:
            if f.site.id in seen:
                raise ValueError(f"two site files named {f.site.id}: {seen[f.site.id]}, {f.path}")
            seen[f.site.id] = f.path
        return cls(files, tariffs_dir)

    def __getitem__(self, site_id: str) -> SiteFile:
        for f in self.files:
            if f.site.id == site_id:
                return f
        raise KeyError(site_id)

    def __iter__(self) -> Iterator[str]:
        return (f.site.id for f in self.files)

    def __len__(self) -> int:
        return len(self.files)

    def models(self) -> dict[str, Site]:
        """Site id -> the engine's Site: what the API shows."""
        return {f.site.id: f.site for f in self.files}

    def carbon(self) -> dict[str, Carbon]:
        """Site id -> its configured emission factors and carbon weight."""
        return {f.site.id: f.carbon for f in self.files}
