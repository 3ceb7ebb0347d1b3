"""Charging profiles as a charging station keeps them: pure data and decisions, no I/O.

This is the simulator's own reading of OCPP 2.0.1 Part 2 block K, independent of the CSMS:
- `validate` applies the K01 rules a station checks before it accepts a SetChargingProfile;
- `ProfileStore` keeps accepted profiles per id, EVSE, purpose and stack level (K01, K09, K10);
- `composite_schedule` / `limit_at` combine them the way K08 describes: within TxProfile and
  TxDefaultProfile the highest stack level valid at that moment wins and a TxProfile beats a
  TxDefaultProfile (an EVSE-specific TxDefaultProfile beats one for EVSE 0 at the same stack
  level); the result is capped by ChargingStationMaxProfile and
  ChargingStationExternalConstraints.

OCPP 2.1 adds V2X (Part 2 block Q) to the schedule periods, read here as one signed range:
`limit` is the highest rate (negative: the EV must feed back at least that much, the
backward-compatible way to ask for discharge), `dischargeLimit` (<= 0) the lowest, `setpoint`
the signed rate to run at, and `operationMode` says which of them the EVSE follows
(`Operation.target`). The TxProfile / TxDefaultProfile in force gives the mode and setpoint;
ChargingStationMaxProfile and external constraints narrow the range and win a conflict.
A station that cannot discharge (not bidirectional, or on 2.0.1) rejects a V2X period
(`validate`): an operationMode other than ChargingOnly with InvalidOperationMode, a
dischargeLimit below 0 or a setpoint with UnsupportedParam, a negative limit with
ValuePositiveOnly (reason codes of 2.1 Part 2, Appendix "Reason codes").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from simulators.clock import parse_ocpp, to_ocpp

TX_PROFILE = "TxProfile"
TX_DEFAULT_PROFILE = "TxDefaultProfile"
STATION_MAX_PROFILE = "ChargingStationMaxProfile"
EXTERNAL_CONSTRAINTS = "ChargingStationExternalConstraints"
PURPOSES = (EXTERNAL_CONSTRAINTS, STATION_MAX_PROFILE, TX_DEFAULT_PROFILE, TX_PROFILE)
PURPOSES_21_UNSUPPORTED = ("PriorityCharging", "LocalGeneration")
KINDS = ("Absolute", "Recurring", "Relative")
CHARGING_ONLY = "ChargingOnly"
CENTRAL_SETPOINT = "CentralSetpoint"
EXTERNAL_LIMITS = "ExternalLimits"
IDLE = "Idle"
# the operation modes this simulator executes on a bidirectional EVSE (2.1 has more:
# ExternalSetpoint, CentralFrequency, LocalFrequency, LocalLoadBalancing need a local EMS
# or a grid frequency the simulator does not model)
V2X_OPERATION_MODES = (CHARGING_ONLY, CENTRAL_SETPOINT, EXTERNAL_LIMITS, IDLE)
RECURRENCY_SECONDS = {"Daily": 86_400, "Weekly": 7 * 86_400}
DEFAULT_NUMBER_PHASES = 3
DC_NOMINAL_VOLTAGE_V = 400.0


@dataclass(frozen=True)
class SchedulePeriod:
    start_period: int
    limit: float | None  # None only in 2.1, where the operationMode needs none
    number_phases: int | None = None
    phase_to_use: int | None = None
    # OCPP 2.1 V2X, signed (negative = from the EV to the grid)
    discharge_limit: float | None = None
    setpoint: float | None = None
    operation_mode: str | None = None  # None: ChargingOnly
    extra: tuple[tuple[str, Any], ...] = ()  # other 2.1 fields: kept for reports, not obeyed

    @property
    def v2x(self) -> bool:
        """Asks for more than charging: discharge, a setpoint or another operation mode."""
        return (
            (self.limit is not None and self.limit < 0)
            or (self.discharge_limit is not None and self.discharge_limit < 0)
            or self.setpoint is not None
            or self.operation_mode not in (None, CHARGING_ONLY)
        )


_PERIOD_FIELDS = {"startPeriod", "limit", "numberPhases", "phaseToUse", "dischargeLimit",
                  "setpoint", "operationMode"}


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class ChargingSchedule:
    id: int
    charging_rate_unit: str
    periods: tuple[SchedulePeriod, ...]
    start_schedule: datetime | None = None
    duration: int | None = None
    min_charging_rate: float | None = None


@dataclass(frozen=True)
class ChargingProfile:
    id: int
    stack_level: int
    purpose: str
    kind: str
    schedules: tuple[ChargingSchedule, ...]
    recurrency_kind: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: str | None = None

    @property
    def schedule(self) -> ChargingSchedule:
        """The schedule a station executes (2.0.1 allows up to three for ISO 15118 offers)."""
        return self.schedules[0]

    @classmethod
    def from_ocpp(cls, data: Mapping) -> ChargingProfile:
        """Build from an OCPP chargingProfile object (camelCase JSON). Raises on bad shape."""
        schedules = []
        for s in data["chargingSchedule"]:
            periods = tuple(
                SchedulePeriod(
                    start_period=int(p["startPeriod"]),
                    limit=_opt_float(p.get("limit")),
                    number_phases=p.get("numberPhases"),
                    phase_to_use=p.get("phaseToUse"),
                    discharge_limit=_opt_float(p.get("dischargeLimit")),
                    setpoint=_opt_float(p.get("setpoint")),
                    operation_mode=p.get("operationMode"),
                    extra=tuple((k, v) for k, v in p.items() if k not in _PERIOD_FIELDS),
                )
                for p in s["chargingSchedulePeriod"]
            )
            schedules.append(
                ChargingSchedule(
                    id=int(s["id"]),
                    charging_rate_unit=s["chargingRateUnit"],
                    periods=periods,
                    start_schedule=_opt_time(s.get("startSchedule")),
                    duration=s.get("duration"),
                    min_charging_rate=s.get("minChargingRate"),
                )
            )
        return cls(
            id=int(data["id"]),
            stack_level=int(data["stackLevel"]),
            purpose=data["chargingProfilePurpose"],
            kind=data["chargingProfileKind"],
            schedules=tuple(schedules),
            recurrency_kind=data.get("recurrencyKind"),
            valid_from=_opt_time(data.get("validFrom")),
            valid_to=_opt_time(data.get("validTo")),
            transaction_id=data.get("transactionId"),
        )

    def to_ocpp(self) -> dict:
        """The OCPP chargingProfile object (camelCase JSON), as ReportChargingProfiles sends it."""
        out: dict = {
            "id": self.id,
            "stackLevel": self.stack_level,
            "chargingProfilePurpose": self.purpose,
            "chargingProfileKind": self.kind,
            "chargingSchedule": [_schedule_to_ocpp(s) for s in self.schedules],
        }
        if self.recurrency_kind is not None:
            out["recurrencyKind"] = self.recurrency_kind
        if self.valid_from is not None:
            out["validFrom"] = to_ocpp(self.valid_from)
        if self.valid_to is not None:
            out["validTo"] = to_ocpp(self.valid_to)
        if self.transaction_id is not None:
            out["transactionId"] = self.transaction_id
        return out


def _schedule_to_ocpp(s: ChargingSchedule) -> dict:
    out: dict = {
        "id": s.id,
        "chargingRateUnit": s.charging_rate_unit,
        "chargingSchedulePeriod": [_period_to_ocpp(p) for p in s.periods],
    }
    if s.start_schedule is not None:
        out["startSchedule"] = to_ocpp(s.start_schedule)
    if s.duration is not None:
        out["duration"] = s.duration
    if s.min_charging_rate is not None:
        out["minChargingRate"] = s.min_charging_rate
    return out


def _period_to_ocpp(p: SchedulePeriod) -> dict:
    out: dict = {"startPeriod": p.start_period}
    if p.limit is not None:
        out["limit"] = p.limit
    if p.number_phases is not None:
        out["numberPhases"] = p.number_phases
    if p.phase_to_use is not None:
        out["phaseToUse"] = p.phase_to_use
    if p.discharge_limit is not None:
        out["dischargeLimit"] = p.discharge_limit
    if p.setpoint is not None:
        out["setpoint"] = p.setpoint
    if p.operation_mode is not None:
        out["operationMode"] = p.operation_mode
    out.update(p.extra)
    return out


def _opt_time(text: str | None) -> datetime | None:
    return None if text is None else parse_ocpp(text)


@dataclass(frozen=True)
class InstalledProfile:
    """A profile as stored on the station: which EVSE it was set for (0 = station)."""

    evse_id: int
    profile: ChargingProfile
    source: str = "CSO"  # chargingLimitSource in GetChargingProfiles / ReportChargingProfiles


@dataclass(frozen=True)
class ProfileRules:
    """The SmartChargingCtrlr limits a station validates against."""

    rate_units: tuple[str, ...] = ("A", "W")
    periods_per_schedule: int = 24
    max_stack_level: int = 8
    max_entries: int = 16
    phases3to1: bool = False
    version: str = "2.0.1"  # the connection's OCPP version
    v2x: bool = False  # the EVSE (any EVSE, for evseId 0) can discharge on this connection
    operation_modes: tuple[str, ...] = (CHARGING_ONLY,)  # V2XChargingCtrlr.SupportedOperationModes


@dataclass(frozen=True)
class Rejection:
    """Why a SetChargingProfile is rejected: statusInfo.reasonCode and additionalInfo."""

    reason_code: str
    additional_info: str


def validate(
    profile: ChargingProfile,
    evse_id: int,
    *,
    evse_ids: Iterable[int],
    transactions: Mapping[int, str],
    installed: Iterable[InstalledProfile],
    rules: ProfileRules,
    now: datetime,
) -> Rejection | None:
    """Apply the K01 checks a station makes before accepting a profile; None means accept.

    `transactions` maps EVSE id to the transaction id running on it.
    """
    if evse_id != 0 and evse_id not in set(evse_ids):
        return Rejection("UnknownEVSE", f"no EVSE {evse_id}")
    if rules.version == "2.1" and profile.purpose in PURPOSES_21_UNSUPPORTED:
        return Rejection("UnsupportedPurpose", f"{profile.purpose} is not supported")
    if rules.version == "2.1" and profile.kind == "Dynamic":
        return Rejection("UnsupportedKind", "Dynamic profiles are not supported")
    if profile.purpose not in PURPOSES:
        return Rejection("InvalidProfile", f"unknown purpose {profile.purpose}")
    if profile.kind not in KINDS:
        return Rejection("InvalidProfile", f"unknown kind {profile.kind}")
    if not 0 <= profile.stack_level <= rules.max_stack_level:
        return Rejection(
            "InvalidStackLevel",
            f"stackLevel {profile.stack_level} outside 0..{rules.max_stack_level}",
        )
    if profile.purpose == EXTERNAL_CONSTRAINTS:
        return Rejection("InvalidProfile", "a CSMS does not set ExternalConstraints")
    if profile.purpose == STATION_MAX_PROFILE:
        if evse_id != 0:
            return Rejection("InvalidProfile", "ChargingStationMaxProfile only on evseId 0")
        if profile.kind == "Relative":
            return Rejection("InvalidProfile", "ChargingStationMaxProfile cannot be Relative")
    if profile.purpose == TX_PROFILE:
        if evse_id == 0:
            return Rejection("InvalidProfile", "TxProfile needs an evseId > 0")
        if profile.transaction_id is None:
            return Rejection("TxNotFound", "TxProfile without transactionId")
        if transactions.get(evse_id) != profile.transaction_id:
            return Rejection(
                "TxNotFound",
                f"transaction {profile.transaction_id} is not running on EVSE {evse_id}",
            )
    elif profile.transaction_id is not None:
        return Rejection("InvalidProfile", "transactionId is only allowed in a TxProfile")
    if profile.kind == "Recurring" and profile.recurrency_kind not in RECURRENCY_SECONDS:
        return Rejection("InvalidProfile", "Recurring profile needs recurrencyKind Daily/Weekly")
    if (
        profile.valid_from is not None
        and profile.valid_to is not None
        and profile.valid_to <= profile.valid_from
    ):
        return Rejection("InvalidValue", "validTo is not after validFrom")
    if profile.valid_to is not None and profile.valid_to <= now:
        return Rejection("InvalidValue", "validTo is in the past")
    if not 1 <= len(profile.schedules) <= 3:
        return Rejection("InvalidSchedule", "1 to 3 charging schedules allowed")
    for schedule in profile.schedules:
        rejection = _validate_schedule(profile, schedule, rules)
        if rejection is not None:
            return rejection
    others = [e for e in installed if e.profile.id != profile.id]
    for other in others:
        if (
            other.evse_id == evse_id
            and other.profile.purpose == profile.purpose
            and other.profile.stack_level == profile.stack_level
            and _validity_overlaps(other.profile, profile)
        ):
            return Rejection(
                "DuplicateProfile",
                f"profile {other.profile.id} has the same purpose and stackLevel on this EVSE",
            )
    if len(others) >= rules.max_entries:
        return Rejection("InvalidValue", f"station already holds {rules.max_entries} profiles")
    return None


def _validate_schedule(
    profile: ChargingProfile, schedule: ChargingSchedule, rules: ProfileRules
) -> Rejection | None:
    if profile.kind in ("Absolute", "Recurring") and schedule.start_schedule is None:
        return Rejection("InvalidSchedule", f"{profile.kind} profile needs startSchedule")
    if profile.kind == "Relative" and schedule.start_schedule is not None:
        return Rejection("InvalidSchedule", "Relative profile must not have startSchedule")
    if schedule.charging_rate_unit not in rules.rate_units:
        return Rejection(
            "UnsupportedRateUnit", f"chargingRateUnit {schedule.charging_rate_unit} not supported"
        )
    periods = schedule.periods
    if not periods:
        return Rejection("InvalidSchedule", "no chargingSchedulePeriod")
    if len(periods) > rules.periods_per_schedule:
        return Rejection(
            "InvalidSchedule",
            f"{len(periods)} periods, at most {rules.periods_per_schedule} supported",
        )
    if periods[0].start_period != 0:
        return Rejection("InvalidSchedule", "first startPeriod is not 0")
    for before, after in itertools.pairwise(periods):
        if after.start_period <= before.start_period:
            return Rejection("InvalidSchedule", "startPeriod values do not increase")
    if schedule.duration is not None and schedule.duration < 0:
        return Rejection("InvalidValue", "negative duration")
    if profile.kind == "Recurring" and schedule.duration is not None:
        if schedule.duration > RECURRENCY_SECONDS.get(profile.recurrency_kind or "", math.inf):
            return Rejection("InvalidSchedule", "duration longer than the recurrency period")
    for p in periods:
        rejection = _validate_v2x(p, rules)
        if rejection is not None:
            return rejection
        if p.number_phases is not None and p.number_phases not in (1, 2, 3):
            return Rejection("InvalidValue", f"numberPhases {p.number_phases}")
        if p.phase_to_use is not None:
            if p.number_phases != 1 or p.phase_to_use not in (1, 2, 3):
                return Rejection("InvalidValue", "phaseToUse needs numberPhases 1 and a phase")
            if not rules.phases3to1:
                return Rejection("InvalidValue", "phaseToUse needs Phases3to1 support")
    return None


def _validate_v2x(p: SchedulePeriod, rules: ProfileRules) -> Rejection | None:
    """The rates of one period and what V2X it asks for, against what the EVSE can do."""
    for name, value in (("limit", p.limit), ("dischargeLimit", p.discharge_limit),
                        ("setpoint", p.setpoint)):
        if value is not None and not math.isfinite(value):
            return Rejection("InvalidValue", f"{name} {value} is not a number")
    mode = p.operation_mode or CHARGING_ONLY
    if mode not in rules.operation_modes:
        return Rejection("InvalidOperationMode", f"operationMode {mode} is not supported here")
    if not rules.v2x:
        if p.limit is not None and p.limit < 0:
            return Rejection("ValuePositiveOnly", f"limit {p.limit}: this EVSE cannot discharge")
        if p.discharge_limit is not None and p.discharge_limit < 0:
            return Rejection("UnsupportedParam", "dischargeLimit: this EVSE cannot discharge")
        if p.setpoint is not None:
            return Rejection("UnsupportedParam", "setpoint: this EVSE takes no setpoint")
    if p.discharge_limit is not None and p.discharge_limit > 0:
        return Rejection("InvalidValue", "dischargeLimit is not above 0")
    if mode == CHARGING_ONLY and p.limit is None:
        return Rejection("MissingParam", "ChargingOnly needs a limit")
    if mode == CENTRAL_SETPOINT and p.setpoint is None:
        return Rejection("MissingParam", "CentralSetpoint needs a setpoint")
    if p.setpoint is not None and (
        (p.limit is not None and p.setpoint > p.limit)
        or (p.discharge_limit is not None and p.setpoint < p.discharge_limit)
    ):
        return Rejection("ValueOutOfRange", "setpoint outside [dischargeLimit, limit]")
    return None


_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def _validity_overlaps(a: ChargingProfile, b: ChargingProfile) -> bool:
    a_from, a_to = a.valid_from or _EARLIEST, a.valid_to or _LATEST
    b_from, b_to = b.valid_from or _EARLIEST, b.valid_to or _LATEST
    return a_from < b_to and b_from < a_to


@dataclass
class ProfileStore:
    """The profiles a station holds, keyed by profile id (a new profile with an id replaces)."""

    _by_id: dict[int, InstalledProfile] = field(default_factory=dict)

    def install(self, evse_id: int, profile: ChargingProfile, source: str = "CSO") -> None:
        self._by_id[profile.id] = InstalledProfile(evse_id, profile, source)

    def __iter__(self):
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, profile_id: int) -> InstalledProfile | None:
        return self._by_id.get(profile_id)

    def clear(
        self,
        *,
        profile_id: int | None = None,
        evse_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
    ) -> int:
        """ClearChargingProfile (K10): by id, or by every criterion given. Returns the count."""
        if profile_id is not None:
            return 1 if self._by_id.pop(profile_id, None) is not None else 0
        doomed = [
            e.profile.id
            for e in self._by_id.values()
            if (evse_id is None or e.evse_id == evse_id)
            and (purpose is None or e.profile.purpose == purpose)
            and (stack_level is None or e.profile.stack_level == stack_level)
            and e.profile.purpose != EXTERNAL_CONSTRAINTS
        ]
        for pid in doomed:
            del self._by_id[pid]
        return len(doomed)

    def select(
        self,
        *,
        evse_id: int | None = None,
        ids: Iterable[int] | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
        sources: Iterable[str] | None = None,
    ) -> list[InstalledProfile]:
        """GetChargingProfiles (K09) criteria; every criterion given must match."""
        id_set = set(ids) if ids is not None else None
        source_set = set(sources) if sources is not None else None
        return [
            e
            for e in self._by_id.values()
            if (evse_id is None or e.evse_id == evse_id)
            and (id_set is None or e.profile.id in id_set)
            and (purpose is None or e.profile.purpose == purpose)
            and (stack_level is None or e.profile.stack_level == stack_level)
            and (source_set is None or e.source in source_set)
        ]

    def expire(self, now: datetime) -> list[InstalledProfile]:
        """Drop profiles whose validTo has passed; return them."""
        gone = [
            e
            for e in self._by_id.values()
            if e.profile.valid_to is not None and e.profile.valid_to <= now
        ]
        for e in gone:
            del self._by_id[e.profile.id]
        return gone

    def end_transaction(self, transaction_id: str) -> list[InstalledProfile]:
        """A TxProfile ends with its transaction (K01.FR.20-ish); return what was removed."""
        gone = [
            e
            for e in self._by_id.values()
            if e.profile.purpose == TX_PROFILE and e.profile.transaction_id == transaction_id
        ]
        for e in gone:
            del self._by_id[e.profile.id]
        return gone


@dataclass(frozen=True)
class Electrical:
    """What is needed to convert between A (per phase) and W at an EVSE."""

    kind: str = "AC"  # "AC" or "DC"
    phases: int = 3
    voltage_v: float = 230.0

    def to_unit(self, limit: float, unit: str, target: str, number_phases: int | None) -> float:
        if unit == target:
            return limit
        if self.kind == "DC":
            factor = DC_NOMINAL_VOLTAGE_V
        else:
            phases = min(number_phases or DEFAULT_NUMBER_PHASES, self.phases)
            factor = self.voltage_v * phases
        return limit * factor if target == "W" else limit / factor


@dataclass(frozen=True)
class PeriodLimit:
    """One profile's period in force at one moment."""

    limit: float | None
    unit: str
    number_phases: int | None
    stack_level: int
    evse_specific: bool
    discharge_limit: float | None = None
    setpoint: float | None = None
    operation_mode: str | None = None

    def to_unit(self, value: float | None, unit: str, electrical: Electrical) -> float | None:
        if value is None:
            return None
        return electrical.to_unit(value, self.unit, unit, self.number_phases)


