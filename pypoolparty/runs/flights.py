"""
What this process runs for decorated calls: one pool per decorator's
settings, kept for the process's life and left running at its exit; the
maps each entry's calls started; and what an entry's runs look like in the
store (for reading, cancelling and printing output).
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import os
import threading
import typing
import warnings

from .. import errors
from ..core import progress
from ..core.calling import CallSpec
from ..core.keys import call_keys
from . import entries

logger = logging.getLogger("pypoolparty")


#: pool= names and the module of their pool: those of
#: :data:`pypoolparty.auto.CHOICES`, but on the local machine the processes
#: pool, whose workers outlive the driver as a scheduler's do.
POOLS = {
    "slurm": "pypoolparty.slurm.array",
    "slurm.array": "pypoolparty.slurm.array",
    "sge": "pypoolparty.sun_grid_engine",
    "local": "pypoolparty.processes",
}

@dataclasses.dataclass(frozen=True)
class Settings:
    """What the decorator was given."""

    num_runs: int
    num_tasks: int
    path: str
    seed: typing.Optional[int]
    encoding: str
    pool: typing.Any
    scheduler_options: typing.Dict[str, typing.Any]
    average: bool


class CallSink:
    """The sink of a decorated call's map: results go to the store only;
    failures are kept to be told."""

    run = None

    def __init__(self):
        self.failures: typing.Dict[int, BaseException] = {}
        self.error: typing.Optional[BaseException] = None
        self.ended = threading.Event()

    def chunk_done(self, chunk, first_job, results):
        for i, (ok, value) in enumerate(results):
            if not ok:
                self.failures[first_job + i] = value

    def completed(self):
        self.ended.set()

    def failed(self, exc):
        self.error = exc
        self.ended.set()

    @property
    def busy(self) -> bool:
        """Some part of the call still collects or runs."""
        if self.ended.is_set() or self.run is None:
            return False
        parts = self.run.parts
        return any((p.run is None or p.run.active) if hasattr(p, "writer") else p.active for p in parts)


lock = threading.RLock()
pools: typing.Dict[typing.Tuple, typing.Any] = {}
#: The maps each entry's calls started in this process (entry id, generation).
in_flight: typing.Dict[typing.Tuple[str, int], typing.List[CallSink]] = {}


def pool_for(settings: Settings):
    """The pool of these settings, made once per process.

    Its workers are left to finish when this process ends (a notebook
    kernel shut down): the next call collects what they did.
    """
    choice = settings.pool
    key = (
        repr(choice),
        settings.num_tasks,
        os.path.abspath(settings.path),
        repr(settings.scheduler_options),
        settings.encoding,
    )
    with lock:
        if key in pools:
            return pools[key]
        options = dict(settings.scheduler_options)
        if choice is None:
            from ..auto import which_scheduler

            choice = which_scheduler()
        if isinstance(choice, str):
            if choice not in POOLS:
                raise ValueError("pool= must be one of {} or a pool class, not {!r}".format(sorted(POOLS), choice))
            choice = importlib.import_module(POOLS[choice]).Pool
        cls = choice
        accepted = inspect.signature(cls.__init__).parameters
        word = next((w for w in ("sbatch_options", "qsub_options") if w in accepted), None)
        if options and word is None:
            logger.info("pypoolparty: %s takes no scheduler options; %s left out", cls.__name__, sorted(options))
        kwargs = {word: options} if options and word else {}
        if "progress" in accepted:
            # The decorators return while the map runs: a bar would draw
            # over the prompt. In a notebook the widget stays in its cell.
            kwargs["progress"] = progress.in_notebook()
        pool = cls(
            settings.num_tasks,
            cache_dir=entries.folder(settings.path, entries.STORE),
            work_dir=entries.folder(settings.path, entries.WORK),
            **kwargs,
        )
        pool._launcher.store.encoding = settings.encoding
        pool._leave_running_at_exit = True
        pools[key] = pool
        return pool


_stores: typing.Dict[typing.Tuple[str, str], typing.Any] = {}


def _store_of(settings: Settings):
    """The store under ``settings.path``, opened once per process: its
    shelves then read only what their records gained since the last call."""
    from ..core.store import MARK, Store

    key = (os.path.abspath(settings.path), settings.encoding)
    with lock:
        store = _stores.get(key)
        if store is None or not os.path.exists(os.path.join(store.path, MARK)):  # removed by hand
            store = _stores[key] = Store(entries.folder(settings.path, entries.STORE), settings.encoding)
        return store


def shelf_of(settings: Settings, spec: CallSpec, jobs: list):
    """The store's shelf of an entry's runs, read up to now, and the runs' keys."""
    store = _store_of(settings)
    ((code, name, wanted),) = call_keys(spec, jobs)
    shelf = store.shelf(code, name)
    shelf.scan()
    return shelf, wanted


def in_flight_records(shelf, wanted):
    """The records in flight that run some of ``wanted``."""
    return [
        rec for rec in shelf.records.values() if rec.in_flight and set(rec.map["keys"]) & set(wanted)
    ]


def cancel(settings: Settings, flight, spec, jobs) -> None:
    """Cancel the entry's runs in flight: this process's maps, and those a
    dead driver left running; a live other driver's are its own (a warning)."""
    from ..core.event_log import EventLog
    from ..core.pooldir import STOP, PoolDir

    with lock:
        sinks = in_flight.pop(flight, [])
    for sink in sinks:
        if sink.run is not None:
            sink.run.cancel("cancel_job() was called")
    shelf, wanted = shelf_of(settings, spec, jobs)
    for rec in in_flight_records(shelf, wanted):
        if shelf.owner_is_alive(rec.name):
            warnings.warn(
                "pypoolparty: runs of this entry also run in another live driver "
                "(record {!r}); cancel them there".format(rec.name),
                stacklevel=4,
            )
            continue
        writer = shelf.take_over(rec.name)
        if writer is None:
            continue
        pool_dir = PoolDir(rec.map["pool_dir"])
        pool_dir.mark(STOP)
        pool = pool_for(settings)
        if rec.map.get("scheduler") == pool.scheduler.name:
            try:
                pool.scheduler.cancel(sorted(pool_dir.submitted_workers()), EventLog())
            except errors.SchedulerCommandError as exc:
                logger.warning("pypoolparty: could not cancel the workers of %s: %s", rec.name, exc)
        writer.end("cancelled")


def print_output(settings: Settings, spec, jobs) -> str:
    """The end of the output of the workers of the entry's maps in flight."""
    from ..core.pooldir import PoolDir

    shelf, wanted = shelf_of(settings, spec, jobs)
    texts = []
    for rec in shelf.records.values():
        if rec.map is None or not set(rec.map["keys"]) & set(wanted):
            continue
        pool_dir = PoolDir(rec.map["pool_dir"])
        for worker in sorted(pool_dir.started_workers()):
            tail = pool_dir.tail_of_worker_log(worker).strip()
            if tail:
                texts.append("--- worker {:s} ({:s})\n{:s}".format(worker, rec.name, tail))
    text = "\n".join(texts) or "pypoolparty: no worker output of these runs is left"
    print(text)
    return text
