"""
``pypoolparty.slurm.Pool``: ``multiprocessing.Pool`` on single SLURM jobs,
for sites that disable or shrink job arrays.
"""
from .adapter import SlurmJobScheduler
from .base import SlurmPool

__all__ = ["Pool"]


class Pool(SlurmPool):
    __doc__ = (SlurmPool.__doc__ or "").replace(
        "whose workers are SLURM jobs.",
        "whose workers are single SLURM jobs (no arrays).\n\n    One ``sbatch`` per worker; "
        "with ``processes`` at least the number of chunks, one per chunk.",
        1,
    )
    scheduler_class = SlurmJobScheduler