@dataclass(frozen=True)
class Operation:
    """What the composite schedule asks of an EVSE at one moment, in one unit, signed
    (negative = from the EV): the range [discharge_limit, limit] (None: unbounded that way),
    the setpoint and the operation mode of the TxProfile / TxDefaultProfile in force."""

    limit: float | None
    discharge_limit: float | None = None
    setpoint: float | None = None
    operation_mode: str | None = None
    number_phases: int | None = None

    @property
    def mode(self) -> str:
        return self.operation_mode or CHARGING_ONLY

    def target(self, wanted: float = math.inf) -> float:
        """The signed rate the EVSE runs at when the EV would charge at `wanted` (>= 0).

        Idle: 0. CentralSetpoint: the setpoint, held in the range. ChargingOnly and
        ExternalLimits: what the EV wants up to `limit`; a negative limit (2.1's backward-
        compatible discharge) makes the EV feed back at least that much. The EV's own limits
        (its battery, its reserve) apply after this.
        """
        if self.mode == IDLE:
            return 0.0
        high = math.inf if self.limit is None else self.limit
        low = -math.inf if self.discharge_limit is None else self.discharge_limit
        wish = wanted
        if self.mode == CENTRAL_SETPOINT and self.setpoint is not None:
            wish = self.setpoint
        return max(low, min(wish, high))


