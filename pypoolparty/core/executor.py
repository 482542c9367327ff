"""
``concurrent.futures.Executor`` on a pool's core.

``submit(fn, *args, **kwargs)`` is the pool's ``apply_async``: calls
submitted close together run as one map (at most one submission), each
with its own :class:`concurrent.futures.Future`. A future is pending until
its call is handed to a map (a fraction of a second), and may be cancelled
until then; it runs from then on. The job's own exception is set on its
future, the remote traceback as its ``__cause__``; a call whose workers
kept dying gets :class:`~pypoolparty.errors.JobsLostError`, a
:class:`concurrent.futures.BrokenExecutor`.
"""
from __future__ import annotations

import concurrent.futures
import threading
import typing

from . import applies
from .pool import ClusterPool
from .resource_pools import ResourcePools


class ClusterExecutor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` whose calls run on a pool's workers.

    Parameters
    ----------
    pool : ClusterPool
        The pool it runs on; the executor owns it (``shutdown`` closes it).
    """

    def __init__(self, pool: ClusterPool):
        self._pool = pool
        self._pools = ResourcePools(pool)
        self._lock = threading.Lock()
        self._shutdown = False
        self._pending: "set[concurrent.futures.Future]" = set()

    @property
    def _max_workers(self) -> int:
        return self._pool._processes

    def submit(
        self,
        fn: typing.Callable,
        /,
        *args,
        resource_dict: typing.Optional[typing.Mapping[str, typing.Any]] = None,
        **kwargs,
    ) -> concurrent.futures.Future:
        """Run ``fn(*args, **kwargs)`` on the cluster; its Future at once.

        Parameters
        ----------
        fn : callable
            What to run.
        *args, **kwargs
            Its arguments.
        resource_dict : dict or None
            What this call needs (executorlib's keys ``cores``,
            ``threads_per_core``, ``gpus_per_core``, ``cwd``,
            ``openmpi_oversubscribe``, ``slurm_cmd_args``, and the
            scheduler's submit options by name, see
            :mod:`pypoolparty.core.resources`). Calls with equal resources
            share workers. With ``cores`` > 1 the call runs on that many
            MPI ranks and its result is the list of theirs.

        Raises
        ------
        ValueError
            For a ``resource_dict`` the scheduler cannot give, before
            anything is submitted.
        RuntimeError
            After ``shutdown``.
        """
        resources = self._pools.parse(resource_dict)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            pool = self._pools.pool_for(resources)
            future: concurrent.futures.Future = concurrent.futures.Future()
            self._pending.add(future)

        def starting() -> bool:
            with self._lock:
                self._pending.discard(future)
            return future.set_running_or_notify_cancel()

        def failed(exc: BaseException) -> None:
            if not future.cancelled():
                future.set_exception(exc)

        result = applies.ApplyResult(future.set_result, failed, starting=starting)
        pool._apply_async(fn, args, kwargs, result)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new calls; ``cancel_futures`` cancels those not yet running;
        ``wait`` waits for the others and for the workers to leave."""
        with self._lock:
            self._shutdown = True
            pending, self._pending = list(self._pending), set()
        if cancel_futures:
            for future in pending:
                future.cancel()
        pools = self._pools.all()
        for pool in pools:
            pool.close()
        if wait:
            for pool in pools:
                pool.join()


def executor_class(pool_class: type, where: str) -> type:
    """An Executor class over ``pool_class``: ``Executor(max_workers=None,
    **options)`` takes the pool's keywords after ``max_workers``."""

    class Executor(ClusterExecutor):
        __doc__ = """A ``concurrent.futures.Executor`` {:s}.

        Parameters
        ----------
        max_workers : int or None
            At most this many workers at once (the pool's ``processes``).
        **options
            Keywords of :class:`{:s}.{:s}` (``work_dir``, ``cache_dir``,
            the scheduler's options, ...).
        """.format(where, pool_class.__module__, pool_class.__qualname__)

        def __init__(self, max_workers: typing.Optional[int] = None, **options):
            super().__init__(pool_class(max_workers, **options))

    Executor.__module__ = pool_class.__module__.rsplit(".", 1)[0]
    Executor.__qualname__ = "Executor"
    return Executor
