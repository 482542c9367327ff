"""
The scheduler-neutral pool: the ``multiprocessing.Pool`` surface on the core.

Each scheduler's ``Pool`` (e.g. :class:`pypoolparty.slurm.array.Pool`) is
this class with an adapter and its own keyword arguments.
"""
from __future__ import annotations

import atexit
import datetime
import os
import site
import sys
import threading
import typing
import uuid
import warnings
import weakref

import cloudpickle

from . import chunking, errors
from .async_result import AsyncResult
from .event_log import EventLog
from .mapping import MapRun, MapSettings
from .scheduling import Scheduler
from .supervisor import PollIntervals, Supervisor
from .workdir import WorkDir, make_private_dir

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"

#: Environment variable naming where default work dirs are made.
WORK_DIR_ENV = "PYPOOLPARTY_WORK_DIR"

_live_pools: "weakref.WeakSet[ClusterPool]" = weakref.WeakSet()


@atexit.register
def _terminate_live_pools() -> None:
    """At interpreter exit, cancel what running pools still have queued."""
    for pool in list(_live_pools):
        pool.terminate()


class MapResult(AsyncResult):
    """The AsyncResult of ``map_async``: a list once every chunk is in."""

    def __init__(self, num_jobs: int, callback=None, error_callback=None):
        super().__init__(callback, error_callback, on_abandon=self._abandon)
        self._values: typing.List[typing.Any] = [None] * num_jobs
        self.run: typing.Optional[MapRun] = None

    def _abandon(self) -> None:
        if self.run is not None:
            self.run.cancel("the caller stopped waiting (interrupt or exception)")

    # ResultSink
    def chunk_done(self, chunk: int, first_job: int, values: list) -> None:
        self._values[first_job : first_job + len(values)] = values

    def completed(self) -> None:
        self._set(True, self._values)

    def failed(self, exc: BaseException) -> None:
        self._set(False, exc)


def _pickle_function(func, star: bool, initializer, initargs) -> bytes:
    try:
        return cloudpickle.dumps((func, star, initializer, tuple(initargs)))
    except Exception as exc:
        what = "func {!r}".format(func)
        try:
            cloudpickle.dumps(func)
        except Exception:
            pass
        else:
            what = "initializer {!r} or its initargs".format(initializer)
        raise errors.NotPicklableError(
            "pypoolparty: {:s} cannot be pickled, so it cannot be sent to the "
            "cluster ({:s}: {}). Nothing was submitted.".format(
                what, type(exc).__name__, exc
            )
        ) from exc


def _pickle_chunks(jobs: list, starts: typing.List[int]) -> typing.List[bytes]:
    out = []
    for c in range(len(starts) - 1):
        part = jobs[starts[c] : starts[c + 1]]
        try:
            out.append(cloudpickle.dumps(part))
        except Exception as exc:
            index = starts[c]
            for i, job in enumerate(part):
                try:
                    cloudpickle.dumps(job)
                except Exception:
                    index = starts[c] + i
                    break
            raise errors.NotPicklableError(
                "pypoolparty: job {:d} of the map cannot be pickled, so it "
                "cannot be sent to the cluster ({:s}: {}). Nothing was "
                "submitted.".format(index, type(exc).__name__, exc)
            ) from exc
    return out


def _driver_sys_path() -> typing.List[str]:
    return [os.path.abspath(p) if p else os.getcwd() for p in sys.path]


