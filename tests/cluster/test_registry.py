"""The registry of which worker holds each station's socket (csms/cluster/registry.py),
written a batch at a time: a newer socket's row is never overwritten by an older claim,
and a worker releases only its own rows. Against the real database."""

from __future__ import annotations

from datetime import timedelta

from csms.app import Csms
from csms.cluster.registry import Registry


async def test_batched_claims_keep_the_newest_socket_and_release_only_their_own(
        csms: Csms) -> None:
    registry = Registry(csms.store.pool)
    now = csms.clock.now()
    for n, worker in enumerate(("w-a", "w-b")):
        await registry.join(worker, "node-1", n, 1000 + n, now)
    await registry.hold_many([(f"S{i}", now) for i in range(1200)], "w-a")
    # w-b took S0-S9 later; a late claim of w-a's older socket for S0 does not win back
    await registry.hold_many([(f"S{i}", now + timedelta(seconds=5)) for i in range(10)],
                             "w-b")
    await registry.hold_many([("S0", now)], "w-a")
    rows = {r.station_id: r.worker_id for r in await registry.holdings()}
    assert len(rows) == 1200
    assert {rows[f"S{i}"] for i in range(10)} == {"w-b"}
    assert {rows[f"S{i}"] for i in range(10, 1200)} == {"w-a"}
    # w-a lets go of S0-S19: S0-S9 are w-b's now and stay
    await registry.release_many([f"S{i}" for i in range(20)], "w-a")
    rows = {r.station_id: r.worker_id for r in await registry.holdings()}
    assert len(rows) == 1190 and "S15" not in rows and rows["S5"] == "w-b"
    await registry.hold_many([], "w-a")  # nothing to write: no statement
    await registry.release_many([], "w-a")
