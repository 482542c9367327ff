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

Futures among a call's arguments are waited for (:mod:`.future_args`): the
call goes to the pool once they are done, with their results in their
place. ``map(..., chunksize=n)`` runs n calls as one job
(:mod:`.chunked_map`). ``submit(..., resource_dict=...)`` runs the call on
the pool of its resources, one pool per set (:mod:`.resource_pools`); with
``cores`` > 1 on that many MPI ranks. At interpreter exit the calls
submitted run to their end, as the stdlib's executors do.
"""
from __future__ import annotations

import atexit
import concurrent.futures
import functools
import inspect
import threading
import typing
import weakref

from . import applies, chunked_map, future_args
from .future_args import Dependents
from .pool import ClusterPool
from .resource_pools import ResourcePools


_live_executors: "weakref.WeakSet[ClusterExecutor]" = weakref.WeakSet()


@atexit.register
def _finish_live_executors() -> None:
    """At interpreter exit, as the stdlib's executors do: the calls
    submitted (also before ``shutdown(wait=False)``) run to their end.
    Registered after the pools' exit hook, so it runs before it."""
    for executor in list(_live_executors):
        executor.shutdown(wait=True)


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
        # Reentrant: submit holds it when a dependency that is already done
        # hands the call to the pool in the same thread.
        self._lock = threading.RLock()
        self._shutdown = False
        self._pending: "set[concurrent.futures.Future]" = set()
        self._unfinished: "set[concurrent.futures.Future]" = set()  # handed to the pool
        self._dependents = Dependents()
        _live_executors.add(self)

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

        Futures among the arguments (also in lists, tuples, sets and dict
        values) are waited for without blocking, and replaced by their
        results; see :mod:`pypoolparty.core.future_args`.

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
            return self._dependents.submit(args, kwargs, functools.partial(self._hand_off, fn, pool))

    def _hand_off(
        self,
        fn: typing.Callable,
        pool: ClusterPool,
        args: tuple,
        kwargs: dict,
        future: typing.Optional[concurrent.futures.Future],
    ) -> concurrent.futures.Future:
        """Give the call to ``pool``; ``future`` (a new one if None) is
        pending until the pool hands the call to a map."""
        if future is None:
            future = concurrent.futures.Future()
        with self._lock:
            self._pending.add(future)
            self._unfinished.add(future)
        future.add_done_callback(self._finished)

        def starting() -> bool:
            with self._lock:
                self._pending.discard(future)
            return future_args.start(future)

        def failed(exc: BaseException) -> None:
            with self._lock:
                self._pending.discard(future)  # e.g. it could not be pickled
            if not future.cancelled():
                future.set_exception(exc)

        result = applies.ApplyResult(future.set_result, failed, starting=starting)
        pool._apply_async(fn, args, kwargs, result)
        return future

    def _finished(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            self._unfinished.discard(future)

    def map(self, fn: typing.Callable, *iterables, timeout: typing.Optional[float] = None, chunksize: int = 1):
        """``map(fn, *iterables)`` on the cluster, results in order, lazily.

        ``chunksize`` calls run as one job, on one worker, as in the
        stdlib's ``ProcessPoolExecutor`` (see :mod:`.chunked_map`).
        """
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        results = super().map(
            functools.partial(chunked_map.run_chunk, fn),
            chunked_map.chunks(iterables, chunksize),
            timeout=timeout,
        )
        return chunked_map.flattened(results)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new calls; ``cancel_futures`` cancels those not yet running;
        ``wait`` waits for the others and for the workers to leave.

        Calls still waiting for futures among their arguments run (unless
        cancelled): the pool is closed once none waits any more.
        """
        with self._lock:
            self._shutdown = True
        if cancel_futures:
            self._dependents.cancel_all()
        with self._lock:
            pending, self._pending = list(self._pending), set()
        if cancel_futures:
            for future in pending:
                future.cancel()
        pools = self._pools.all()

        def close() -> None:
            for pool in pools:
                pool.close()

        if wait:
            self._dependents.wait_idle()
            with self._lock:
                unfinished = list(self._unfinished)
            concurrent.futures.wait(unfinished)
            close()
            for pool in pools:
                pool.join()
        else:
            self._dependents.when_idle(close)


def executor_class(pool_class: type, where: str) -> type:
    """An Executor class over ``pool_class``: ``Executor(max_workers=None,
    **options)`` takes the pool's keywords after ``max_workers``."""

    class Executor(ClusterExecutor):
        __doc__ = """A ``concurrent.futures.Executor`` {:s}.

        Parameters
        ----------
        max_workers : int or None
            At most this many workers at once (the pool's ``processes``),
            for each set of per-call resources (``resource_dict``).
        **options
            Keywords of :class:`{:s}.{:s}` (``work_dir``, ``cache_dir``,
            the scheduler's options, ...).
        """.format(where, pool_class.__module__, pool_class.__qualname__)

        def __init__(self, max_workers: typing.Optional[int] = None, **options):
            super().__init__(pool_class(max_workers, **options))

    Executor.__init__.__signature__ = _signature_over(pool_class)
    Executor.__module__ = pool_class.__module__.rsplit(".", 1)[0]
    Executor.__qualname__ = "Executor"
    return Executor


def _signature_over(pool_class: type) -> inspect.Signature:
    """``(self, max_workers=None, *, <the pool's other parameters>)``: what
    ``Executor.__init__`` takes, for ``help()`` and for ``pypoolparty.Executor()``,
    which keeps only the options the chosen executor takes."""
    self, processes, *others = inspect.signature(pool_class.__init__).parameters.values()
    keyword = inspect.Parameter.KEYWORD_ONLY
    rest = [
        p if p.kind in (keyword, p.VAR_KEYWORD) else p.replace(kind=keyword)
        for p in others
        if p.kind != p.VAR_POSITIONAL
    ]
    max_workers = processes.replace(name="max_workers", annotation=typing.Optional[int], default=None)
    return inspect.Signature([self, max_workers] + rest)
