"""
Pools on Grid Engine (Sun, Son of, Univa) clusters.

``pypoolparty.sun_grid_engine.Pool`` runs workers as tasks of job arrays.
"""
from .pool import Pool

__all__ = ["Pool"]