@dataclass(frozen=True)
class Transaction:
    """The transaction running on the EVSE a composite is computed for."""

    transaction_id: str
    started: datetime


def _schedule_start(
    profile: ChargingProfile, t: datetime, relative_start: datetime
) -> datetime | None:
    schedule = profile.schedule
    if profile.kind == "Relative":
        return relative_start
    start = schedule.start_schedule
    if start is None:
        return None
    if profile.kind == "Recurring":
        period = RECURRENCY_SECONDS[profile.recurrency_kind or "Daily"]
        if t < start:
            return None
        k = math.floor((t - start).total_seconds() / period)
        return start + timedelta(seconds=k * period)
    return start


def profile_limit_at(
    entry: InstalledProfile, t: datetime, relative_start: datetime
) -> PeriodLimit | None:
    """The limit `entry` sets at `t`, or None if it is not in force then."""
    p = entry.profile
    if p.valid_from is not None and t < p.valid_from:
        return None
    if p.valid_to is not None and t >= p.valid_to:
        return None
    start = _schedule_start(p, t, relative_start)
    if start is None or t < start:
        return None
    offset = (t - start).total_seconds()
    schedule = p.schedule
    if schedule.duration is not None and offset >= schedule.duration:
        return None
    current = None
    for period in schedule.periods:
        if period.start_period <= offset:
            current = period
        else:
            break
    if current is None:
        return None
    return PeriodLimit(
        current.limit,
        schedule.charging_rate_unit,
        current.number_phases,
        p.stack_level,
        entry.evse_id != 0,
        current.discharge_limit,
        current.setpoint,
        current.operation_mode,
    )


