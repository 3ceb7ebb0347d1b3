"""Smart-charging core: pure planning of EV charging under grid limits and tariffs.

No I/O, no clock: the caller passes `now` and already-loaded config.
"""

from smart_charging.baselines import equal_share, tou_timer, uncontrolled
from smart_charging.config import prices_from_dict, site_from_dict
from smart_charging.model import (
    Carbon,
    DailyProfile,
    Evse,
    Node,
    Prices,
    Session,
    Site,
    SolarForecast,
    StationaryBattery,
    StepSeries,
    TimedLimit,
    TouBand,
    V2gMode,
    V2gTerms,
    Wiring,
)
from smart_charging.planner import EvseSchedule, Plan, Planner, PlanSettings
from smart_charging.problem import Grid, Weights, build_grid, build_qp
from smart_charging.profiles import charging_profile_for, profile_from_schedule
from smart_charging.setpoints import Rounding, round_setpoints
from smart_charging.solve import SolverSettings, project, violations

__all__ = [
    "Carbon",
    "DailyProfile",
    "Evse",
    "EvseSchedule",
    "Grid",
    "Node",
    "Plan",
    "PlanSettings",
    "Planner",
    "Prices",
    "Rounding",
    "Session",
    "Site",
    "SolarForecast",
    "SolverSettings",
    "StationaryBattery",
    "StepSeries",
    "TimedLimit",
    "TouBand",
    "V2gMode",
    "V2gTerms",
    "Weights",
    "Wiring",
    "build_grid",
    "build_qp",
    "charging_profile_for",
    "equal_share",
    "prices_from_dict",
    "profile_from_schedule",
    "project",
    "round_setpoints",
    "site_from_dict",
    "tou_timer",
    "uncontrolled",
    "violations",
]
