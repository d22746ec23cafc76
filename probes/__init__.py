"""Probe scripts deployed to hosts; installed as the package data ``fleetdiag.probes``."""
