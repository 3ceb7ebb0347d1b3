"""The garbage-collection policy (csms/collector.py), seen through /metrics and its effect:
survivors are frozen out of automatic collections, and the periodic full pass reclaims a
cycle that was frozen alive."""

from __future__ import annotations

import asyncio
import gc
import re
import weakref
from dataclasses import replace

import httpx
import pytest

from csms.config import Config, GcConfig
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory


class Node:
    """A reference cycle (a node that points at itself): only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


def gauge(text: str, name: str) -> float:
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    assert found, name
    return float(found.group(1))


@pytest.fixture
def gc_config() -> GcConfig:
    return GcConfig()


@pytest.fixture
def config(config: Config, gc_config: GcConfig) -> Config:
    return replace(config, gc=gc_config)


async def frozen_then_dropped(viewer: httpx.AsyncClient) -> weakref.ref[Node]:
    """A cycle that a freeze took out of the collector's view, then became garbage."""
    cycle = Node()
    alive = weakref.ref(cycle)
    for _ in range(50):
        await asyncio.sleep(0.1)
        if not any(o is cycle for o in gc.get_objects()):
            break
    else:
        pytest.fail("the object was never frozen")
    assert gauge((await viewer.get("/metrics")).text, "csms_gc_heap_blocks") > 0
    del cycle  # garbage now, but frozen: an ordinary collection cannot free it
    gc.collect()
    assert alive() is not None
    return alive


async def full_passes(viewer: httpx.AsyncClient) -> float:
    return gauge((await viewer.get("/metrics")).text, "csms_gc_full_collections_total")


async def wait_reclaimed(viewer: httpx.AsyncClient, alive: weakref.ref[Node],
                         before: float) -> None:
    for _ in range(50):
        await asyncio.sleep(0.1)
        if alive() is None:
            break
    else:
        pytest.fail("no full collection reclaimed the frozen cycle")
    assert await full_passes(viewer) > before


@pytest.mark.parametrize("gc_config", [GcConfig(freeze_interval_s=0.2, full_interval_s=1.5,
                                                 full_after_closed=0)])
async def test_full_pass_on_its_interval(client: Client) -> None:
    viewer = client("viewer")
    before = await full_passes(viewer)
    await wait_reclaimed(viewer, await frozen_then_dropped(viewer), before)


@pytest.mark.parametrize("gc_config", [GcConfig(freeze_interval_s=0.2, full_interval_s=0,
                                                 full_after_closed=0.5)])
async def test_full_pass_once_connections_closed(client: Client,
                                                 make_station: StationFactory) -> None:
    """A closed connection sits frozen as cyclic garbage: once half as many have closed
    as are open, a full pass reclaims them without waiting for the hour. Connecting
    stations (start-up, steady load) never cause one."""
    viewer = client("viewer")
    leaving = await make_station("CS001")
    await make_station("CS002")
    alive = await frozen_then_dropped(viewer)
    await asyncio.sleep(1.0)
    assert alive() is not None  # stations connected, none closed: no full pass
    before = await full_passes(viewer)
    await leaving.stop()  # one closed, one open
    await wait_reclaimed(viewer, alive, before)


def tracked(obj: object) -> bool:
    """Still in the collector's view (not frozen)."""
    return any(o is obj for o in gc.get_objects())


@pytest.mark.parametrize("gc_config", [GcConfig(freeze_interval_s=3600),
                                       GcConfig(freeze_interval_s=0)])
async def test_survivors_of_a_full_collection_frozen(client: Client,
                                                      gc_config: GcConfig) -> None:
    """Between timer freezes, what a generation-2 collection walked and kept is frozen
    at once, so the next one does not walk it again (the reconnect-storm cost)."""
    await client("viewer").get("/metrics")  # the CSMS is up
    survivor = Node()
    gc.collect()
    await asyncio.sleep(0.05)  # the freeze runs on the event loop
    assert tracked(survivor) is (gc_config.freeze_interval_s == 0)


async def test_collection_pauses_measured_per_generation(client: Client) -> None:
    gc.collect(0)
    text = (await client("viewer").get("/metrics")).text
    count = re.search(r'^csms_gc_pause_seconds_count\{generation="0"\} (\S+)$', text, re.M)
    assert count and float(count.group(1)) >= 1
