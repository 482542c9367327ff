"""
How a pool's call becomes maps in flight: the pool's folder and workers,
made with its first map; a map's inputs written and its :class:`MapRun`
handed to the supervisor; with a store, the call planned against it first
(:mod:`.stored_call`), a dead driver's map adopted.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import socket
import threading
import typing

import cloudpickle

from . import chunking, inputs, keys, stored_call
from .calling import CallSpec
from .event_log import EventLog
from .map_run import MapRun, MapSettings
from .pooldir import CLOSED, PoolDir, WorkerSettings
from .scheduler import Scheduler
from .store import Store
from .supervisor import Supervisor
from .workdir import WorkDir, WorkRoot
from .workers import Fleet, FleetSettings


@dataclasses.dataclass(frozen=True)
class LaunchSettings:
    """The pool's settings that starting a map needs."""

    processes: int
    num_chunks: typing.Optional[int]
    worker: WorkerSettings
    fleet: FleetSettings
    map: MapSettings
    verbose: bool


class Launcher:
    """Starts a pool's maps.

    Parameters
    ----------
    scheduler : Scheduler
        The adapter.
    supervisor : Supervisor
        Drives the maps.
    root : WorkRoot
        Where the pool's folder is made.
    init_pickle : callable
        Returns the pickle of ``(initializer, initargs)``.
    settings : LaunchSettings
        The pool's settings.
    setup_log : EventLog
        Events from before the pool's log existed.
    store : Store or None
        The persistent store, if the pool has one.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        supervisor: Supervisor,
        root: WorkRoot,
        init_pickle: typing.Callable[[], bytes],
        settings: LaunchSettings,
        setup_log: EventLog,
        store: typing.Optional[Store],
    ):
        self.scheduler = scheduler
        self.supervisor = supervisor
        self.root = root
        self.init_pickle = init_pickle
        self.settings = settings
        self.setup_log = setup_log
        self.store = store
        self.pool_dir: typing.Optional[PoolDir] = None
        self._fleet: typing.Optional[Fleet] = None
        self._lock = threading.RLock()
        self._closed = False

    def close(self) -> None:
        """The pool takes no more work: its workers may leave once the maps
        are done, also those of a pool dir made after this (the apply_async
        calls gathered before close start their map later)."""
        with self._lock:
            self._closed = True
            if self.pool_dir is not None:
                self.pool_dir.mark(CLOSED)

    # ------------------------------------------------------- the pool dir
    def ensure_pool_dir(self) -> typing.Tuple[PoolDir, Fleet]:
        """The pool's folder and workers, made with the first map.

        Raises NotPicklableError if the initializer cannot be pickled.
        """
        with self._lock:
            if self.pool_dir is None:
                init_pickle = self.init_pickle()
                pool_dir = PoolDir.create(
                    self.root.parent(), self.root.prefix(), self.settings.worker, init_pickle
                )
                log = EventLog(pool_dir.log_path, verbose=self.settings.verbose)
                self.setup_log.replay_into(log)
                log.event(
                    "pool",
                    scheduler=self.scheduler.name,
                    pool_dir=pool_dir.path,
                    processes=self.settings.processes,
                    store=None if self.store is None else self.store.path,
                    driver_host=socket.gethostname(),
                    driver_pid=os.getpid(),
                    **dataclasses.asdict(self.settings.worker),
                )
                self._keep_scheduler(pool_dir, log)
                self._fleet = Fleet(self.scheduler, pool_dir, self.settings.fleet, log)
                self.pool_dir = pool_dir
                if self._closed:
                    pool_dir.mark(CLOSED)
            return self.pool_dir, self._fleet

    def _keep_scheduler(self, pool_dir: PoolDir, log: EventLog) -> None:
        """Leave the adapter in the pool dir for the command line; an
        adapter that cannot travel (a test's fake) is logged and left out."""
        try:
            data = cloudpickle.dumps(self.scheduler)
        except Exception as exc:
            log.event("scheduler_not_kept", error=repr(exc))
            return
        pool_dir.write_scheduler(data)

    @property
    def fleet_or_none(self) -> typing.Optional[Fleet]:
        return self._fleet

    def fleet(self) -> Fleet:
        return self.ensure_pool_dir()[1]

    def new_map_dir(self) -> WorkDir:
        return self.ensure_pool_dir()[0].new_map_dir()

    # ------------------------------------------------------------ calls
    def start(
        self,
        spec: CallSpec,
        jobs: list,
        chunksize: typing.Optional[int],
        sink,
        run_missing: typing.Union[bool, typing.Container[int]] = True,
    ) -> None:
        """Start a call: with a store, only what it does not hold.

        ``run_missing`` (a store only) says which of the jobs neither stored
        nor in flight run: all (True), none (False: it takes what is stored,
        follows and adopts what is in flight), or those at these positions.

        Raises NotPicklableError before anything is written.
        """
        if self.store is None:
            self.start_map(spec, jobs, chunksize, sink)
            return
        groups = keys.call_keys(spec, jobs, self.scheduler.resources.cores)
        assembly = stored_call.Assembly(sink, len(jobs))
        for code, name, wanted in groups:
            shelf = self.store.shelf(code, name)
            stored_call.StoredCall(self, shelf, spec, jobs, chunksize, assembly, run_missing).plan(wanted)

    def start_map(
        self,
        spec: CallSpec,
        jobs: list,
        chunksize: typing.Optional[int],
        sink,
        work_dir: typing.Optional[WorkDir] = None,
    ) -> None:
        """Write a map's inputs and hand it to the supervisor.

        Raises NotPicklableError before anything is written.
        """
        spec_pickle = inputs.pickle_spec(spec)
        if chunksize is None and self.settings.num_chunks is not None:
            chunksize = -(-len(jobs) // self.settings.num_chunks)
        plan = chunking.plan(len(jobs), self.settings.processes, chunksize)
        chunk_pickles = inputs.pickle_chunks(jobs, plan.chunk_starts)
        pool_dir, fleet = self.ensure_pool_dir()
        if work_dir is None:
            work_dir = pool_dir.new_map_dir()
        log = EventLog(work_dir.create_log(), verbose=self.settings.verbose)
        log.event(
            "map",
            scheduler=self.scheduler.name,
            work_dir=work_dir.path,
            call_style=spec.style.value,
            num_jobs=plan.num_jobs,
            num_chunks=plan.num_chunks,
            processes=self.settings.processes,
            funcs=[repr(f) for f in spec.funcs[:5]],
        )
        work_dir.write_inputs(
            func_pickle=spec_pickle,
            chunk_pickles=chunk_pickles,
            chunk_starts=plan.chunk_starts,
            sys_path=inputs.driver_sys_path(),
            cwd=self.settings.fleet.working_dir(),
        )
        self._run(work_dir, plan.chunk_starts, sink, log, spec.stop_on_failure)

    def _run(self, work_dir: WorkDir, chunk_starts, sink, log: EventLog, stop_on_failure: bool) -> None:
        pool_dir, fleet = self.ensure_pool_dir()
        run = MapRun(
            work_dir=work_dir,
            chunk_starts=chunk_starts,
            pool_dir=pool_dir,
            fleet=fleet,
            settings=self.settings.map,
            sink=sink,
            log=log,
            stop_on_failure=stop_on_failure,
        )
        sink.run = run
        self.supervisor.add(run)

    # ------------------------------------------------------- store only
    def map_info(self, work_dir: WorkDir) -> dict:
        """What a store record says of a map, for a driver that adopts it."""
        pool_dir, _ = self.ensure_pool_dir()
        return {
            "work_dir": work_dir.path,
            "pool_dir": pool_dir.path,
            "scheduler": self.scheduler.name,
            "created": datetime.datetime.now().isoformat(timespec="seconds"),
        }

    def follow(self, part) -> None:
        self.supervisor.add(part)

    def adopt_map(self, info: dict, sink, stop_on_failure: bool) -> bool:
        """Take over a dead driver's map: open it to this pool's workers,
        watch its workers as this pool's, collect what they finished.

        False if it cannot be adopted (its inputs were never written, it is
        gone, it is on another filesystem, another scheduler's, or it was
        cancelled with ``pypoolparty cancel``): its jobs then run anew.
        """
        if info.get("scheduler") != self.scheduler.name or not info.get("work_dir") or not info.get("pool_dir"):
            return False  # another scheduler's, or a local.Pool's (its workers died with it)
        pool_dir, fleet = self.ensure_pool_dir()
        old_pool = PoolDir(info["pool_dir"])
        work_dir = WorkDir(info["work_dir"])
        if work_dir.cancel_request() is not None:
            return False
        try:
            manifest = work_dir.read_manifest()
            if os.stat(work_dir.path).st_dev != os.stat(pool_dir.path).st_dev:
                return False
            pool_dir.link_map(work_dir)
        except (OSError, ValueError, TypeError):
            return False
        log = EventLog(work_dir.log_path, verbose=self.settings.verbose, append=True)
        workers = old_pool.submitted_workers()
        log.event("adopted", pool_dir=pool_dir.path, workers=sorted(workers))
        fleet.adopt(workers, log)

        def on_end() -> None:
            old_pool.close_map(work_dir)
            pool_dir.unlink_map(work_dir)

        sink.on_end = on_end
        self._run(work_dir, manifest.chunk_starts, sink, log, stop_on_failure)
        return True
