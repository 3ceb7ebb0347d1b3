"""Smart charging in the CSMS: which process plans which site, and how a site is planned.

- `scheduler`: the sites this process owns (leases), their tasks, the events that wake them
- `leases`: one PostgreSQL advisory lock per site, so one process plans it at a time
- `site`: one site's planning (I/O around the engine), given a gateway, not its owner
- `gateway`: what a site's planner needs from the stations (send profiles, capabilities)
- `demand`, `limits`, `reserved_load`: the decisions, pure (no I/O, time passed in)
- `grid_inputs`: what the grid side set on a site (limits, events, tariff), merged in

Imports run one way: scheduler -> site -> gateway, leases, the pure modules; nothing here
imports csms.api. Why it works this way: docs/decisions/0008-scheduler.md.
"""
