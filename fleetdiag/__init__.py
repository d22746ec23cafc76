"""fleetdiag: find where TCP packets vanish across a fleet of Linux servers."""

__version__ = "0.1.0"
