"""
What is under a work dir, for someone who looks from outside the driver.

The command line (:mod:`pypoolparty.cli`) asks here which pools and maps a
work dir holds and how far each got. Everything comes from the files the
driver and the workers leave (the logs, the results, the claims), and from
one query to the scheduler per pool for the workers' states, with the
adapter the pool kept in its folder. So it works from another shell on the
login node while the driver runs, and after the driver died.
"""
from __future__ import annotations

import dataclasses
import enum
import os
import pickle
import socket
import time
import typing

from . import event_log, map_history
from .map_history import MapEnd, MapHistory
from .pooldir import DRIVER_STALE_SECONDS, OPEN, SETTINGS, PoolDir
from .scheduler import Scheduler, WorkerState
from .workdir import MANIFEST, WorkDir

#: How a pool dir's name starts (see :class:`~.workdir.WorkRoot`).
POOL_PREFIX = "pypoolparty-"


class MapState(enum.Enum):
    """Where a map is, seen from outside its driver."""

    RUNNING = "running"
    """No end in its log and its driver is alive (or on another host)."""
    DRIVER_GONE = "driver gone"
    """No end in its log, and its driver's process is gone."""
    CANCELLING = "cancelling"
    """``pypoolparty cancel`` asked; the driver has not ended it yet."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self in (MapState.COMPLETED, MapState.FAILED, MapState.CANCELLED)

    @property
    def bad(self) -> bool:
        """Something the user must look at."""
        return self in (MapState.FAILED, MapState.CANCELLED, MapState.DRIVER_GONE)


@dataclasses.dataclass(frozen=True)
class Driver:
    """The process that ran the pool: ``alive`` is None when neither its
    host nor a heartbeat can tell."""

    host: str
    pid: int
    alive: typing.Optional[bool]
    silence: typing.Optional[float] = None
    """Seconds since its last heartbeat (None: it kept none)."""


@dataclasses.dataclass
class MapStatus:
    """One map's progress and failures."""

    path: str
    state: MapState
    num_jobs: int
    jobs_done: int
    num_chunks: int
    chunks_done: int
    chunks_running: int
    started: float
    ended: typing.Optional[float]
    age: float
    resubmissions: int
    failures: typing.List[map_history.FailureGroup]
    released: bool = False
    """No driver uses its folder any more (it logged that it kept it, or
    it is gone): ``clean`` may remove it once it ended."""

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


@dataclasses.dataclass
class PoolStatus:
    """A pool's driver, workers and maps.

    ``workers`` counts the pool's workers by state (``pending``,
    ``running``, ``ended``, ...); ``states_from`` says whether the
    scheduler was asked (``"scheduler"``) or only the log was read
    (``"log"``).
    """

    path: str
    scheduler: str
    driver: typing.Optional[Driver]
    workers: typing.Dict[str, int]
    states_from: str
    maps: typing.List[MapStatus]


class NotAWorkDir(ValueError):
    """The path holds no pool or map of pypoolparty."""


# ------------------------------------------------------------------ finding
def is_pool_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, SETTINGS)) and os.path.isdir(os.path.join(path, OPEN))


def is_map_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, MANIFEST))


def pool_dirs(path: str) -> typing.List[PoolDir]:
    """The pool dirs ``path`` means: itself, the pool of a map dir, or
    the pools in it (oldest first).

    Raises
    ------
    NotAWorkDir
        If ``path`` is none of these.
    """
    path = os.path.abspath(path)
    if is_pool_dir(path):
        return [PoolDir(path)]
    if is_map_dir(path) and is_pool_dir(os.path.dirname(path)):
        return [PoolDir(os.path.dirname(path))]
    if not os.path.isdir(path):
        raise NotAWorkDir("{!r} is not a folder".format(path))
    found = [
        PoolDir(os.path.join(path, n))
        for n in sorted(os.listdir(path))
        if n.startswith(POOL_PREFIX) and is_pool_dir(os.path.join(path, n))
    ]
    return found


def map_dir(path: str) -> typing.Tuple[PoolDir, WorkDir]:
    """A map dir and its pool.

    Raises
    ------
    NotAWorkDir
        If ``path`` is not a map dir of a pool.
    """
    path = os.path.abspath(path)
    if not (is_map_dir(path) and is_pool_dir(os.path.dirname(path))):
        raise NotAWorkDir(
            "{!r} is not a map's folder (a map-<n>-... folder with a manifest.json, "
            "inside a pool's folder)".format(path)
        )
    return PoolDir(os.path.dirname(path)), WorkDir(path)


def map_dirs(pool_dir: PoolDir) -> typing.List[WorkDir]:
    """The pool's maps still on disk, oldest first (adopted ones are links
    to another pool's maps, listed there)."""
    out = []
    for name in pool_dir.kept_maps():
        path = pool_dir.join(name)
        if not os.path.islink(path) and is_map_dir(path):
            out.append(WorkDir(path))
    return out


# ------------------------------------------------------------------ reading
def read_history(log_path: str, folder: str) -> MapHistory:
    """A map's or a pool's log as a history (an empty one if it has none)."""
    try:
        return map_history.read(log_path, folder)
    except OSError:
        return MapHistory(path=folder)


def read_pool_log(pool_dir: PoolDir) -> MapHistory:
    """The pool's log: its driver, submissions, workers' states, calls."""
    return read_history(pool_dir.log_path, pool_dir.path)


