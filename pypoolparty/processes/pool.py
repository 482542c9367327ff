"""
``pypoolparty.processes.Pool``: the cluster pools' engine on this machine's
cores, with the store and resume.

Unlike :class:`pypoolparty.local.Pool` (the stdlib's pool, whose children
die with the driver), its workers are detached processes that the core
drives as it drives cluster jobs: a pool with ``cache_dir`` leaves them to
finish when the driver is killed, and the same call run again adopts them.
"""
from __future__ import annotations

import typing

from ..core.commands import RetryPolicy
from ..core.parameters import document
from ..core.pool import DEFAULT_IDLE_TIMEOUT, ClusterPool
from .adapter import ProcessScheduler

__all__ = ["Pool"]

#: Seconds between two looks at the workers' processes. A look reads one
#: small ``/proc`` file per worker, so it costs nothing worth saving; the
#: interval bounds how soon a worker that died is noticed (two looks
#: confirm it) and how long ``join()`` waits after the last worker left,
#: while a driver that waits for long jobs wakes twice a second, not more.
POLLING_INTERVAL = 0.5


@document(status="/proc", nodes="workers", timeout_keyword="60 s")
class Pool(ClusterPool):
    """A ``multiprocessing.Pool`` whose workers are detached processes here.

    ``pool.map(func, jobs)`` pickles ``func`` and the jobs (cloudpickle)
    into a work dir, starts worker processes (each in a session of its
    own) that claim chunks of jobs until none is left, and returns the
    results in order, exactly as ``multiprocessing.Pool().map(func, jobs)``
    would. The workers serve the pool's later maps too. Nothing but the
    processes themselves is needed: no scheduler, no daemon.

    Parameters
    ----------
    processes : int or None
        At most this many workers run at once. None: the CPUs this process
        may use (its affinity), or ``num_chunks`` if given.
    ${common}

    Notes
    -----
    A worker's id is ``<host>-<pid>-<start>`` (see
    :mod:`pypoolparty.processes.detached`); the pool's log names each.
    ``terminate()`` ends them with SIGTERM to their process groups, SIGKILL
    after a few seconds. ``job_name`` and ``retry_policy`` are taken so that
    one call fits every pool; here no listing shows a job name and no
    command runs that could be retried.
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
        python_path: typing.Optional[str] = None,
        polling_interval: float = POLLING_INTERVAL,
        max_num_resubmissions: int = 3,
        keep_work_dir: bool = False,
        verbose: bool = False,
        progress: typing.Optional[bool] = None,
        job_name: str = "pypoolparty",
        num_chunks: typing.Optional[int] = None,
        retry_policy: typing.Optional[RetryPolicy] = None,
    ):
        super().__init__(
            processes,
            initializer,
            initargs,
            maxtasksperchild,
            scheduler=ProcessScheduler(policy=retry_policy or RetryPolicy()),
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
