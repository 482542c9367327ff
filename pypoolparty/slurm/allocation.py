"""
``pypoolparty.slurm.allocation.Pool`` and ``.Executor``: workers as ``srun``
job steps of the allocation the driver already runs in (an ``sbatch``
script, an ``salloc`` shell), with no queue wait at all.
"""
from __future__ import annotations

import typing

from ..core.commands import RetryPolicy
from ..core.executor import executor_class
from ..core.parameters import document
from ..core.pool import DEFAULT_IDLE_TIMEOUT, ClusterPool
from .steps import StepCommands, StepScheduler

__all__ = ["Pool", "Executor"]

#: Seconds between two looks at the workers. A look reads one small
#: ``/proc`` file per srun process; SLURM is asked (one ``scontrol``) only
#: while some worker's step has not been seen running yet.
POLLING_INTERVAL = 1.0


@document(status="scontrol show step", nodes="allocation's nodes", timeout_keyword="slurm_call_timeout")
class Pool(ClusterPool):
    """A ``multiprocessing.Pool`` whose workers are job steps of this allocation.

    Made in a driver that runs inside a SLURM allocation (``sbatch``
    script, ``salloc`` shell: ``SLURM_JOB_ID`` is set). ``pool.map(func,
    jobs)`` pickles ``func`` and the jobs into a work dir, starts each
    worker as one ``srun --exact --ntasks=1`` step of the allocation --
    at once, on CPUs the allocation holds, on any of its nodes -- and
    returns the results in order, as ``multiprocessing.Pool().map(func,
    jobs)`` would. No job is submitted: nothing waits in the queue. When
    every CPU of the allocation is busy, a further step waits for one
    (srun's "step creation temporarily disabled"); the pool counts it as
    pending.

    Parameters
    ----------
    processes : int or None
        At most this many workers (steps) run at once. None: as many steps
        as fit in the allocation's CPUs (``SLURM_JOB_CPUS_PER_NODE``, over
        all its nodes, each step taking ``cpus-per-task`` of them), or
        ``num_chunks`` if given.
    ${common}
    srun_options : dict or None
        srun options passed straight through to every worker's step, e.g.
        ``{"cpus-per-task": 2, "mem-per-cpu": "2G", "time": "0:30:00"}``.
        ``True`` gives a flag, ``False``/``None`` leave the option out.
        ``jobid``, ``ntasks``, ``output``, ``error`` and ``input`` are the
        pool's own.
    slurm_call_timeout : float
        Seconds one scontrol/scancel call may take before it counts as a
        transient failure and is retried.
    srun_path, scontrol_path, scancel_path : str
        The SLURM commands.

    Raises
    ------
    PoolError
        If the driver runs in no allocation (``SLURM_JOB_ID`` is not set).

    Notes
    -----
    A worker's id is its srun process's (see
    :mod:`pypoolparty.processes.detached`): each srun runs in a session of
    its own on the driver's host, so that a Ctrl-C in the terminal reaches
    the driver only, which then cancels the steps (``scancel``) and ends
    their srun processes. Workers end with the allocation at the latest.
    """

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
        srun_options: typing.Optional[typing.Mapping[str, typing.Any]] = None,
        python_path: typing.Optional[str] = None,
        polling_interval: float = POLLING_INTERVAL,
        max_num_resubmissions: int = 3,
        keep_work_dir: bool = False,
        verbose: bool = False,
        progress: typing.Optional[bool] = None,
        slurm_call_timeout: float = 60.0,
        srun_path: str = "srun",
        scontrol_path: str = "scontrol",
        scancel_path: str = "scancel",
        job_name: str = "pypoolparty",
        num_chunks: typing.Optional[int] = None,
        retry_policy: typing.Optional[RetryPolicy] = None,
    ):
        scheduler = StepScheduler(
            srun_options=srun_options,
            commands=StepCommands(srun=srun_path, scontrol=scontrol_path, scancel=scancel_path),
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


#: ``concurrent.futures.Executor`` whose calls run as job steps of this allocation.
Executor = executor_class(Pool, "whose calls run as job steps of the SLURM allocation it runs in")
Executor.__module__ = __name__  # it lives here, not in the package as the others do
