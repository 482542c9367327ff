"""
The pool's folder: what its workers share over all its maps.

The only code that knows this layout::

    <pool dir>/                  mode 0700, one per pool
        settings.json            the workers' settings (WorkerSettings)
        init.pickle              cloudpickle of (initializer, initargs)
        scheduler.pickle         cloudpickle of the scheduler adapter, for
                                 the command line (status, cancel)
        driver                   touched by the driver every DRIVER_BEAT_SECONDS:
                                 whether it lives, seen from any host
        open/<map name>          an empty file per map in flight
        open/closed              the pool takes no more maps
        open/stop                the pool was terminated: workers leave now
        workers/<id>.id          a worker's id, written when it starts;
                                 its claims are hard links to this file
        workers/<id>.log         its stdout and stderr (the scheduler's)
        exits/<id>               written by a worker that leaves on its own: why
        log.jsonl                the pool's log: submissions, workers' states
        map-<n>-<random>/        one per map, see :mod:`.workdir`

An idle worker between maps lists ``open/`` and nothing else: one
metadata operation tells it the maps in flight, oldest first by name, and
whether the pool is closed or stopped. A map leaves ``open/`` when it ends, so finished and
failed maps cost the workers nothing.
"""
from __future__ import annotations

import dataclasses
import enum
import itertools
import json
import os
import tempfile
import time
import typing

from .workdir import Folder, WorkDir, make_private_dir, open_private, write_atomic

SETTINGS = "settings.json"
INIT = "init.pickle"
SCHEDULER = "scheduler.pickle"
DRIVER = "driver"
#: The driver touches its pool dir's ``driver`` file this often (one
#: metadata write, also while the pool idles) ...
DRIVER_BEAT_SECONDS = 30.0
#: ... and is taken for dead, from another host, when the file is older.
DRIVER_STALE_SECONDS = 180.0
OPEN = "open"
WORKERS = "workers"
EXITS = "exits"
CLOSED = "closed"
STOP = "stop"
MAP_PREFIX = "map-"
#: How much of a worker's output an error message quotes.
LOG_TAIL_BYTES = 600


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """What every worker of the pool is told.

    Parameters
    ----------
    idle_timeout : float
        Seconds a worker waits for work before it leaves.
    max_tasks : int or None
        Chunks a worker runs before it leaves (``maxtasksperchild``).
    time_limit : float or None
        The workers' time limit in the scheduler, in seconds, if known.
    """

    idle_timeout: float
    max_tasks: typing.Optional[int] = None
    time_limit: typing.Optional[float] = None


class ExitReason(enum.Enum):
    """Why a worker left on its own (the content of its exit file)."""

    IDLE = "idle"
    """No work for ``idle_timeout`` seconds."""
    CLOSED = "closed"
    """The pool is closed and no work is left."""
    STOPPED = "stopped"
    """The pool was terminated."""
    MAX_TASKS = "maxtasksperchild"
    """It ran ``maxtasksperchild`` chunks."""
    TIME_LIMIT = "time limit"
    """Its time limit is too near for another chunk."""


@dataclasses.dataclass(frozen=True)
class Listing:
    """One look at ``open/``."""

    maps: typing.List[str]
    closed: bool
    stopped: bool


