"""
Pools on SLURM clusters.

``pypoolparty.slurm.array.Pool`` runs workers as tasks of job arrays;
``pypoolparty.slurm.Pool`` runs them as single jobs, for sites without
arrays; ``pypoolparty.slurm.allocation.Pool`` runs them as ``srun`` job
steps of the allocation the driver runs in.
"""
from ..core.executor import executor_class
from . import allocation, array
from .pool import Pool

#: ``concurrent.futures.Executor`` whose calls run as tasks of job arrays.
Executor = executor_class(array.Pool, "whose calls run as tasks of SLURM job arrays")

__all__ = ["Pool", "Executor", "allocation", "array"]
