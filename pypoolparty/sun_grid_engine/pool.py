"""
``pypoolparty.sun_grid_engine.Pool``: ``multiprocessing.Pool`` on Grid Engine
job arrays.
"""
from __future__ import annotations

import typing

from ..core.commands import RetryPolicy
from ..core.parameters import document
from ..core.pool import DEFAULT_IDLE_TIMEOUT, ClusterPool
from .adapter import SgeArrayScheduler, SgeCommands

__all__ = ["Pool"]


@document(status="qstat", nodes="execution hosts", timeout_keyword="sge_call_timeout")
class Pool(ClusterPool):
    """A ``multiprocessing.Pool`` whose workers are Grid Engine array tasks.

    ``pool.map(func, jobs)`` pickles ``func`` and the jobs (cloudpickle)
    into a work dir on the shared filesystem, submits job arrays (``qsub
    -t``) whose tasks claim chunks of jobs until none is left, and returns
    the results in order, exactly as ``multiprocessing.Pool().map`` would.

    Parameters
    ----------
    processes : int or None
        At most this many array tasks of the pool run at once (also passed
        as ``qsub -tc``). None: the slots of the queue (``qstat -g c``), or
        ``num_chunks`` if that is given.
    ${common}
    qsub_options : dict or None
        qsub options passed straight through, e.g. ``{"l": "h_vmem=2G",
        "q": "all.q", "pe": "smp 4"}``; values are split like a shell
        would, a list repeats the option, ``True`` gives a flag. ``t``,
        ``tc``, ``terse``, ``o``, ``e``, ``j``, ``S`` and ``b`` are the pool's.
    sge_call_timeout : float
        Seconds one qsub/qstat/qdel call may take before it counts as a
        transient failure.
    qsub_path, qstat_path, qdel_path, qconf_path, qacct_path : str
        The Grid Engine commands.
    queue_name : str or None
        pypoolparty 0.3's way to say ``qsub_options={"q": queue_name}``.
    error_state_indicator : str
        The letter of qstat's error states (pypoolparty 0.3).
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
        qsub_options: typing.Optional[typing.Mapping[str, typing.Any]] = None,
        python_path: typing.Optional[str] = None,
        polling_interval: float = 5.0,
        max_num_resubmissions: int = 3,
        keep_work_dir: bool = False,
        verbose: bool = False,
        progress: typing.Optional[bool] = None,
        sge_call_timeout: float = 60.0,
        qsub_path: str = "qsub",
        qstat_path: str = "qstat",
        qdel_path: str = "qdel",
        qconf_path: str = "qconf",
        qacct_path: str = "qacct",
        queue_name: typing.Optional[str] = None,
        num_chunks: typing.Optional[int] = None,
        error_state_indicator: str = "E",
        job_name: str = "pypoolparty",
        retry_policy: typing.Optional[RetryPolicy] = None,
    ):
        options = dict(qsub_options or {})
        if queue_name is not None:
            options.setdefault("q", queue_name)
        scheduler = SgeArrayScheduler(
            qsub_options=options,
            commands=SgeCommands(
                qsub=qsub_path,
                qstat=qstat_path,
                qdel=qdel_path,
                qconf=qconf_path,
                qacct=qacct_path,
            ),
            policy=retry_policy or RetryPolicy(timeout=float(sge_call_timeout)),
            error_state_indicator=error_state_indicator,
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
