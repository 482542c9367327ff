"""
What both SLURM pools share: their keyword arguments and how they become an
adapter. ``pypoolparty.slurm.array.Pool`` runs workers as array tasks,
``pypoolparty.slurm.Pool`` as single jobs.
"""
from __future__ import annotations

import typing

from ..core.commands import RetryPolicy
from ..core.pool import ClusterPool
from .adapter import SlurmArrayScheduler, SlurmCommands, SlurmJobScheduler, SlurmScheduler


class SlurmPool(ClusterPool):
    """A ``multiprocessing.Pool`` whose workers are SLURM jobs.

    ``pool.map(func, jobs)`` pickles ``func`` and the jobs (cloudpickle)
    into a work dir on the shared filesystem, submits workers that claim
    chunks of jobs until none is left, and returns the results in order,
    exactly as ``multiprocessing.Pool().map(func, jobs)`` would.

    Parameters
    ----------
    processes : int or None
        At most this many workers of the pool run at once.
        None: the CPUs of the partition (from ``sinfo``), or ``num_chunks``
        if that is given.
    initializer : callable or None
        Called as ``initializer(*initargs)`` once in each array task.
    initargs : tuple
        Arguments of ``initializer``.
    maxtasksperchild : int or None
        Accepted for compatibility with ``multiprocessing.Pool``.
    work_dir : str or None
        A directory on a filesystem the compute nodes share. Each map
        makes a private folder (mode 0700) in it, removed after success
        unless ``keep_work_dir``, kept on failure. None: a new folder under
        ``$PYPOOLPARTY_WORK_DIR`` or the current directory.
    sbatch_options : dict or None
        sbatch options passed straight through, e.g.
        ``{"time": "00:10:00", "mem": "2G", "partition": "debug",
        "cpus-per-task": 4, "exclusive": True}``. ``True`` gives a flag,
        ``False``/``None`` leave the option out. ``array``, ``wrap``,
        ``parsable``, ``output`` and ``error`` are the pool's own.
    python_path : str or None
        The Python interpreter on the compute nodes (default: this one).
    polling_interval : float
        Seconds between two ``squeue`` calls (one per pool, whatever the
        number of maps and jobs). Result files are looked at far more often.
    max_num_resubmissions : int
        How often the jobs of a worker that died without a result are
        resubmitted before the map raises
        :class:`~pypoolparty.errors.JobsLostError`.
    keep_work_dir : bool
        Keep each map's folder after success too.
    verbose : bool
        Also print the log's events to stderr.
    slurm_call_timeout : float
        Seconds one sbatch/squeue/scancel call may take before it counts as
        a transient failure and is retried.
    sbatch_path, squeue_path, scancel_path, scontrol_path, sinfo_path : str
        The SLURM commands.
    job_name : str
        The job name in ``squeue``.
    num_simultaneously_running_tasks : int or None
        The name of ``processes`` in pypoolparty 0.3's array pool.
    num_chunks : int or None
        Cut the jobs into this many chunks (pypoolparty 0.3's per-chunk
        pools), unless ``chunksize`` is given.
    retry_policy : RetryPolicy or None
        Back-off and deadline for transient scheduler failures; its
        ``timeout`` defaults to ``slurm_call_timeout``.
    """

    #: The adapter class; each SLURM pool sets its own.
    scheduler_class: typing.Type[SlurmScheduler] = SlurmScheduler

    def __init__(
        self,
        processes: typing.Optional[int] = None,
        initializer: typing.Optional[typing.Callable] = None,
        initargs: typing.Iterable = (),
        maxtasksperchild: typing.Optional[int] = None,
        *,
        work_dir: typing.Optional[str] = None,
        sbatch_options: typing.Optional[typing.Mapping[str, typing.Any]] = None,
        python_path: typing.Optional[str] = None,
        polling_interval: float = 5.0,
        max_num_resubmissions: int = 3,
        keep_work_dir: bool = False,
        verbose: bool = False,
        slurm_call_timeout: float = 60.0,
        sbatch_path: str = "sbatch",
        squeue_path: str = "squeue",
        scancel_path: str = "scancel",
        scontrol_path: str = "scontrol",
        sinfo_path: str = "sinfo",
        job_name: str = "pypoolparty",
        num_simultaneously_running_tasks: typing.Optional[int] = None,
        num_chunks: typing.Optional[int] = None,
        retry_policy: typing.Optional[RetryPolicy] = None,
    ):
        if num_simultaneously_running_tasks is not None:
            if processes is not None and processes != num_simultaneously_running_tasks:
                raise ValueError(
                    "processes and num_simultaneously_running_tasks are the "
                    "same setting; give one of them"
                )
            processes = num_simultaneously_running_tasks
        if retry_policy is None:
            retry_policy = RetryPolicy(timeout=float(slurm_call_timeout))
        scheduler = self.scheduler_class(
            sbatch_options=sbatch_options,
            commands=SlurmCommands(
                sbatch=sbatch_path,
                squeue=squeue_path,
                scancel=scancel_path,
                scontrol=scontrol_path,
                sinfo=sinfo_path,
            ),
            policy=retry_policy,
        )
        super().__init__(
            processes,
            initializer,
            initargs,
            maxtasksperchild,
            scheduler=scheduler,
            work_dir=work_dir,
            python_path=python_path,
            polling_interval=polling_interval,
            max_num_resubmissions=max_num_resubmissions,
            keep_work_dir=keep_work_dir,
            verbose=verbose,
            name=job_name,
            num_chunks=num_chunks,
        )


class Pool(SlurmPool):
    scheduler_class = SlurmJobScheduler


class ArrayPool(SlurmPool):
    scheduler_class = SlurmArrayScheduler