def driver_of(pool_dir: PoolDir, history: typing.Optional[MapHistory] = None) -> typing.Optional[Driver]:
    """The pool's driver process, and whether it is alive.

    On its own host the process is looked up; from anywhere, a driver
    whose heartbeat (:meth:`~.pooldir.PoolDir.beat`) is older than
    :data:`~.pooldir.DRIVER_STALE_SECONDS` is gone. ``history``: the
    pool's log, if read already.
    """
    if history is None:
        history = read_pool_log(pool_dir)
    host, pid = history.driver_host, history.driver_pid
    if not host or not pid:
        return None
    silence = pool_dir.driver_silence()
    stale = silence is not None and silence > DRIVER_STALE_SECONDS
    alive = None if silence is None else not stale
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
            alive = not stale
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = not stale
    return Driver(host=host, pid=int(pid), alive=alive, silence=silence)


def driving_pool(pool_dir: PoolDir, history: MapHistory) -> PoolDir:
    """The pool whose driver runs the map now: another one's if it adopted
    the map after its own driver died."""
    if history.adopted_by and is_pool_dir(history.adopted_by):
        return PoolDir(history.adopted_by)
    return pool_dir


def load_scheduler(pool_dir: PoolDir) -> typing.Optional[Scheduler]:
    """The adapter the pool kept, or None (none kept, it cannot load, or
    another user owns the pool: unpickling runs its owner's code)."""
    try:
        if os.stat(pool_dir.path).st_uid != os.getuid():
            return None
    except OSError:
        return None
    data = pool_dir.read_scheduler_pickle()
    if data is None:
        return None
    try:
        return pickle.loads(data)
    except Exception:
        return None


def worker_states(
    pool_dir: PoolDir,
    history: MapHistory,
    scheduler: typing.Optional[Scheduler],
) -> typing.Tuple[typing.Dict[str, str], str]:
    """Each of the pool's workers' state, and where it came from.

    Workers the log saw end are ended; the others are asked of the
    scheduler in one call when the adapter is at hand (those it no longer
    knows ended), else their last state in the log stands.
    """
    ids = set(history.workers) | pool_dir.started_workers()
    last = history.last_states()
    states = {w: (last[w].state if w in last else WorkerState.PENDING.value) for w in ids}
    open_ids = sorted(w for w, s in states.items() if s != WorkerState.ENDED.value)
    if scheduler is None or not open_ids:
        return states, "log"
    try:
        answer = scheduler.states(open_ids, event_log.EventLog(None))
    except Exception:
        return states, "log"
    for wid in open_ids:
        status = answer.get(wid)
        states[wid] = WorkerState.ENDED.value if status is None else status.state.value
        if states[wid] == WorkerState.UNKNOWN.value:
            states[wid] = WorkerState.ENDED.value
    return states, "scheduler"


def map_status(
    work_dir: WorkDir,
    pool_dir: PoolDir,
    driver: typing.Optional[Driver],
    now: float,
    history: typing.Optional[MapHistory] = None,
) -> MapStatus:
    """How far a map got, from its log, its results and its claims.

    ``driver`` is its pool's; a map another pool adopted is judged by that
    pool's driver. ``history``: the map's log, if read already.
    """
    if history is None:
        history = read_history(work_dir.log_path, work_dir.path)
    driving = driving_pool(pool_dir, history)
    if driving.path != pool_dir.path:
        driver = driver_of(driving)
    chunks_done, jobs_done, running = 0, history.jobs_done, 0
    num_jobs, num_chunks = history.num_jobs, history.num_chunks
    try:
        manifest = work_dir.read_manifest()
        finished = work_dir.finished_chunks()
        num_jobs, num_chunks = manifest.num_jobs, manifest.num_chunks
        chunks_done = len(finished)
        jobs_done = sum(len(manifest.chunk_range(c)) for c in finished if c < manifest.num_chunks)
        running = len(work_dir.claimed_chunks() - finished)
    except (OSError, ValueError, TypeError):
        pass
    return MapStatus(
        path=work_dir.path,
        state=_state(history, work_dir, driver),
        num_jobs=num_jobs,
        jobs_done=jobs_done,
        num_chunks=num_chunks,
        chunks_done=chunks_done,
        chunks_running=running,
        started=history.started,
        ended=history.ended,
        age=max(0.0, now - history.started) if history.started else 0.0,
        resubmissions=len(history.losses),
        failures=history.failures_by_cause(),
        released=history.kept or bool(driver is not None and driver.alive is False),
    )


def _state(history: MapHistory, work_dir: WorkDir, driver: typing.Optional[Driver]) -> MapState:
    if history.end is not MapEnd.RUNNING:
        return MapState(history.end.value)
    if work_dir.cancel_request() is not None:
        return MapState.CANCELLING
    if driver is not None and driver.alive is False:
        return MapState.DRIVER_GONE
    return MapState.RUNNING


def pool_status(pool_dir: PoolDir, ask_scheduler: bool = True) -> PoolStatus:
    """A pool's driver, its workers by state and its maps on disk."""
    history = read_pool_log(pool_dir)
    driver = driver_of(pool_dir, history)
    scheduler = load_scheduler(pool_dir) if ask_scheduler else None
    states, source = worker_states(pool_dir, history, scheduler)
    counts: typing.Dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    now = time.time()
    return PoolStatus(
        path=pool_dir.path,
        scheduler=history.scheduler,
        driver=driver,
        workers=counts,
        states_from=source,
        maps=[map_status(w, pool_dir, driver, now) for w in map_dirs(pool_dir)],
    )


def live_workers(
    pool_dir: PoolDir, history: MapHistory, scheduler: typing.Optional[Scheduler]
) -> typing.List[str]:
    """The pool's workers not known to have ended (``history``: its log)."""
    states, _ = worker_states(pool_dir, history, scheduler)
    return sorted(w for w, s in states.items() if s != WorkerState.ENDED.value)
