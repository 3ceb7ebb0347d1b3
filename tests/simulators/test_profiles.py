"""K01 validation, K09/K10 store behaviour and the K08 composite schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simulators.profiles import (
    ChargingProfile,
    Electrical,
    InstalledProfile,
    ProfileRules,
    ProfileStore,
    Transaction,
    composite_schedule,
    limit_at,
    next_change,
    validate,
)

T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
AC3 = Electrical("AC", phases=3, voltage_v=230.0)


def profile(
    pid: int = 1,
    *,
    purpose: str = "TxDefaultProfile",
    stack: int = 0,
    kind: str = "Absolute",
    unit: str = "A",
    periods: list[tuple[int, float]] | None = None,
    start: datetime | None = T0,
    duration: int | None = None,
    tx: str | None = None,
    recurrency: str | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    phases: int | None = None,
) -> ChargingProfile:
    sched: dict = {
        "id": pid,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [
            {"startPeriod": s, "limit": lim, **({"numberPhases": phases} if phases else {})}
            for s, lim in (periods or [(0, 16.0)])
        ],
    }
    if start is not None and kind != "Relative":
        sched["startSchedule"] = start.isoformat()
    if duration is not None:
        sched["duration"] = duration
    data: dict = {
        "id": pid,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": [sched],
    }
    if tx:
        data["transactionId"] = tx
    if recurrency:
        data["recurrencyKind"] = recurrency
    if valid_from:
        data["validFrom"] = valid_from.isoformat()
    if valid_to:
        data["validTo"] = valid_to.isoformat()
    return ChargingProfile.from_ocpp(data)


def check(p: ChargingProfile, evse_id: int = 1, installed=(), transactions=None, rules=None):
    return validate(
        p,
        evse_id,
        evse_ids=[1, 2],
        transactions=transactions if transactions is not None else {1: "TX1"},
        installed=installed,
        rules=rules or ProfileRules(),
        now=T0,
    )


def reason(p: ChargingProfile, **kw) -> str | None:
    r = check(p, **kw)
    return None if r is None else r.reason_code


# ---- K01 validation -------------------------------------------------------------------


def test_K01_accepts_valid_txdefault_and_txprofile():
    assert check(profile()) is None
    assert check(profile(purpose="TxProfile", tx="TX1")) is None
    assert check(profile(purpose="ChargingStationMaxProfile", unit="W"), evse_id=0) is None


def test_K01_roundtrips_ocpp_json():
    p = profile(purpose="TxProfile", tx="TX1", periods=[(0, 10.0), (600, 20.0)], duration=3600)
    assert ChargingProfile.from_ocpp(p.to_ocpp()) == p


def test_K01_rejects_first_start_period_not_zero():
    assert reason(profile(periods=[(10, 16.0)])) == "InvalidSchedule"


def test_K01_rejects_start_periods_not_increasing():
    assert reason(profile(periods=[(0, 16.0), (600, 10.0), (600, 8.0)])) == "InvalidSchedule"
    assert reason(profile(periods=[(0, 16.0), (600, 10.0), (300, 8.0)])) == "InvalidSchedule"


def test_K01_rejects_txprofile_without_transaction():
    assert reason(profile(purpose="TxProfile")) == "TxNotFound"


def test_K01_rejects_txprofile_for_transaction_not_running_on_that_evse():
    assert reason(profile(purpose="TxProfile", tx="OTHER")) == "TxNotFound"
    assert reason(profile(purpose="TxProfile", tx="TX1"), evse_id=2) == "TxNotFound"
    assert reason(profile(purpose="TxProfile", tx="TX1"), transactions={}) == "TxNotFound"


def test_K01_rejects_txprofile_on_evse_zero():
    assert reason(profile(purpose="TxProfile", tx="TX1"), evse_id=0) == "InvalidProfile"


def test_K01_rejects_station_max_profile_on_an_evse():
    assert reason(profile(purpose="ChargingStationMaxProfile"), evse_id=1) == "InvalidProfile"


def test_K01_rejects_relative_station_max_profile():
    p = profile(purpose="ChargingStationMaxProfile", kind="Relative", start=None)
    assert reason(p, evse_id=0) == "InvalidProfile"


def test_K01_rejects_relative_with_start_schedule():
    p = profile(kind="Relative", start=None)
    data = p.to_ocpp()
    data["chargingSchedule"][0]["startSchedule"] = "2026-11-23T00:00:00Z"
    assert reason(ChargingProfile.from_ocpp(data)) == "InvalidSchedule"


def test_K01_rejects_absolute_and_recurring_without_start_schedule():
    assert reason(profile(start=None)) == "InvalidSchedule"
    assert reason(profile(kind="Recurring", recurrency="Daily", start=None)) == "InvalidSchedule"


def test_K01_rejects_recurring_without_recurrency_kind():
    assert reason(profile(kind="Recurring")) == "InvalidProfile"


def test_K01_rejects_unsupported_rate_unit():
    rules = ProfileRules(rate_units=("A",))
    assert reason(profile(unit="W"), rules=rules) == "UnsupportedRateUnit"
    assert reason(profile(unit="A"), rules=rules) is None


def test_K01_rejects_more_periods_than_periods_per_schedule():
    rules = ProfileRules(periods_per_schedule=3)
    ok = profile(periods=[(0, 1.0), (60, 2.0), (120, 3.0)])
    too_many = profile(periods=[(0, 1.0), (60, 2.0), (120, 3.0), (180, 4.0)])
    assert reason(ok, rules=rules) is None
    assert reason(too_many, rules=rules) == "InvalidSchedule"


def test_K01_rejects_stack_level_above_profile_stack_level():
    assert reason(profile(stack=8)) is None
    assert reason(profile(stack=9)) == "InvalidStackLevel"


def test_K01_rejects_negative_limit():
    # a station that cannot discharge (2.0.1, or not bidirectional): the 2.1 reason code
    assert reason(profile(periods=[(0, -1.0)])) == "ValuePositiveOnly"


def test_K01_rejects_external_constraints_from_csms():
    p = profile(purpose="ChargingStationExternalConstraints")
    assert reason(p, evse_id=0) == "InvalidProfile"


def test_K01_rejects_unknown_evse():
    assert reason(profile(), evse_id=7) == "UnknownEVSE"


def test_K01_rejects_same_purpose_and_stack_level_with_other_id():
    existing = [InstalledProfile(1, profile(1, stack=2))]
    assert reason(profile(2, stack=2), installed=existing) == "DuplicateProfile"
    # same id replaces; other EVSE, other stack level, other purpose do not clash
    assert reason(profile(1, stack=2), installed=existing) is None
    assert reason(profile(2, stack=2), evse_id=2, installed=existing) is None
    assert reason(profile(2, stack=3), installed=existing) is None


def test_K01_accepts_same_stack_level_when_validity_does_not_overlap():
    existing = [InstalledProfile(1, profile(1, valid_to=T0 + timedelta(hours=1)))]
    later = profile(2, valid_from=T0 + timedelta(hours=1))
    assert reason(later, installed=existing) is None


def test_K01_rejects_when_entries_are_full():
    rules = ProfileRules(max_entries=2)
    existing = [InstalledProfile(1, profile(i, stack=i)) for i in (1, 2)]
    assert reason(profile(3, stack=3), installed=existing, rules=rules) == "InvalidValue"
    assert reason(profile(2, stack=2), installed=existing, rules=rules) is None


# ---- store: K09 / K10 / expiry --------------------------------------------------------


def make_store() -> ProfileStore:
    store = ProfileStore()
    store.install(0, profile(1, purpose="ChargingStationMaxProfile", unit="W"))
    store.install(1, profile(2, stack=1))
    store.install(2, profile(3, stack=1))
    store.install(1, profile(4, purpose="TxProfile", tx="TX1"))
    return store


def test_K10_clear_by_id():
    store = make_store()
    assert store.clear(profile_id=3) == 1
    assert store.clear(profile_id=3) == 0
    assert sorted(e.profile.id for e in store) == [1, 2, 4]


def test_K10_clear_by_criteria_requires_every_given_criterion():
    store = make_store()
    assert store.clear(purpose="TxDefaultProfile", evse_id=2) == 1
    assert store.clear(purpose="TxDefaultProfile", stack_level=5) == 0
    assert store.clear() == 3
    assert len(store) == 0


def test_K01_same_id_replaces_stored_profile():
    store = make_store()
    store.install(1, profile(2, stack=4))
    assert len(store) == 4
    assert store.get(2).profile.stack_level == 4


def test_K09_select_by_evse_and_purpose():
    store = make_store()
    assert [e.profile.id for e in store.select(evse_id=1, purpose="TxProfile")] == [4]
    assert sorted(e.profile.id for e in store.select(ids=[1, 3])) == [1, 3]
    assert store.select(stack_level=7) == []


def test_profiles_expire_at_valid_to_and_txprofiles_end_with_transaction():
    store = ProfileStore()
    store.install(1, profile(1, valid_to=T0 + timedelta(hours=1)))
    store.install(1, profile(2, purpose="TxProfile", tx="TX1"))
    assert store.expire(T0 + timedelta(minutes=59)) == []
    assert [e.profile.id for e in store.expire(T0 + timedelta(hours=1))] == [1]
    assert [e.profile.id for e in store.end_transaction("TX1")] == [2]
    assert len(store) == 0


# ---- K08 composite schedule ----------------------------------------------------------

TX = Transaction("TX1", T0)


def lim(entries, t=T0, unit="A", evse_id=1, tx=TX, electrical=AC3):
    got = limit_at(entries, evse_id, t, unit, electrical, tx)
    return None if got is None else round(got[0], 3)


def test_K08_no_profile_means_no_limit():
    assert lim([]) is None


def test_K08_highest_valid_stack_level_wins():
    entries = [
        InstalledProfile(1, profile(1, stack=0, periods=[(0, 32.0)])),
        InstalledProfile(1, profile(2, stack=1, periods=[(0, 10.0)], duration=3600)),
    ]
    assert lim(entries) == 10.0
    # after the higher stack level's duration the lower one applies again
    assert lim(entries, T0 + timedelta(hours=1)) == 32.0


def test_K08_txprofile_beats_txdefault_whatever_the_stack_level():
    entries = [
        InstalledProfile(1, profile(1, stack=5, periods=[(0, 8.0)])),
        InstalledProfile(
            1, profile(2, purpose="TxProfile", stack=0, tx="TX1", periods=[(0, 20.0)])
        ),
    ]
    assert lim(entries) == 20.0
    # without the transaction the TxProfile does not apply
    assert lim(entries, tx=None) == 8.0


def test_K08_evse_specific_txdefault_beats_evse_zero_at_same_stack_level():
    entries = [
        InstalledProfile(0, profile(1, stack=1, periods=[(0, 10.0)])),
        InstalledProfile(1, profile(2, stack=1, periods=[(0, 20.0)])),
    ]
    assert lim(entries, evse_id=1) == 20.0
    assert lim(entries, evse_id=2) == 10.0
    # a higher stack level on EVSE 0 still wins
    entries.append(InstalledProfile(0, profile(3, stack=2, periods=[(0, 12.0)])))
    assert lim(entries, evse_id=1) == 12.0


def test_K08_station_max_and_external_constraints_cap_the_tx_level():
    tx_default = InstalledProfile(1, profile(1, periods=[(0, 32.0)]))
    station_max = InstalledProfile(
        0, profile(2, purpose="ChargingStationMaxProfile", unit="W", periods=[(0, 11040.0)])
    )
    external = InstalledProfile(
        0, profile(3, purpose="ChargingStationExternalConstraints", periods=[(0, 10.0)])
    )
    assert lim([tx_default, station_max]) == 16.0  # 11040 W / (230 V * 3)
    assert lim([tx_default, station_max, external]) == 10.0
    assert lim([station_max]) == 16.0


def test_K08_converts_amps_to_watts_with_number_phases():
    three = InstalledProfile(1, profile(1, periods=[(0, 16.0)]))
    one = InstalledProfile(1, profile(2, periods=[(0, 16.0)], phases=1))
    assert lim([three], unit="W") == 11040.0
    assert lim([one], unit="W") == 3680.0
    single_phase_evse = Electrical("AC", phases=1, voltage_v=230.0)
    assert lim([three], unit="W", electrical=single_phase_evse) == 3680.0
    dc = Electrical("DC")
    assert lim([three], unit="W", electrical=dc) == 6400.0


def test_K08_absolute_profile_periods_follow_start_schedule():
    entries = [InstalledProfile(1, profile(1, periods=[(0, 6.0), (3600, 16.0), (7200, 32.0)]))]
    assert lim(entries, T0 - timedelta(seconds=1)) is None
    assert lim(entries, T0 + timedelta(minutes=59)) == 6.0
    assert lim(entries, T0 + timedelta(hours=1)) == 16.0
    assert lim(entries, T0 + timedelta(hours=5)) == 32.0


def test_K08_relative_profile_starts_with_the_transaction():
    rel = InstalledProfile(
        1, profile(1, kind="Relative", start=None, periods=[(0, 6.0), (600, 20.0)])
    )
    tx = Transaction("TX1", T0 + timedelta(hours=2))
    assert lim([rel], T0 + timedelta(hours=2, minutes=5), tx=tx) == 6.0
    assert lim([rel], T0 + timedelta(hours=2, minutes=10), tx=tx) == 20.0


def test_K08_daily_recurring_profile_repeats():
    # 0-7h: 32 A, 7h-24h: 10 A, every day from T0
    daily = InstalledProfile(
        1, profile(1, kind="Recurring", recurrency="Daily", periods=[(0, 32.0), (7 * 3600, 10.0)])
    )
    assert lim([daily], T0 + timedelta(days=3, hours=6)) == 32.0
    assert lim([daily], T0 + timedelta(days=3, hours=8)) == 10.0


def test_K08_valid_from_and_valid_to_bound_a_profile():
    entries = [
        InstalledProfile(1, profile(1, stack=0, periods=[(0, 32.0)])),
        InstalledProfile(
            1,
            profile(
                2,
                stack=1,
                periods=[(0, 8.0)],
                valid_from=T0 + timedelta(hours=1),
                valid_to=T0 + timedelta(hours=2),
            ),
        ),
    ]
    assert lim(entries, T0 + timedelta(minutes=30)) == 32.0
    assert lim(entries, T0 + timedelta(minutes=90)) == 8.0
    assert lim(entries, T0 + timedelta(hours=2)) == 32.0


def test_K08_composite_schedule_merges_stack_levels_into_periods():
    # Like the spec's example: a default all night, a TxProfile window, a station cap.
    entries = [
        InstalledProfile(1, profile(1, stack=0, periods=[(0, 32.0)])),
        InstalledProfile(1, profile(2, stack=1, periods=[(0, 16.0), (3600, 24.0)], duration=7200)),
        InstalledProfile(
            1,
            profile(
                3,
                purpose="TxProfile",
                tx="TX1",
                start=T0 + timedelta(minutes=30),
                periods=[(0, 10.0)],
                duration=1800,
            ),
        ),
        InstalledProfile(0, profile(4, purpose="ChargingStationMaxProfile", periods=[(0, 28.0)])),
    ]
    cs = composite_schedule(entries, 1, T0, 4 * 3600, "A", AC3, TX, default_limit=32.0)
    assert [(p.start_period, p.limit) for p in cs.periods] == [
        (0, 16.0),  # TxDefault stack 1
        (1800, 10.0),  # TxProfile window
        (3600, 24.0),  # back to TxDefault stack 1, second period
        (7200, 28.0),  # stack 1 ended: stack 0 (32 A) capped by the station max (28 A)
    ]
    doc = cs.to_ocpp()
    assert doc["chargingRateUnit"] == "A"
    assert doc["chargingSchedulePeriod"][0] == {"startPeriod": 0, "limit": 16.0}


def test_K08_composite_schedule_in_watts_uses_default_when_nothing_limits():
    entries = [InstalledProfile(1, profile(1, periods=[(0, 16.0)], duration=600))]
    cs = composite_schedule(entries, 1, T0, 1200, "W", AC3, TX, default_limit=22080.0)
    assert [(p.start_period, p.limit) for p in cs.periods] == [(0, 11040.0), (600, 22080.0)]


def test_next_change_finds_the_next_period_boundary():
    entries = [InstalledProfile(1, profile(1, periods=[(0, 6.0), (3600, 16.0)]))]
    assert next_change(entries, 1, T0 + timedelta(minutes=10), 7200, TX) == T0 + timedelta(hours=1)
    assert next_change(entries, 1, T0 + timedelta(hours=2), 600, TX) is None


@pytest.mark.parametrize("kind", ["Absolute", "Recurring"])
def test_K01_profile_kinds_need_start_schedule(kind):
    p = profile(kind=kind, recurrency="Daily" if kind == "Recurring" else None, start=None)
    assert reason(p) == "InvalidSchedule"