def _worker_env() -> typing.Dict[str, str]:
    """PYTHONPATH so that the worker imports this very pypoolparty."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    installed = set(site.getsitepackages() + [site.getusersitepackages()])
    if here in installed:
        return {}
    old = os.environ.get("PYTHONPATH", "")
    parts = [here] + [p for p in old.split(os.pathsep) if p and p != here]
    return {"PYTHONPATH": os.pathsep.join(parts)}


class ClusterPool:
    """A pool whose workers are jobs of a cluster's scheduler.

    Parameters
    ----------
    processes : int or None
        At most this many workers run at once. None: the scheduler's
        default (e.g. the CPUs of the partition).
    initializer : callable or None
        Called as ``initializer(*initargs)`` once in each worker.
    initargs : tuple
        Arguments of ``initializer``.
    maxtasksperchild : int or None
        Accepted for compatibility; each worker is a fresh process.
    scheduler : Scheduler
        The adapter.
    work_dir : str or None
        Directory on a filesystem the compute nodes share; each map makes
        its own folder in it. None: a new folder under ``$PYPOOLPARTY_WORK_DIR``
        or the current directory.
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
        Also write the log's events to stderr.
    name : str
        Job name in the scheduler's listing.
    """

    def __init__(
        self,
        processes: typing.Optional[int] = None,
        initializer: typing.Optional[typing.Callable] = None,
        initargs: typing.Iterable = (),
        maxtasksperchild: typing.Optional[int] = None,
        *,
        scheduler: Scheduler,
        work_dir: typing.Optional[str] = None,
        python_path: typing.Optional[str] = None,
        polling_interval: float = 5.0,
        max_num_resubmissions: int = 3,
        keep_work_dir: bool = False,
        verbose: bool = False,
        name: str = "pypoolparty",
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
        if max_num_resubmissions is None:
            max_num_resubmissions = 3
        if max_num_resubmissions < 0:
            raise ValueError("max_num_resubmissions must be >= 0")
        self._processes = processes
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._maxtasksperchild = maxtasksperchild
        self.scheduler = scheduler
        self._work_dir = None if work_dir is None else os.path.abspath(work_dir)
        self._root_is_ours = work_dir is None
        self._root: typing.Optional[str] = self._work_dir
        self._python_path = python_path or sys.executable
        self._max_num_resubmissions = int(max_num_resubmissions)
        self._keep_work_dir = bool(keep_work_dir)
        self._verbose = bool(verbose)
        self._name = name
        self._lock = threading.RLock()
        self._supervisor = Supervisor(
            scheduler, PollIntervals(scheduler=float(polling_interval)), name
        )
        self._state = RUN
        _live_pools.add(self)

    def __repr__(self) -> str:
        return "<{}.{} state={} processes={} scheduler={}>".format(
            self.__class__.__module__,
            self.__class__.__qualname__,
            self._state,
            self._processes,
            self.scheduler.name,
        )

    # ----------------------------------------------------------- internals
    def _check_running(self) -> None:
        if self._state != RUN:
            raise ValueError("Pool not running")

    def _resolve_processes(self, log: EventLog) -> int:
        with self._lock:
            if self._processes is None:
                self._processes = max(1, int(self.scheduler.default_processes(log)))
            return self._processes

    def _new_work_dir(self) -> WorkDir:
        with self._lock:
            if self._root is None or (self._root_is_ours and not os.path.isdir(self._root)):
                if self._root is None:
                    parent = os.environ.get(WORK_DIR_ENV) or os.getcwd()
                    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
                    self._root = os.path.join(
                        os.path.abspath(parent),
                        "pypoolparty-{:s}-{:s}".format(stamp, uuid.uuid4().hex[:6]),
                    )
            make_private_dir(self._root)
            return WorkDir.create(self._root)

    def _tidy_root(self) -> None:
        """Remove the default work dir once no map folder is left in it."""
        with self._lock:
            if self._root_is_ours and self._root is not None:
                try:
                    os.rmdir(self._root)
                except OSError:
                    pass

    def _start_map(
        self,
        func: typing.Callable,
        iterable: typing.Iterable,
        chunksize: typing.Optional[int],
        star: bool,
        callback=None,
        error_callback=None,
    ) -> MapResult:
        self._check_running()
        jobs = list(iterable)
        if chunksize is not None and chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        result = MapResult(len(jobs), callback, error_callback)
        if not jobs:
            result.completed()
            return result
        func_pickle = _pickle_function(func, star, self._initializer, self._initargs)
        # Scheduler calls made before the map's log exists go into it later.
        setup_log = EventLog.buffer()
        processes = self._resolve_processes(setup_log)
        plan = chunking.plan(len(jobs), processes, chunksize)
        chunk_pickles = _pickle_chunks(jobs, plan.chunk_starts)
        work_dir = self._new_work_dir()
        log = EventLog(work_dir.create_log(), verbose=self._verbose)
        setup_log.replay_into(log)
        log.event(
            "map",
            scheduler=self.scheduler.name,
            work_dir=work_dir.path,
            num_jobs=plan.num_jobs,
            num_chunks=plan.num_chunks,
            num_workers=plan.num_workers,
            processes=processes,
            func=repr(func),
        )
        work_dir.write_inputs(
            func_pickle=func_pickle,
            chunk_pickles=chunk_pickles,
            chunk_starts=plan.chunk_starts,
            sys_path=_driver_sys_path(),
            cwd=os.getcwd(),
        )
        settings = MapSettings(
            processes=processes,
            max_num_resubmissions=self._max_num_resubmissions,
            keep_work_dir=self._keep_work_dir,
            python_argv=[self._python_path],
            env=_worker_env(),
            name=self._name,
        )
        sink = _TidyingSink(result, self._tidy_root)
        run = MapRun(
            work_dir=work_dir,
            chunk_starts=plan.chunk_starts,
            num_workers=plan.num_workers,
            scheduler=self.scheduler,
            settings=settings,
            sink=sink,
            log=log,
        )
        result.run = run
        self._supervisor.add(run)
        return result

    # ---------------------------------------------------------- public API
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
        return self._start_map(func, iterable, chunksize, star=False).get()

    def starmap(
        self,
        func: typing.Callable,
        iterable: typing.Iterable[typing.Iterable],
        chunksize: typing.Optional[int] = None,
    ) -> list:
        """Like :meth:`map`, but each job is unpacked: ``func(*job)``."""
        return self._start_map(func, iterable, chunksize, star=True).get()

    def map_async(
        self,
        func: typing.Callable,
        iterable: typing.Iterable,
        chunksize: typing.Optional[int] = None,
        callback: typing.Optional[typing.Callable] = None,
        error_callback: typing.Optional[typing.Callable] = None,
    ) -> AsyncResult:
        """Start a map and return at once; see :class:`AsyncResult`."""
        return self._start_map(func, iterable, chunksize, False, callback, error_callback)

    def starmap_async(
        self,
        func: typing.Callable,
        iterable: typing.Iterable[typing.Iterable],
        chunksize: typing.Optional[int] = None,
        callback: typing.Optional[typing.Callable] = None,
        error_callback: typing.Optional[typing.Callable] = None,
    ) -> AsyncResult:
        """Like :meth:`map_async`, with ``func(*job)``."""
        return self._start_map(func, iterable, chunksize, True, callback, error_callback)

    def close(self) -> None:
        """Accept no more work; running maps go on."""
        if self._state == RUN:
            self._state = CLOSE

    def terminate(self) -> None:
        """Cancel every job of the pool still queued or running."""
        self._state = TERMINATE
        for run in self._supervisor.runs():
            run.cancel("the pool was terminated")
        self._supervisor.stop()
        self._tidy_root()
        _live_pools.discard(self)

    def join(self) -> None:
        """Wait for the pool's maps to end; call close() or terminate() first."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        self._supervisor.stop()
        self._tidy_root()
        _live_pools.discard(self)

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()

    def __del__(self, _warn=warnings.warn, RUN=RUN):
        if getattr(self, "_state", None) == RUN:
            _warn(
                "unclosed running pool {!r}".format(self),
                ResourceWarning,
                source=self,
            )


class _TidyingSink:
    """Passes results on, then lets the pool remove its empty default dir."""

    def __init__(self, result: MapResult, tidy: typing.Callable[[], None]):
        self._result = result
        self._tidy = tidy

    def chunk_done(self, chunk: int, first_job: int, values: list) -> None:
        self._result.chunk_done(chunk, first_job, values)

    def completed(self) -> None:
        self._tidy()
        self._result.completed()

    def failed(self, exc: BaseException) -> None:
        self._result.failed(exc)
