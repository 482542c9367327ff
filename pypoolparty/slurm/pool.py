"""
The SLURM pools: ``pypoolparty.slurm.array.Pool`` runs workers as tasks of
job arrays, ``pypoolparty.slurm.Pool`` as single jobs. Both are the core's
pool with a SLURM adapter and SLURM's keyword arguments.
"""
from __future__ import annotations

import typing

from ..core.commands import RetryPolicy
from ..core.parameters import document
from ..core.pool import DEFAULT_IDLE_TIMEOUT, ClusterPool
from .adapter import SlurmArrayScheduler, SlurmCommands, SlurmJobScheduler, SlurmScheduler


class SlurmPool(ClusterPool):
    """What both SLURM pools share: their keywords and how they become an adapter."""

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
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        cache_dir: typing.Optional[str] = None,
        sbatch_options: typing.Optional[typing.Mapping[str, typing.Any]] = None,
        python_path: typing.Optional[str] = None,
        polling_interval: float = 5.0,
        max_num_resubmissions: int = 3,
        keep_work_dir: bool = False,
        verbose: bool = False,
        progress: typing.Optional[bool] = None,
        slurm_call_timeout: float = 60.0,
        sbatch_path: str = "sbatch",
        squeue_path: str = "squeue",
        scancel_path: str = "scancel",
        scontrol_path: str = "scontrol",
        sinfo_path: str = "sinfo",
        sacct_path: str = "sacct",
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
        commands = SlurmCommands(
            sbatch=sbatch_path,
            squeue=squeue_path,
            scancel=scancel_path,
            scontrol=scontrol_path,
            sinfo=sinfo_path,
            sacct=sacct_path,
        )
        scheduler = self.scheduler_class(
            sbatch_options=sbatch_options,
            commands=commands,
            policy=retry_policy or RetryPolicy(timeout=float(slurm_call_timeout)),
        )
        super().__init__(
            processes,
            initializer,
            initargs,
            maxtasksperchild,
            scheduler=scheduler,
            work_dir=work_dir,
            idle_timeout=idle_timeout,
            cache_dir=cache_dir,
            python_path=python_path,
            polling_interval=polling_interval,
            max_num_resubmissions=max_num_resubmissions,
            keep_work_dir=keep_work_dir,
            verbose=verbose,
            progress=progress,
            name=job_name,
            num_chunks=num_chunks,
        )


_SLURM_WORDS = dict(status="squeue", nodes="compute nodes", timeout_keyword="slurm_call_timeout")


@document(**_SLURM_WORDS)
class ArrayPool(SlurmPool):
    """A ``multiprocessing.Pool`` whose workers are SLURM array tasks.

    ``pool.map(func, jobs)`` pickles ``func`` and the jobs (cloudpickle)
    into a work dir on the shared filesystem, submits job arrays whose
    tasks claim chunks of jobs until none is left, and returns the results
    in order, exactly as ``multiprocessing.Pool().map(func, jobs)`` would.
    The tasks serve the pool's later maps too: a submission is made only
    when the maps need more workers than are alive, so a loop of maps
    submits once while its workers live. One ``sbatch --array`` per
    submission (per MaxArraySize workers), never more than ``processes``
    tasks alive over all of them.

    Parameters
    ----------
    processes : int or None
        At most this many workers of the pool run at once. None: the CPUs
        of the partition (from ``sinfo``), or ``num_chunks`` if given.
    ${common}
    sbatch_options : dict or None
        sbatch options passed straight through, e.g.
        ``{"time": "00:10:00", "mem": "2G", "partition": "debug",
        "cpus-per-task": 4, "exclusive": True}``. ``True`` gives a flag,
        ``False``/``None`` leave the option out. ``array``, ``wrap``,
        ``parsable``, ``output`` and ``error`` are the pool's own.
    slurm_call_timeout : float
        Seconds one sbatch/squeue/scancel call may take before it counts as
        a transient failure and is retried.
    sbatch_path, squeue_path, scancel_path, scontrol_path, sinfo_path, sacct_path : str
        The SLURM commands (``sacct`` is used, where accounting exists, to
        tell why a worker ended).
    num_simultaneously_running_tasks : int or None
        The name of ``processes`` in pypoolparty 0.3's array pool.
    """

    scheduler_class = SlurmArrayScheduler


@document(**_SLURM_WORDS)
class Pool(SlurmPool):
    """A ``multiprocessing.Pool`` whose workers are single SLURM jobs.

    For sites that disable or shrink job arrays: one ``sbatch`` per worker;
    with ``processes`` at least the number of chunks, one per chunk.
    Otherwise as :class:`pypoolparty.slurm.array.Pool`.

    Parameters
    ----------
    processes : int or None
        At most this many workers (jobs) of the pool run at once. None: the
        CPUs of the partition (from ``sinfo``), or ``num_chunks`` if given.
    ${common}
    sbatch_options : dict or None
        As for :class:`pypoolparty.slurm.array.Pool`.
    slurm_call_timeout : float
        Seconds one sbatch/squeue/scancel call may take before it counts as
        a transient failure and is retried.
    sbatch_path, squeue_path, scancel_path, scontrol_path, sinfo_path, sacct_path : str
        The SLURM commands.
    num_simultaneously_running_tasks : int or None
        Another name of ``processes`` (pypoolparty 0.3).
    """

    scheduler_class = SlurmJobScheduler
