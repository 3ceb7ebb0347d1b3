"""Counters and histograms, in the Prometheus client's registry (exported by the HTTP API)."""

from prometheus_client import Counter, Gauge, Histogram

messages = Counter("csms_messages_total", "OCPP CALLs received, by action", ["action"])
errors = Counter("csms_errors_total", "CALLERRORs sent or bad frames seen, by code", ["code"])
calls = Counter("csms_calls_total", "CSMS-initiated CALLs, by action and outcome",
                ["action", "outcome"])
call_latency = Histogram("csms_call_latency_seconds", "CSMS-initiated CALL round trip",
                         ["action"])
handle_latency = Histogram("csms_handle_seconds", "Time to answer a station's CALL", ["action"])
connected = Gauge("csms_connected_stations", "Stations connected now")
refused = Counter("csms_handshakes_refused_total", "Refused WebSocket handshakes, by reason",
                  ["reason"])
auth_failures = Counter("csms_auth_failures_total", "Failed station logins, by reason "
                        "(unknown_station, no_credentials, wrong_password, throttled)",
                        ["reason"])
over_capacity = Counter("csms_handshakes_over_capacity_total", "Handshakes answered 503: "
                        "too many connections or handshakes at once", ["limit"])
plans = Counter("csms_plans_total", "Scheduler plans, by site and outcome (solved, fallback, "
                "error)", ["site", "outcome"])
plan_seconds = Histogram("csms_plan_seconds", "Time to plan a site (engine, in a thread)",
                         ["site"])
profiles = Counter("csms_profiles_total", "Charging profiles the scheduler sent, by purpose "
                   "and outcome", ["purpose", "outcome"])
scheduler_leases = Counter("csms_scheduler_leases_total", "Sites this process took (taken), "
                           "gave back to a process under its share (released) or lost (lost: "
                           "its lease connection went) to plan", ["site", "event"])
scheduler_sites_owned = Gauge("csms_scheduler_sites_owned", "Sites this process plans now "
                              "(holds the lease of)")
non_compliance = Counter("csms_non_compliance_total", "Meter samples of an EVSE drawing "
                         "clearly more than its charging profile allows", ["site"])
gc_pause = Histogram("csms_gc_pause_seconds", "Pauses of the cyclic garbage collector, by "
                     "generation", ["generation"],
                     buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
gc_heap_blocks = Gauge("csms_gc_heap_blocks", "Memory blocks Python's allocator holds (live "
                       "objects, and garbage not collected yet)")
gc_full = Counter("csms_gc_full_collections_total", "Full passes of the collection policy "
                  "(csms/collector.py)")
grid_events_active = Gauge("csms_grid_events_active", "Grid events (limits, targets) in "
                           "force now, over all sites (counted when scraped)")
site_ev_load = Gauge("csms_site_ev_load_kw", "A site's EV load as metered: the sum of each "
                     "EVSE's last power sample", ["site"])
site_limit = Gauge("csms_site_limit_kw", "A site's root limit in the current slot, with grid "
                   "events and overrides", ["site"])
site_household = Gauge("csms_site_household_kw", "A site's non-EV load in the current slot "
                       "(configured or forecast)", ["site"])
loop_lag = Histogram("csms_event_loop_lag_seconds", "How late a 100 ms timer fires: how long "
                     "the event loop (every station) was held up",
                     buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
contracts_refused = Counter("csms_contract_certificates_refused_total", "Authorize requests "
                            "whose contract certificate was not accepted (C07), by "
                            "certificateStatus", ["status"])
api_refused = Counter("csms_api_refused_total", "HTTP API requests refused with a 422 "
                      "(a body, path or query the models bound), by route", ["route"])
discharge_clamped = Counter("csms_discharge_clamped_total", "Planned discharge a station "
                            "could not be sent (OCPP 2.0.1, or not bidirectional): its "
                            "profile was clamped to 0, by site", ["site"])
rejected_inputs = Counter("csms_rejected_inputs_total", "Inputs refused at the edge (emission "
                          "factors, revenue shares, OpenADR events), by input and reason",
                          ["input", "reason"])
openadr_events = Counter("csms_openadr_events_total", "OpenADR events from the VTN, by how the "
                         "VEN answered (optIn, optOut) and why", ["opt", "reason"])
openadr_reports = Counter("csms_openadr_reports_total", "Metered-load reports the VEN built for "
                          "the VTN")
vpp_tracking_error = Gauge("csms_vpp_tracking_error_kw", "A running VPP dispatch's last "
                           "minute: committed minus delivered response (positive: short), "
                           "by portfolio", ["portfolio"])
vpp_tracking_abs_error = Histogram("csms_vpp_tracking_abs_error_kw", "Absolute tracking error "
                                   "of running VPP dispatches, one sample per minute tracked",
                                   ["portfolio"],
                                   buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
vpp_resplits = Counter("csms_vpp_resplits_total", "Dispatches re-split because a site fell "
                       "short of its share, by portfolio", ["portfolio"])