class PoolDir(Folder):
    """A pool's folder: the driver's and the workers' view of it."""

    def __init__(self, path: str):
        super().__init__(path)
        self._seq = itertools.count(1)

    @property
    def workers_dir(self) -> str:
        return self.join(WORKERS)

    def worker_id_path(self, worker_id: str) -> str:
        return self.join(WORKERS, worker_id + ".id")

    def worker_log_path(self, worker_id: str) -> str:
        return self.join(WORKERS, worker_id + ".log")

    def map_dir(self, name: str) -> WorkDir:
        return WorkDir(self.join(name))

    # --------------------------------------------------------------- driver
    @classmethod
    def create(
        cls, parent: str, prefix: str, settings: WorkerSettings, init_pickle: bytes
    ) -> "PoolDir":
        """Make a new, private pool dir under ``parent``."""
        make_private_dir(parent)
        path = tempfile.mkdtemp(prefix=prefix, dir=parent)  # mode 0700
        for sub in (OPEN, WORKERS, EXITS):
            os.mkdir(os.path.join(path, sub), mode=0o700)
        write_atomic(os.path.join(path, INIT), init_pickle)
        write_atomic(
            os.path.join(path, SETTINGS), json.dumps(dataclasses.asdict(settings)).encode()
        )
        pool_dir = cls(path)
        pool_dir.beat()
        return pool_dir

    def new_map_dir(self) -> WorkDir:
        """A new private map dir; names sort in the order maps were made."""
        prefix = "{:s}{:06d}-".format(MAP_PREFIX, next(self._seq))
        return WorkDir.create(self.path, prefix)

    def open_map(self, work_dir: WorkDir) -> None:
        """Let the workers see the map (its inputs are written)."""
        open_private(self._open_entry(work_dir)).close()

    def close_map(self, work_dir: WorkDir) -> None:
        """The map ended: workers no longer look at it."""
        try:
            os.unlink(self._open_entry(work_dir))
        except FileNotFoundError:
            pass

    def link_map(self, work_dir: WorkDir) -> None:
        """Let this pool's workers serve another pool's map (adopted from a
        driver that died): a link to it under its own name."""
        link = self.join(work_dir.name)
        if not os.path.islink(link):
            os.symlink(work_dir.path, link)

    def unlink_map(self, work_dir: WorkDir) -> None:
        try:
            os.unlink(self.join(work_dir.name))
        except FileNotFoundError:
            pass

    def submitted_workers(self) -> typing.Set[str]:
        """Every worker the pool's driver submitted (its log) or that started."""
        from . import event_log  # the driver's concern: workers start without it

        ids = self.started_workers()
        try:
            for entry in event_log.read(self.log_path):
                if entry.get("event") == "submitted":
                    ids.update(str(w) for w in entry.get("workers", ()))
        except (OSError, ValueError, KeyError):
            pass
        return ids

    def _open_entry(self, work_dir: WorkDir) -> str:
        return self.join(OPEN, work_dir.name)

    def flag_path(self, flag: str) -> str:
        """Where :data:`CLOSED` or :data:`STOP` is written."""
        return self.join(OPEN, flag)

    def mark(self, flag: str) -> None:
        """Set :data:`CLOSED` or :data:`STOP` for the workers to see."""
        try:
            open_private(self.flag_path(flag)).close()
        except FileNotFoundError:
            pass  # the pool dir is gone already

    def exited_workers(self) -> typing.Set[str]:
        """Ids of the workers that left on their own (one listdir)."""
        try:
            return {n for n in os.listdir(self.join(EXITS)) if not n.startswith(".")}
        except FileNotFoundError:
            return set()

    def exit_reason(self, worker_id: str) -> str:
        """Why a worker left, as it wrote it."""
        try:
            with open(self.join(EXITS, worker_id), "rt") as f:
                return f.read().strip()
        except FileNotFoundError:
            return ""

    def started_workers(self) -> typing.Set[str]:
        """Ids of workers that got as far as writing their id file."""
        try:
            names = os.listdir(self.workers_dir)
        except FileNotFoundError:
            return set()
        return {n[: -len(".id")] for n in names if n.endswith(".id")}

    def tail_of_worker_log(self, worker_id: str) -> str:
        """The last bytes of a worker's stdout/stderr, or '' if none."""
        try:
            with open(self.worker_log_path(worker_id), "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - LOG_TAIL_BYTES))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def kept_maps(self) -> typing.List[str]:
        """Map dirs still here (kept after a failure or on request), and
        links to adopted maps that were kept."""
        try:
            return sorted(n for n in os.listdir(self.path) if n.startswith(MAP_PREFIX))
        except FileNotFoundError:
            return []

    def write_scheduler(self, scheduler_pickle: bytes) -> None:
        """Keep the adapter, so that another process can ask about and
        cancel this pool's workers (the command line)."""
        write_atomic(self.join(SCHEDULER), scheduler_pickle)

    def beat(self) -> None:
        """The driver lives: touch the ``driver`` file."""
        path = self.join(DRIVER)
        try:
            os.utime(path)
        except FileNotFoundError:
            try:
                open_private(path).close()
            except OSError:
                pass  # the pool dir is gone
        except OSError:
            pass  # a passing error of the filesystem: the next beat comes soon

    def driver_silence(self) -> typing.Optional[float]:
        """Seconds since the driver's last :meth:`beat` (None: it never beat)."""
        try:
            return max(0.0, time.time() - os.stat(self.join(DRIVER)).st_mtime)
        except FileNotFoundError:
            return None

    def read_scheduler_pickle(self) -> typing.Optional[bytes]:
        """The adapter's pickle, or None if the pool kept none."""
        try:
            with open(self.join(SCHEDULER), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    # --------------------------------------------------------------- worker
    def read_settings(self) -> WorkerSettings:
        with open(self.join(SETTINGS), "rt") as f:
            return WorkerSettings(**json.load(f))

    def read_init_pickle(self) -> bytes:
        with open(self.join(INIT), "rb") as f:
            return f.read()

    def look(self) -> Listing:
        """The maps in flight, oldest first, and the pool's flags: one listdir."""
        names = os.listdir(self.join(OPEN))
        return Listing(
            maps=sorted(n for n in names if n.startswith(MAP_PREFIX)),
            closed=CLOSED in names,
            stopped=STOP in names,
        )

    def register_worker(self, worker_id: str) -> typing.Tuple[str, bool]:
        """Write the worker's id file; return its path and whether it existed.

        It exists if the scheduler requeued the worker, which then runs
        again under its old id and must finish the chunks it claimed. Also
        makes the worker's log, which the scheduler created with the job's
        umask, private.
        """
        try:
            os.chmod(self.worker_log_path(worker_id), 0o600)
        except OSError:
            pass
        path = self.worker_id_path(worker_id)
        existed = os.path.exists(path)
        if not existed:
            write_atomic(path, worker_id.encode())
        return path, existed

    def write_exit(self, worker_id: str, reason: ExitReason) -> None:
        """Say that this worker leaves on its own, and why."""
        write_atomic(self.join(EXITS, worker_id), reason.value.encode())