def _applies(entry: InstalledProfile, evse_id: int, tx: Transaction | None) -> bool:
    purpose = entry.profile.purpose
    if purpose == TX_PROFILE:
        return (
            evse_id != 0
            and tx is not None
            and entry.evse_id == evse_id
            and entry.profile.transaction_id == tx.transaction_id
        )
    if purpose == TX_DEFAULT_PROFILE:
        return evse_id != 0 and entry.evse_id in (0, evse_id)
    return entry.evse_id in (0, evse_id)


def operation_at(
    profiles: Iterable[InstalledProfile],
    evse_id: int,
    t: datetime,
    unit: str,
    electrical: Electrical,
    tx: Transaction | None = None,
    relative_start: datetime | None = None,
) -> Operation | None:
    """The composite at `t` in `unit`, or None if no profile is in force.

    The TxProfile (else TxDefaultProfile) of the highest stack level gives the mode, the
    setpoint and its range; the caps (ChargingStationMaxProfile, external constraints) narrow
    the range: the least limit, the least negative dischargeLimit. Where a cap and the Tx
    level disagree (the Tx level asks for more discharge than a cap allows), the cap wins.
    `relative_start` anchors Relative profiles when no transaction runs (default: `t`).
    """
    anchor = tx.started if tx is not None else (relative_start or t)
    by_purpose: dict[str, list[PeriodLimit]] = {p: [] for p in PURPOSES}
    for entry in profiles:
        if not _applies(entry, evse_id, tx):
            continue
        lim = profile_limit_at(entry, t, anchor)
        if lim is not None:
            by_purpose[entry.profile.purpose].append(lim)

    def best(limits: list[PeriodLimit]) -> PeriodLimit | None:
        if not limits:
            return None
        return max(limits, key=lambda x: (x.stack_level, x.evse_specific))

    tx_level = best(by_purpose[TX_PROFILE]) or best(by_purpose[TX_DEFAULT_PROFILE])
    caps = [c for c in [best(by_purpose[STATION_MAX_PROFILE]), *by_purpose[EXTERNAL_CONSTRAINTS]]
            if c is not None]
    if tx_level is None and not caps:
        return None
    cap_high = _least(c.to_unit(c.limit, unit, electrical) for c in caps)
    cap_low = _most(c.to_unit(c.discharge_limit, unit, electrical) for c in caps)
    high, low, setpoint, mode, phases = cap_high, cap_low, None, None, None
    if tx_level is not None:
        high = _least([cap_high, tx_level.to_unit(tx_level.limit, unit, electrical)])
        low = _most([cap_low, tx_level.to_unit(tx_level.discharge_limit, unit, electrical)])
        setpoint = tx_level.to_unit(tx_level.setpoint, unit, electrical)
        mode = tx_level.operation_mode
        phases = tx_level.number_phases
    if cap_low is not None and high is not None and high < cap_low:
        high = cap_low  # a cap's dischargeLimit bounds discharge the Tx level asks for
    if cap_high is not None and low is not None and low > cap_high:
        low = cap_high
    return Operation(high, low, setpoint, mode, phases)


