"""
The scheduler-neutral pool: the ``multiprocessing.Pool`` surface on the core.

Each scheduler's ``Pool`` (e.g. :class:`pypoolparty.slurm.array.Pool`) is
this class with an adapter and its own keyword arguments.
"""
from __future__ import annotations

import atexit
import sys
import threading
import typing
import warnings
import weakref

import cloudpickle

from .. import errors
from . import applies, inputs
from .async_result import AsyncResult
from .calling import CallSpec, CallStyle
from .event_log import EventLog
from .launcher import LaunchSettings, Launcher
from .map_run import MapSettings
from .pooldir import STOP, WorkerSettings
from .results import IMapIterator, MapResult
from .scheduler import Scheduler
from .store import Store
from .supervisor import PollIntervals, Supervisor
from .workdir import WorkRoot
from .workers import FleetSettings

#: Seconds an idle worker waits for the pool's next map before it leaves.
DEFAULT_IDLE_TIMEOUT = 60.0

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"

_live_pools: "weakref.WeakSet[ClusterPool]" = weakref.WeakSet()


@atexit.register
def _terminate_live_pools() -> None:
    """At interpreter exit, cancel what running pools still have queued;
    a pool told to leave its workers running (the parallel decorators')
    is left as a killed driver's: its workers finish, the next run adopts them."""
    for pool in list(_live_pools):
        if not pool._leave_running_at_exit:
            pool.terminate()


