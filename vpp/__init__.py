"""Virtual power plant: pure decisions above sites (issue 14).

Flexibility forecasts from the engine, offers and bid curves for demand response, and a
portfolio's commitment split across its sites. Like `smart_charging`: no I/O, no clock,
never imports `csms`; the CSMS gathers the inputs and acts on the answers.
"""

from vpp.arrivals import ArrivalModel, ExpectedArrival, PastSession, expected, learn
from vpp.dispatch import SiteDelivery, TrackingPoint, resplit, short_sites, split, tracking_error
from vpp.forecast import (
    Band,
    Flexibility,
    engine_check,
    scenario_weights,
    share_holds,
    site_flexibility,
    total,
)
from vpp.offers import (
    Invitation,
    Offer,
    Programme,
    SiteCost,
    Step,
    bid_curve,
    check_quantity,
    checked,
    holdable,
    propose,
    shift_cost,
)

__all__ = [
    "ArrivalModel", "Band", "ExpectedArrival", "Flexibility", "Invitation", "Offer",
    "PastSession", "Programme", "SiteCost", "SiteDelivery", "Step", "TrackingPoint",
    "bid_curve", "check_quantity", "checked", "engine_check", "expected", "holdable",
    "learn", "propose", "resplit", "scenario_weights", "share_holds", "shift_cost",
    "short_sites", "site_flexibility", "split", "total", "tracking_error",
]