def _least(values: Iterable[float | None]) -> float | None:
    given = [v for v in values if v is not None]
    return min(given) if given else None


def _most(values: Iterable[float | None]) -> float | None:
    given = [v for v in values if v is not None]
    return max(given) if given else None


def limit_at(
    profiles: Iterable[InstalledProfile],
    evse_id: int,
    t: datetime,
    unit: str,
    electrical: Electrical,
    tx: Transaction | None = None,
    relative_start: datetime | None = None,
) -> tuple[float, int | None] | None:
    """The composite limit at `t` in `unit` with its numberPhases, or None if nothing limits
    (the highest rate allowed; see `operation_at` for the whole V2X picture)."""
    op = operation_at(profiles, evse_id, t, unit, electrical, tx, relative_start)
    if op is None or op.limit is None:
        return None
    return op.limit, op.number_phases


def _breakpoints(
    entry: InstalledProfile, start: datetime, end: datetime, anchor: datetime
) -> set[datetime]:
    p = entry.profile
    times: set[datetime] = set()
    for t in (p.valid_from, p.valid_to):
        if t is not None and start < t < end:
            times.add(t)
    schedule = p.schedule
    if p.kind == "Relative":
        origins = [anchor]
    elif p.kind == "Recurring" and schedule.start_schedule is not None:
        period = RECURRENCY_SECONDS[p.recurrency_kind or "Daily"]
        first = _schedule_start(p, start, anchor) or schedule.start_schedule
        origins = []
        o = first
        while o < end:
            origins.append(o)
            o = o + timedelta(seconds=period)
    elif schedule.start_schedule is not None:
        origins = [schedule.start_schedule]
    else:
        origins = []
    for origin in origins:
        offsets = [period.start_period for period in schedule.periods]
        if schedule.duration is not None:
            offsets.append(schedule.duration)
        for off in offsets:
            t = origin + timedelta(seconds=off)
            if start < t < end:
                times.add(t)
    return times


