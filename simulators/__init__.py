"""Simulated OCPP 2.0.1 and 2.1 charging stations and EVs (bidirectional ones too: V2X on
2.1): an independent peer of the CSMS.

    from simulators.clock import AcceleratedClock
    from simulators.ev import EV
    from simulators.station import EvseSpec, Station, StationSpec

    st = Station(StationSpec("CS001", password="longpassword-0123456789",
                             evses=[EvseSpec(1, kind="AC", phases=3, max_current_a=32.0)]),
                 url="ws://127.0.0.1:9000/ocpp", clock=AcceleratedClock(start, 60))
    await st.start()
    await st.plug_in(1, EV(battery_kwh=60, soc=0.2, energy_wanted_wh=20_000))
    await st.present_token(1, "TOKEN1")

Fleets of stations run from TOML scenarios with `csms-sim run` (see `simulators.cli`).
Nothing here imports `csms` or `smart_charging`.
"""
