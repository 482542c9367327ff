"""
``pypoolparty.slurm.array.Pool``: ``multiprocessing.Pool`` on SLURM job arrays.
"""
from .adapter import SlurmArrayScheduler
from .base import SlurmPool

__all__ = ["Pool"]


class Pool(SlurmPool):
    __doc__ = (SlurmPool.__doc__ or "").replace(
        "whose workers are SLURM jobs.",
        "whose workers are SLURM array tasks.\n\n    One ``sbatch --array`` per map (per MaxArraySize workers); "
        "``processes`` is also passed as the array's throttle (``%N``).",
        1,
    )
    scheduler_class = SlurmArrayScheduler