@dataclass(frozen=True)
class CompositePeriod:
    start_period: int
    limit: float
    number_phases: int | None = None
    discharge_limit: float | None = None  # 2.1 V2X, as in Operation
    setpoint: float | None = None
    operation_mode: str | None = None


@dataclass(frozen=True)
class CompositeSchedule:
    evse_id: int
    start: datetime
    duration: int
    unit: str
    periods: tuple[CompositePeriod, ...]

    def to_ocpp(self) -> dict:
        return {
            "evseId": self.evse_id,
            "duration": self.duration,
            "scheduleStart": to_ocpp(self.start),
            "chargingRateUnit": self.unit,
            "chargingSchedulePeriod": [
                _period_to_ocpp(
                    SchedulePeriod(
                        p.start_period,
                        round(p.limit, 1),
                        p.number_phases,
                        discharge_limit=_round(p.discharge_limit),
                        setpoint=_round(p.setpoint),
                        operation_mode=p.operation_mode,
                    )
                )
                for p in self.periods
            ],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def composite_schedule(
    profiles: Iterable[InstalledProfile],
    evse_id: int,
    start: datetime,
    duration_s: int,
    unit: str,
    electrical: Electrical,
    tx: Transaction | None = None,
    default_limit: float | None = None,
) -> CompositeSchedule:
    """The composite schedule (K08) for `evse_id` over [start, start + duration_s).

    Where no profile limits, the period carries `default_limit` (the EVSE's own maximum in
    `unit`), or is left out when that is None. V2X periods (2.1) also carry the
    dischargeLimit, setpoint and operationMode in force.
    """
    entries = [e for e in profiles if _applies(e, evse_id, tx)]
    end = start + timedelta(seconds=duration_s)
    anchor = tx.started if tx is not None else start
    points = {start}
    for e in entries:
        points |= _breakpoints(e, start, end, anchor)
    periods: list[CompositePeriod] = []
    for t in sorted(points):
        op = operation_at(entries, evse_id, t, unit, electrical, tx, relative_start=anchor)
        limit = op.limit if op is not None else None
        if limit is None:
            if default_limit is None:
                continue
            limit = default_limit
        period = CompositePeriod(
            int((t - start).total_seconds()),
            limit,
            op.number_phases if op is not None else None,
            op.discharge_limit if op is not None else None,
            op.setpoint if op is not None else None,
            op.operation_mode if op is not None else None,
        )
        if periods and _same_rates(periods[-1], period):
            continue
        periods.append(period)
    return CompositeSchedule(evse_id, start, duration_s, unit, tuple(periods))


def _same_rates(a: CompositePeriod, b: CompositePeriod) -> bool:
    return (a.limit, a.number_phases, a.discharge_limit, a.setpoint, a.operation_mode) == (
        b.limit, b.number_phases, b.discharge_limit, b.setpoint, b.operation_mode
    )


def next_change(
    profiles: Iterable[InstalledProfile],
    evse_id: int,
    t: datetime,
    horizon_s: float,
    tx: Transaction | None = None,
) -> datetime | None:
    """The first moment after `t` (within the horizon) at which the composite may change."""
    end = t + timedelta(seconds=horizon_s)
    anchor = tx.started if tx is not None else t
    points: set[datetime] = set()
    for e in profiles:
        if _applies(e, evse_id, tx):
            points |= _breakpoints(e, t, end, anchor)
    return min(points) if points else None