class ClusterPool:
    """A pool whose workers are jobs of a cluster's scheduler.

    Parameters
    ----------
    processes : int or None
        At most this many workers of the pool run at once, over all its
        maps. None: the scheduler's default (e.g. the CPUs of the partition).
    initializer : callable or None
        Called as ``initializer(*initargs)`` once in each worker.
    initargs : tuple
        Arguments of ``initializer``.
    maxtasksperchild : int or None
        A worker leaves after running this many tasks (chunks, as in the
        stdlib); a new one takes its place if work is left. None: workers
        serve as long as there is work.
    scheduler : Scheduler
        The adapter.
    work_dir : str or None
        Directory on a filesystem the compute nodes share; the pool makes
        its own folder in it (``pypoolparty-<date>-<time>-<random>``).
        None: ``$PYPOOLPARTY_WORK_DIR`` or the current directory.
    idle_timeout : float
        Seconds a worker waits for the pool's next map before it leaves
        the cluster.
    python_path : str or None
        The Python interpreter of the workers (default: this one).
    polling_interval : float
        Seconds between two status queries to the scheduler.
    max_num_resubmissions : int
        How often a job whose worker died is resubmitted before the map
        raises :class:`~pypoolparty.errors.JobsLostError`.
    keep_work_dir : bool
        Keep each map's folder also after success.
    verbose : bool
        Also print a short line for each event of note to stderr.
    progress : bool or None
        Show a progress bar for each map (see :mod:`.progress`). None:
        where a person watches (stderr is a terminal, or a notebook).
    name : str
        Job name in the scheduler's listing.
    num_chunks : int or None
        Cut each map's jobs into this many chunks unless ``chunksize`` is
        given (pypoolparty 0.3's per-chunk pools); also the default of
        ``processes``.
    cwd : str or None
        Directory the jobs run in; None: the driver's current directory
        when the map starts.
    cache_dir : str or None
        A store on the shared filesystem: results of jobs are kept there,
        keyed by the function's code and the job, and a call takes what
        is stored instead of running it again. A driver that dies leaves
        its workers to finish; the same call run again adopts them. See
        :doc:`/store`. None: no store.
    """

    #: Set (with a store) to leave the workers running at interpreter exit.
    _leave_running_at_exit = False

    def __init__(
        self,
        processes: typing.Optional[int] = None,
        initializer: typing.Optional[typing.Callable] = None,
        initargs: typing.Iterable = (),
        maxtasksperchild: typing.Optional[int] = None,
        *,
        scheduler: Scheduler,
        work_dir: typing.Optional[str] = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        python_path: typing.Optional[str] = None,
        polling_interval: float = 5.0,
        max_num_resubmissions: int = 3,
        keep_work_dir: bool = False,
        verbose: bool = False,
        progress: typing.Optional[bool] = None,
        name: str = "pypoolparty",
        num_chunks: typing.Optional[int] = None,
        cache_dir: typing.Optional[str] = None,
        cwd: typing.Optional[str] = None,
    ):
        if processes is not None and processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (
            not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0
        ):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if polling_interval <= 0:
            raise ValueError("polling_interval must be > 0")
        if not idle_timeout > 0:
            raise ValueError("idle_timeout must be > 0")
        if max_num_resubmissions is None:
            max_num_resubmissions = 3
        if max_num_resubmissions < 0:
            raise ValueError("max_num_resubmissions must be >= 0")
        if num_chunks is not None and num_chunks < 1:
            raise ValueError("num_chunks must be at least 1")
        if processes is None and num_chunks is not None:
            processes = num_chunks
        self._state = None
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self.scheduler = scheduler
        self._lock = threading.RLock()
        self._applies = applies.ApplyQueue()
        store = None if cache_dir is None else Store(cache_dir)
        # Scheduler calls made before the pool's log exists go into it later.
        setup_log = EventLog.buffer()
        if processes is None:
            processes = max(1, int(scheduler.default_processes(setup_log)))
        self._processes = processes
        # What a pool of the same settings on another adapter needs (_sibling).
        self._settings = dict(
            initializer=initializer,
            initargs=self._initargs,
            maxtasksperchild=maxtasksperchild,
            work_dir=work_dir,
            idle_timeout=idle_timeout,
            python_path=python_path,
            polling_interval=polling_interval,
            max_num_resubmissions=max_num_resubmissions,
            keep_work_dir=keep_work_dir,
            verbose=verbose,
            progress=progress,
            name=name,
            num_chunks=num_chunks,
            cache_dir=cache_dir,
        )
        flush = weakref.WeakMethod(self._flush_applies)
        self._supervisor = Supervisor(
            PollIntervals(scheduler=float(polling_interval)),
            name,
            before_round=lambda: bool(flush() and flush()()),
            max_num_resubmissions=int(max_num_resubmissions),
        )
        self._launcher = Launcher(
            scheduler,
            self._supervisor,
            WorkRoot(work_dir),
            lambda: inputs.pickle_initializer(self._initializer, self._initargs),
            LaunchSettings(
                processes=processes,
                num_chunks=num_chunks,
                worker=WorkerSettings(
                    idle_timeout=float(idle_timeout),
                    max_tasks=maxtasksperchild,
                    time_limit=scheduler.time_limit(),
                ),
                fleet=FleetSettings(
                    processes=processes,
                    python_argv=[python_path or sys.executable],
                    env=inputs.worker_env(),
                    name=name,
                    outlive_driver=store is not None,
                    cwd=cwd,
                ),
                map=MapSettings(
                    max_num_resubmissions=int(max_num_resubmissions),
                    keep_work_dir=bool(keep_work_dir),
                    progress=None if progress is None else bool(progress),
                ),
                verbose=bool(verbose),
            ),
            setup_log,
            store,
        )
        self._state = RUN
        _live_pools.add(self)

    def _sibling(self, scheduler: Scheduler, cwd: typing.Optional[str] = None) -> "ClusterPool":
        """A pool with this one's settings whose workers ``scheduler``
        starts (e.g. with other resources), running its jobs in ``cwd``."""
        return ClusterPool(self._processes, scheduler=scheduler, cwd=cwd, **self._settings)

    def __repr__(self) -> str:
        return "<{}.{} state={} processes={} scheduler={}>".format(
            self.__class__.__module__,
            self.__class__.__qualname__,
            getattr(self, "_state", None),
            getattr(self, "_processes", None),
            self.scheduler.name,
        )

    # ----------------------------------------------------------- internals
    def _check_running(self) -> None:
        if self._state != RUN:
            raise ValueError("Pool not running")

    @property
    def _pool_dir(self):
        """The pool's folder, once its first map made it (else None)."""
        return self._launcher.pool_dir

    def _start_run(self, spec: CallSpec, jobs: list, chunksize, sink) -> None:
        self._launcher.start(spec, jobs, chunksize, sink)

    def _spec(self, func, style: CallStyle, stop_on_failure: bool) -> CallSpec:
        return CallSpec(funcs=(func,), style=style, stop_on_failure=stop_on_failure)

    def _map_async(self, func, iterable, chunksize, style, callback, error_callback):
        self._check_running()
        jobs = list(iterable)
        if chunksize is not None and chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        result = MapResult(len(jobs), callback, error_callback)
        if not jobs:
            result.completed()
            return result
        try:
            self._start_run(self._spec(func, style, True), jobs, chunksize, result)
        except Exception as exc:
            result.failed(exc)
        return result

    def _imap(self, func, iterable, chunksize, ordered: bool) -> IMapIterator:
        self._check_running()
        if chunksize is not None and chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        jobs, iterable_error = inputs.read_jobs(iterable)
        iterator = IMapIterator(len(jobs), ordered, iterable_error)
        if jobs:
            try:
                self._start_run(self._spec(func, CallStyle.ONE, False), jobs, chunksize, iterator)
            except Exception as exc:
                iterator.failed(exc)
        return iterator

    def _flush_applies(self) -> bool:
        """Run the gathered apply_async calls as one map; True if some wait."""
        # Idle workers that can take every call gathered so far, or as many
        # as the pool may have: a map now costs no submission, so the calls
        # need not wait for more company.
        # (Asked only while calls wait: the supervisor runs this every round.)
        waiting = len(self._applies)
        fleet = self._launcher.fleet_or_none
        available = 0 if not waiting or fleet is None or self._supervisor.runs() else fleet.num_available()
        warm = available > 0 and (waiting <= available or available >= self._processes)
        calls = self._applies.take(
            at_once=self._state != RUN,
            quiet=applies.WARM_QUIET_SECONDS if warm else None,
        )
        if calls is None:
            return True
        calls = [c for c in calls or () if c.result.start()]
        if calls:
            spec, jobs, batch = applies.batch_of(calls)
            try:
                self._start_run(spec, jobs, None, batch)
            except Exception as exc:
                batch.failed(exc)
        return False

    # ---------------------------------------------------------- public API
    def apply(self, func: typing.Callable, args: tuple = (), kwds: typing.Optional[dict] = None):
        """Call ``func(*args, **kwds)`` on the cluster and return its result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: typing.Callable,
        args: tuple = (),
        kwds: typing.Optional[dict] = None,
        callback: typing.Optional[typing.Callable] = None,
        error_callback: typing.Optional[typing.Callable] = None,
    ) -> AsyncResult:
        """Start ``func(*args, **kwds)``; return an AsyncResult at once.

        Calls made in quick succession run together as one map (at most
        one submission), each with its own result.
        """
        return self._apply_async(func, args, kwds, applies.ApplyResult(callback, error_callback))

    def _apply_async(self, func: typing.Callable, args: tuple, kwds: typing.Optional[dict], result) -> AsyncResult:
        """apply_async with a result made by the caller (an executor's, which
        may still be cancelled until its call is handed to a map)."""
        self._check_running()
        kwds = {} if kwds is None else dict(kwds)
        try:
            cloudpickle.dumps((func, args, kwds))
        except Exception as exc:
            result.set_exception(
                errors.NotPicklableError(
                    "pypoolparty: func {!r} or its arguments cannot be pickled "
                    "({:s}: {}). Nothing was submitted.".format(func, type(exc).__name__, exc)
                ),
            )
            return result
        self._applies.add(applies.PendingApply(func, tuple(args), kwds, result))
        self._supervisor.ensure_thread()
        return result

    def map(
        self,
        func: typing.Callable,
        iterable: typing.Iterable,
        chunksize: typing.Optional[int] = None,
    ) -> list:
        """Apply ``func`` to each job of ``iterable``; return the results in order.

        Like :meth:`multiprocessing.pool.Pool.map`. If a job raises, the
        same exception is raised here, its ``__cause__`` holding the remote
        traceback, and the map's other jobs are cancelled.
        """
        return self._map_async(func, iterable, chunksize, CallStyle.ONE, None, None).get()

    def starmap(
        self,
        func: typing.Callable,
        iterable: typing.Iterable[typing.Iterable],
        chunksize: typing.Optional[int] = None,
    ) -> list:
        """Like :meth:`map`, but each job is unpacked: ``func(*job)``."""
        return self._map_async(func, iterable, chunksize, CallStyle.STAR, None, None).get()

    def map_async(
        self,
        func: typing.Callable,
        iterable: typing.Iterable,
        chunksize: typing.Optional[int] = None,
        callback: typing.Optional[typing.Callable] = None,
        error_callback: typing.Optional[typing.Callable] = None,
    ) -> AsyncResult:
        """Start a map and return at once; see :class:`AsyncResult`."""
        return self._map_async(func, iterable, chunksize, CallStyle.ONE, callback, error_callback)

    def starmap_async(
        self,
        func: typing.Callable,
        iterable: typing.Iterable[typing.Iterable],
        chunksize: typing.Optional[int] = None,
        callback: typing.Optional[typing.Callable] = None,
        error_callback: typing.Optional[typing.Callable] = None,
    ) -> AsyncResult:
        """Like :meth:`map_async`, with ``func(*job)``."""
        return self._map_async(func, iterable, chunksize, CallStyle.STAR, callback, error_callback)

    def imap(
        self,
        func: typing.Callable,
        iterable: typing.Iterable,
        chunksize: typing.Optional[int] = None,
    ) -> IMapIterator:
        """Like :meth:`map`, but yield each result, in order, once it is in.

        A job that raises raises at its place in the iteration; the other
        jobs go on. ``chunksize=None`` picks the default of :meth:`map`.
        """
        return self._imap(func, iterable, chunksize, ordered=True)

    def imap_unordered(
        self,
        func: typing.Callable,
        iterable: typing.Iterable,
        chunksize: typing.Optional[int] = None,
    ) -> IMapIterator:
        """Like :meth:`imap`, but yield results in the order they finish."""
        return self._imap(func, iterable, chunksize, ordered=False)

    def close(self) -> None:
        """Accept no more work; what was started goes on.

        Workers leave once the work is done; :meth:`join` waits for that.
        """
        if self._state == RUN:
            self._state = CLOSE
            # The apply_async calls gathered so far start their map first: an
            # idle worker that saw "closed" and no map would leave.
            self._flush_applies()
            self._launcher.close()
            self._supervisor.wake()

    def terminate(self) -> None:
        """Cancel every job and worker of the pool still queued or running.

        Results that were not ready raise
        :class:`~pypoolparty.errors.CancelledError`.
        """
        self._state = TERMINATE
        for call in self._applies.take(at_once=True) or ():
            call.result.set_exception(errors.CancelledError("pypoolparty: the pool was terminated"))
        for run in self._supervisor.runs():
            run.cancel("the pool was terminated")
        self._stop_workers("the pool was terminated")
        self._supervisor.stop()
        self._tidy()

    def join(self) -> None:
        """Wait for the pool's work to end and its workers to leave the queue.

        Call :meth:`close` or :meth:`terminate` first.
        """
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state == CLOSE:
            self._supervisor.drain()
        else:
            self._supervisor.stop()
        self._tidy()

    def _stop_workers(self, why: str) -> None:
        """Tell the workers to leave and cancel them."""
        fleet = self._launcher.fleet_or_none
        if fleet is not None:
            self._pool_dir.mark(STOP)
            fleet.cancel(fleet.alive_ids(), why, fleet.log)

    def _tidy(self) -> None:
        """The pool is done: remove its folder unless a map kept its own."""
        _live_pools.discard(self)
        with self._lock:
            fleet = self._launcher.fleet_or_none
            if fleet is None:
                return
            fleet.withdraw_reaper()
            if not self._pool_dir.kept_maps():
                fleet.log.close()
                self._pool_dir.remove()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()

    def __del__(self, _warn=warnings.warn, RUN=RUN):
        if getattr(self, "_leave_running_at_exit", False):
            return  # collected at interpreter exit: its workers are to finish
        if getattr(self, "_state", None) == RUN:
            _warn(
                "unclosed running pool {!r}".format(self),
                ResourceWarning,
                source=self,
            )
            # No map of this pool is active (an active one keeps it alive):
            # its workers leave, and the supervisor thread ends.
            self._stop_workers("the pool was garbage-collected")
            self._supervisor.stop(timeout=0)
            self._tidy()
