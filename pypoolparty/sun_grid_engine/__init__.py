"""
Pools on Grid Engine (Sun, Son of, Univa) clusters.

``pypoolparty.sun_grid_engine.Pool`` runs workers as tasks of job arrays.
"""
from ..core.executor import executor_class
from .pool import Pool

#: ``concurrent.futures.Executor`` whose calls run as Grid Engine array tasks.
Executor = executor_class(Pool, "whose calls run as tasks of Grid Engine job arrays")

__all__ = ["Pool", "Executor"]
