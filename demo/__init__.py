"""`csms demo`: the CSMS, its HTTP API and scheduler, and a simulated residential community
in one process on one accelerated clock.

This package is the composition root: the only code that imports both `csms` and
`simulators`. The simulated stations still reach the CSMS only over real WebSockets; the
two share the process and the clock, never code (docs/decisions/0011-demo-composition-root.md).
"""
