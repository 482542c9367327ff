"""
Pools on SLURM clusters.

``pypoolparty.slurm.array.Pool`` runs workers as tasks of job arrays.
"""
from . import array
