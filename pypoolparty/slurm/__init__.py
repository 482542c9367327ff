"""
Pools on SLURM clusters.

``pypoolparty.slurm.array.Pool`` runs workers as tasks of job arrays;
``pypoolparty.slurm.Pool`` runs them as single jobs, for sites without
arrays.
"""
from . import array
from .pool import Pool

__all__ = ["Pool", "array"]
