"""Numerical core: functions of arrays and scalars only (no I/O, no printing)."""
