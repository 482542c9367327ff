"""
The worker: what runs on a compute node.

    python -m pypoolparty.core.worker POOL_DIR --worker-id ID [--ranks N]

It serves the pool, not one map: it claims chunks of the pool's maps in
flight, oldest map first, runs each chunk's jobs and writes one result file
per chunk. Workers that start early take more chunks, so jobs of uneven
length spread over the workers as in ``multiprocessing.Pool``. When no map
has a chunk left, it waits for the pool's next map, looking at the pool dir
often right after work and less and less often while idle. It leaves

- after ``idle_timeout`` seconds without work,
- when the pool is closed and no work is left, or terminated,
- after ``maxtasksperchild`` chunks,
- before its time limit, when the next chunk might not finish in time,

each time writing why into the pool dir, so the driver knows at once that it
needs a new worker. In a ``map`` a job that raises ends the chunk: its result
carries the exception and the driver cancels the rest of that map. In
``imap`` and ``apply_async`` batches every job runs and each failure travels
on its own.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import socket
import sys
import time
import typing

from . import outcomes
from .calling import CallSpec
from .pooldir import ExitReason, PoolDir, WorkerSettings
from .workdir import Manifest, WorkDir

#: Seconds between two looks at the pool dir right after work ...
POLL_MIN = 0.002
#: ... growing by this factor with each look that found nothing ...
POLL_GROWTH = 1.3
#: ... up to this: an idle worker lists one folder every two seconds (one
#: listing is an open, a stat and two getdents: two system calls a second).
POLL_MAX = 2.0
#: Seconds kept free before the time limit for the last result's write
#: (at most a tenth of the limit).
TIME_LIMIT_MARGIN = 10.0
#: A chunk is expected to take up to this many times the longest one seen.
CHUNK_TIME_SAFETY = 1.5
#: This machine, as a chunk's result names it.
HOST = socket.gethostname()


class Backoff:
    """Waits that grow while nothing happens and start small after work."""

    def __init__(self, low: float = POLL_MIN, high: float = POLL_MAX, growth: float = POLL_GROWTH):
        self.low, self.high, self.growth = low, high, growth
        self.wait = low

    def reset(self) -> None:
        self.wait = self.low

    def sleep(self) -> None:
        time.sleep(self.wait)
        self.wait = min(self.wait * self.growth, self.high)


@dataclasses.dataclass
class MapView:
    """What this worker knows of one map."""

    work_dir: WorkDir
    manifest: Manifest
    spec: typing.Optional[CallSpec] = None
    failure: typing.Optional[outcomes.Failure] = None
    done: bool = False
    """A job of this ``map`` raised: the driver ends it, take no more."""
    own: typing.List[int] = dataclasses.field(default_factory=list)
    """Chunks this worker claimed before the scheduler requeued it."""


def adopt_driver_paths(cwd: str, sys_path: typing.Sequence[str]) -> None:
    """Let this process import what the driver could import: the map's
    ``cwd`` and ``sys_path`` (its manifest's)."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    missing = [p for p in sys_path if p not in sys.path]
    sys.path[:0] = missing


def run_initializer(init_pickle: bytes) -> None:
    """Run the pool's ``(initializer, initargs)`` from its pickle."""
    initializer, initargs = pickle.loads(init_pickle)
    if initializer is not None:
        initializer(*initargs)


def load_spec(spec_pickle: bytes) -> CallSpec:
    """The map's :class:`CallSpec` from its pickle."""
    spec = pickle.loads(spec_pickle)
    if not isinstance(spec, CallSpec):
        raise TypeError("func.pickle does not hold a pypoolparty CallSpec")
    return spec


def open_map(work_dir: WorkDir) -> typing.Tuple[MapView, bytes]:
    """Read a map's manifest and what to call (and its pickle)."""
    manifest = work_dir.read_manifest()
    adopt_driver_paths(manifest.cwd, manifest.sys_path)
    view = MapView(work_dir=work_dir, manifest=manifest)
    spec_pickle = work_dir.read_func_pickle()
    try:
        view.spec = load_spec(spec_pickle)
    except Exception as exc:
        # E.g. a module the function needs is missing on this node: the
        # driver raises this for the chunk's jobs instead of resubmitting.
        view.failure = outcomes.failure_of(exc)
    return view, spec_pickle


class Calls:
    """How a worker runs the initializer and a job: here, in this process.

    A worker on several MPI ranks runs them on every rank instead
    (:class:`pypoolparty.core.mpi_worker.RankCalls`).
    """

    def initialize(self, init_pickle: bytes) -> None:
        """Run ``(initializer, initargs)`` from its pickle."""
        run_initializer(init_pickle)

    def open(self, name: str, view: "MapView", spec_pickle: bytes) -> None:
        """A map this worker starts to serve."""

    def forget(self, name: str) -> None:
        """A map that ended."""

    def outcome(self, name: str, spec: CallSpec, job: typing.Any) -> outcomes.Outcome:
        """Run one job."""
        return call_outcome(spec, job)


def call_outcome(spec: CallSpec, job: typing.Any) -> outcomes.Outcome:
    """One job's value, or the exception it raised."""
    try:
        return outcomes.Outcome(value=spec.call(job))
    except Exception as exc:
        return outcomes.Outcome(failure=outcomes.failure_of(exc))


def run_chunk(
    spec: CallSpec,
    jobs: typing.Sequence,
    chunk: int,
    worker_id: str,
    call: typing.Callable[[CallSpec, typing.Any], outcomes.Outcome] = call_outcome,
) -> outcomes.ChunkResult:
    """Run the jobs of one chunk in order, each through ``call``.

    With ``spec.stop_on_failure`` the chunk ends at the first job that raises.
    """
    result = outcomes.ChunkResult(chunk=chunk, worker_id=worker_id, outcomes=[])
    for job in jobs:
        outcome = call(spec, job)
        result.outcomes.append(outcome)
        if outcome.failure is not None and spec.stop_on_failure:
            break
    return result


def failed_chunk(
    chunk: int, worker_id: str, failure: outcomes.Failure, num_jobs: int
) -> outcomes.ChunkResult:
    """A chunk none of whose jobs could run: each gets ``failure``."""
    return outcomes.ChunkResult(
        chunk=chunk,
        worker_id=worker_id,
        outcomes=[outcomes.Outcome(failure=failure)] * num_jobs,
    )


class Worker:
    """One worker process serving the maps of a pool.

    Parameters
    ----------
    pool_dir : PoolDir
        The pool's folder.
    worker_id : str
        The id the scheduler knows this worker by.
    calls : Calls or None
        How it runs the initializer and the jobs; None: in this process.
    """

    def __init__(self, pool_dir: PoolDir, worker_id: str, calls: typing.Optional[Calls] = None):
        self.pool_dir = pool_dir
        self.worker_id = worker_id
        self.calls = calls or Calls()
        self.settings: WorkerSettings = pool_dir.read_settings()
        self.started = time.monotonic()
        self.id_path, requeued = pool_dir.register_worker(worker_id)
        self.initialized = False
        self.setup_failure: typing.Optional[outcomes.Failure] = None
        self.maps: typing.Dict[str, MapView] = {}
        self.num_tasks = 0
        self.longest_chunk = 0.0
        self.requeued = requeued

    def initialize(self) -> None:
        """Run the pool's initializer once, as the stdlib does per process.

        Called before the first chunk, once the driver's paths are adopted
        (the initializer may live in the user's modules).
        """
        self.initialized = True
        try:
            self.calls.initialize(self.pool_dir.read_init_pickle())
        except Exception as exc:
            self.setup_failure = outcomes.failure_of(exc)

    # ---------------------------------------------------------------- loop
    def serve(self) -> ExitReason:
        """Claim and run chunks until it is time to leave; say why."""
        backoff = Backoff()
        last_work = time.monotonic()
        while True:
            listing = self.pool_dir.look()
            if listing.stopped:
                return ExitReason.STOPPED
            self._forget_ended_maps(listing.maps)
            worked, reason = self._work_once(listing.maps)
            if reason is not None:
                return reason
            if worked:
                backoff.reset()
                last_work = time.monotonic()
                continue
            if listing.closed and not listing.maps:
                return ExitReason.CLOSED
            if time.monotonic() - last_work >= self.settings.idle_timeout:
                return ExitReason.IDLE
            backoff.sleep()

    def _forget_ended_maps(self, names: typing.List[str]) -> None:
        for name in list(self.maps):
            if name not in names:
                del self.maps[name]
                self.calls.forget(name)

    def _work_once(
        self, names: typing.List[str]
    ) -> typing.Tuple[bool, typing.Optional[ExitReason]]:
        """Run the first chunk to be had, oldest map first.

        Returns whether a chunk ran, and a reason to leave or None.
        """
        for name in names:
            view = self._view(name)
            if view is None or view.done:
                continue
            for chunk in self._candidates(view):
                if self._time_is_short():
                    return False, ExitReason.TIME_LIMIT
                if not self._claim(view, chunk):
                    continue
                self._run(view, chunk)
                self.num_tasks += 1
                if self.settings.max_tasks is not None and self.num_tasks >= self.settings.max_tasks:
                    return True, ExitReason.MAX_TASKS
                return True, None
        return False, None

    def _view(self, name: str) -> typing.Optional[MapView]:
        view = self.maps.get(name)
        if view is None:
            try:
                view, spec_pickle = open_map(self.pool_dir.map_dir(name))
                if self.requeued:
                    view.own = view.work_dir.own_unfinished_chunks(self.worker_id)
            except FileNotFoundError:
                return None  # it ended meanwhile
            if view.spec is not None:
                self.calls.open(name, view, spec_pickle)
            self.maps[name] = view
        return view

    def _candidates(self, view: MapView) -> typing.List[int]:
        """Chunks to try: first those this worker claimed before a requeue."""
        if view.own:
            return list(view.own)
        try:
            return view.work_dir.claimable_chunks(view.manifest)
        except FileNotFoundError:
            return []

    def _claim(self, view: MapView, chunk: int) -> bool:
        if chunk in view.own:
            view.own.remove(chunk)
            return True
        try:
            return view.work_dir.try_claim(chunk, self.id_path)
        except FileNotFoundError:
            return False  # the map ended meanwhile

    def _time_is_short(self) -> bool:
        """True if the next chunk might not end before the time limit."""
        limit = self.settings.time_limit
        if limit is None:
            return False
        elapsed = time.monotonic() - self.started
        margin = min(TIME_LIMIT_MARGIN, 0.1 * limit)
        needed = CHUNK_TIME_SAFETY * self.longest_chunk + margin
        return elapsed + needed > limit

    def _run(self, view: MapView, chunk: int) -> None:
        if not self.initialized:
            self.initialize()
        started = time.monotonic()
        wall_started = time.time()
        manifest = view.manifest
        num_jobs = len(manifest.chunk_range(chunk))
        failure = self.setup_failure or view.failure
        if failure is not None:
            result = failed_chunk(chunk, self.worker_id, failure, num_jobs)
        else:
            try:
                jobs = pickle.loads(view.work_dir.read_chunk_pickle(manifest, chunk))
            except Exception as exc:
                result = failed_chunk(chunk, self.worker_id, outcomes.failure_of(exc), num_jobs)
            else:
                result = run_chunk(
                    view.spec, jobs, chunk, self.worker_id,
                    lambda spec, job: self.calls.outcome(view.work_dir.name, spec, job),
                )
        result.started, result.ended, result.host = wall_started, time.time(), HOST
        try:
            view.work_dir.write_result(chunk, outcomes.encode(result))
        except FileNotFoundError:
            view.done = True  # the map ended and its dir is gone
        self.longest_chunk = max(self.longest_chunk, time.monotonic() - started)
        stop = view.spec is None or view.spec.stop_on_failure
        if result.failure is not None and stop:
            view.done = True


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pypoolparty.core.worker",
        description="Run the jobs of a pypoolparty pool's maps (started by the pool).",
    )
    parser.add_argument("pool_dir", help="the pool's work dir")
    parser.add_argument("--worker-id", required=True, help="this worker's id")
    parser.add_argument(
        "--ranks", type=int, default=1,
        help="MPI ranks each call runs on (the worker runs under mpirun or srun)",
    )
    args = parser.parse_args(argv)
    pool_dir = PoolDir(args.pool_dir)
    try:
        if args.ranks > 1:
            from . import mpi_worker

            return mpi_worker.main(pool_dir, args.worker_id, args.ranks)
        worker = Worker(pool_dir, args.worker_id)
        reason = worker.serve()
        pool_dir.write_exit(args.worker_id, reason)
    except FileNotFoundError as err:
        if not os.path.isdir(pool_dir.path):
            # The driver finished or was stopped and removed the pool dir.
            print("pypoolparty.core.worker: the pool dir is gone, exiting:", err, file=sys.stderr)
            return 0
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
