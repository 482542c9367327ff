"""
``pypoolparty.slurm.array.Pool``: ``multiprocessing.Pool`` on SLURM job arrays.
"""
from .pool import ArrayPool as Pool

__all__ = ["Pool"]
