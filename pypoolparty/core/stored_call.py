"""
A call (a map, an imap, a burst of apply_async) on a pool with a store.

Each job's key says what it computes (:mod:`.fingerprint`). The call is cut
into parts by what the store knows of each key:

* stored: delivered at once, no scheduler call;
* in flight in a record whose driver lives (another driver runs the same
  jobs now): followed, read from the store as that driver stores them;
* in flight in a record whose driver died: adopted. The dead driver's map
  dir is opened to this pool's workers, its workers (still running: a
  driver with a store leaves them to finish) are watched as this pool's
  own, and what they finished meanwhile is collected;
* the rest: one new map, with a record of its own.

A part that ends without all its keys (the other driver failed, or died)
hands what is missing back to the plan. The caller sees one result, in the
call's order, as without a store.
"""
from __future__ import annotations

import logging
import threading
import time
import typing

from .. import errors
from .calling import CallSpec
from .results import Cancellable, Pair
from .store import RecordWriter, Shelf

logger = logging.getLogger("pypoolparty")

#: A part stores its results at most this often (and when it ends).
FLUSH_SECONDS = 1.0
#: A followed record is read at most this often.
FOLLOW_SECONDS = 0.5
#: ... and its owner's life checked at most this often.
OWNER_CHECK_SECONDS = 5.0


class Assembly(Cancellable):
    """The caller's result, fed by the call's parts in the call's job order.

    Parameters
    ----------
    sink : ResultSink
        What the caller holds (a MapResult, an imap iterator, an apply batch).
    num_jobs : int
        Jobs in the call.
    """

    def __init__(self, sink, num_jobs: int):
        self.sink = sink
        self.num_jobs = num_jobs
        self.delivered = 0
        self.parts: typing.List[typing.Any] = []
        self.ended = False
        self.lock = threading.RLock()
        sink.run = self

    def deliver(self, positions: typing.Sequence[int], pairs: typing.Sequence[Pair]) -> None:
        """Pass results on, as runs of consecutive positions."""
        with self.lock:
            if self.ended:
                return
            start = 0
            for i in range(1, len(positions) + 1):
                if i == len(positions) or positions[i] != positions[i - 1] + 1:
                    self.sink.chunk_done(0, positions[start], list(pairs[start:i]))
                    start = i
            self.delivered += len(positions)
            if self.delivered >= self.num_jobs:
                self.ended = True
                self.sink.completed()

    def fail(self, exc: BaseException) -> None:
        """A part failed: the call fails, and its other parts stop."""
        with self.lock:
            if self.ended:
                return
            self.ended = True
            self.sink.failed(exc)
            parts = list(self.parts)
        for part in parts:
            part.cancel("another part of its call failed")

    def flush(self) -> None:
        """Store what the parts hold now (a reader of the store is next)."""
        with self.lock:
            parts = list(self.parts)
        for part in parts:
            if isinstance(part, PartSink):
                part.flush()

    def cancel(self, reason: str) -> None:
        """The caller gave up: stop every part."""
        with self.lock:
            parts = list(self.parts)
        for part in parts:
            part.cancel(reason)
        self.fail(errors.CancelledError("pypoolparty: " + reason))

    @property
    def active(self) -> bool:
        return not self.ended


class PartSink:
    """One map of the call: places its results in the call and stores them.

    Parameters
    ----------
    assembly : Assembly
        The call.
    keys : list of str
        The key of each job of the map.
    targets : list of list of int
        For each job of the map, the call's positions it fills (none for a
        job of an adopted map that this call does not need).
    writer : RecordWriter
        Stores the results.
    shelf : Shelf
        Keys stored already are not stored again.
    on_end : callable or None
        Called once when the map ended.
    """

    run = None

    def __init__(
        self,
        assembly: Assembly,
        keys: typing.List[str],
        targets: typing.List[typing.List[int]],
        writer: RecordWriter,
        shelf: Shelf,
        on_end: typing.Optional[typing.Callable[[], None]] = None,
    ):
        self.assembly = assembly
        self.keys = keys
        self.targets = targets
        self.writer = writer
        self.shelf = shelf
        self.on_end = on_end
        self._pending: typing.List[typing.Tuple[str, typing.Any]] = []
        self._flushed = time.monotonic()
        self._left = len(keys)
        self._lock = threading.RLock()  # the supervisor's thread, and a caller's flush

    def chunk_done(self, chunk: int, first_job: int, results: typing.List[Pair]) -> None:
        positions, pairs = [], []
        with self._lock:
            self._hold(first_job, results)
            for i, pair in enumerate(results):
                for position in self.targets[first_job + i]:
                    positions.append(position)
                    pairs.append(pair)
            self._left -= len(results)
            if self._left <= 0 or time.monotonic() - self._flushed >= FLUSH_SECONDS:
                self.flush()  # before the caller sees the last result
        self.assembly.deliver(positions, pairs)  # also if the store failed

    def keep(self, chunk: int, first_job: int, results: typing.List[Pair]) -> None:
        """Results of a map that ended early: stored, not delivered."""
        with self._lock:
            self._hold(first_job, results)

    def _hold(self, first_job: int, results: typing.List[Pair]) -> None:
        for i, (ok, value) in enumerate(results):
            if ok and self.keys[first_job + i] not in self.shelf.stored:
                self._pending.append((self.keys[first_job + i], value))

    def flush(self) -> None:
        """Store what came since the last flush.

        A store that cannot be written (a full disk, a quota, lost
        ownership) is logged, not raised: the caller still gets the
        results, and they are tried again at the next flush.
        """
        with self._lock:
            if not self._pending:
                return
            self._flushed = time.monotonic()
            try:
                self.writer.put([k for k, _ in self._pending], [v for _, v in self._pending])
                self.shelf.read_record(self.writer.name)
            except (OSError, errors.StoreError) as exc:
                logger.warning("pypoolparty: could not store results in %s: %s", self.shelf.path, exc)
                return
            self._pending = []

    def completed(self) -> None:
        self._end("completed")

    def failed(self, exc: BaseException) -> None:
        try:
            self._end("cancelled" if isinstance(exc, errors.CancelledError) else "failed")
        finally:
            self.assembly.fail(exc)

    def _end(self, how: str) -> None:
        self.flush()
        try:
            self.writer.end(how)
        except (OSError, errors.StoreError) as exc:
            logger.warning("pypoolparty: could not write to the store %s: %s", self.shelf.path, exc)
        if self.on_end is not None:
            self.on_end()

    def cancel(self, reason: str) -> None:
        if self.run is not None:
            self.run.cancel(reason)


class Follow:
    """Waits for the keys another, live driver is computing now.

    Driven by the pool's supervisor like a map; it needs no workers.
    """

    def __init__(self, call: "StoredCall", record: str, wanted: typing.Dict[str, typing.List[int]]):
        self.call = call
        self.record = record
        self.wanted = dict(wanted)
        self.fleet = call.hooks.fleet()
        self.log = self.fleet.log
        self.started = time.monotonic()
        self.active = True
        self._read = 0.0
        self._owner_checked = time.monotonic()
        self.lock = threading.RLock()

    def collect(self) -> bool:
        with self.lock:
            now = time.monotonic()
            if not self.active or now - self._read < FOLLOW_SECONDS:
                return False
            self._read = now
            shelf = self.call.shelf
            rec = shelf.read_record(self.record)
            ready = [k for k in self.wanted if k in shelf.stored]
            if ready:
                self.call.deliver_stored({k: self.wanted.pop(k) for k in ready})
            if not self.wanted:
                self.active = False
                return True
            owner_gone = False
            if now - self._owner_checked >= OWNER_CHECK_SECONDS:
                self._owner_checked = now
                owner_gone = not shelf.owner_is_alive(self.record)
            if rec.ended is not None or owner_gone:
                self.active = False
                self.call.plan(self.wanted)
            return bool(ready) or not self.active

    def unfinished(self) -> int:
        return 0

    def unclaimed(self) -> int:
        return 0

    def after_workers_ended(self) -> None:
        pass

    def cancel_if_asked(self) -> bool:
        return False  # the followed map's own driver reads its cancel note

    def give_up(self, in_a_row: int, worker_ids: typing.List[str]) -> None:
        pass

    def fail(self, exc: BaseException) -> None:
        self.active = False
        self.call.assembly.fail(exc)

    def cancel(self, reason: str = "cancelled") -> None:
        self.active = False
        self.call.assembly.fail(errors.CancelledError("pypoolparty: " + reason))


class PoolSide(typing.Protocol):
    """What a stored call needs of its pool (:class:`~.launcher.Launcher`)."""

    def fleet(self) -> typing.Any:
        """The pool's workers (made with its folder)."""

    def new_map_dir(self) -> typing.Any:
        """A new map folder in the pool's folder."""

    def map_info(self, work_dir: typing.Any) -> dict:
        """What a record says of a map, for a driver that adopts it."""

    def start_map(self, spec: CallSpec, jobs: list, chunksize: typing.Optional[int], sink: typing.Any, work_dir: typing.Any) -> None:
        """Write a map's inputs and run it."""

    def adopt_map(self, info: dict, sink: typing.Any, stop_on_failure: bool) -> bool:
        """Run a dead driver's map with its workers; False if it cannot."""

    def follow(self, part: "Follow") -> None:
        """Have the supervisor drive a part that waits for another driver."""


class StoredCall:
    """Plans one call against the store and starts its parts.

    Parameters
    ----------
    hooks : PoolSide
        The pool's side.
    shelf : Shelf
        The store's shelf of the call's function.
    spec, jobs, chunksize
        The call.
    assembly : Assembly
        Where results go.
    run_missing : bool or container of int
        Run the jobs that are neither stored nor in flight: all (True),
        none (False: only collect, as a reader of the store wants; a dead
        driver's map is still adopted, so that what its workers finish gets
        stored), or those at these positions of the call.
    """

    def __init__(
        self,
        hooks: PoolSide,
        shelf: Shelf,
        spec: CallSpec,
        jobs: list,
        chunksize: typing.Optional[int],
        assembly: Assembly,
        run_missing: typing.Union[bool, typing.Container[int]] = True,
    ):
        self.run_missing = run_missing
        self.hooks = hooks
        self.shelf = shelf
        self.spec = spec
        self.jobs = jobs
        self.chunksize = chunksize
        self.assembly = assembly

    def deliver_stored(self, wanted: typing.Dict[str, typing.List[int]]) -> None:
        """Deliver stored keys to their positions; plan again those whose
        batch file was removed."""
        placed = self.shelf.placed(wanted)
        self.assembly.deliver([p for p, _ in placed], [(True, v) for _, v in placed])
        gone = {k: ps for k, ps in wanted.items() if k not in self.shelf.stored}
        if gone:
            self.plan(gone)

    def plan(self, wanted: typing.Dict[str, typing.List[int]]) -> None:
        """Start the parts that produce ``wanted`` (key -> the call's positions)."""
        wanted = dict(wanted)
        starts: typing.List[typing.Callable[[], None]] = []
        self.shelf.scan()  # the bulk of the reading, before the lock
        with self.shelf.lock():
            self.shelf.scan()
            stored = {k: wanted.pop(k) for k in list(wanted) if k in self.shelf.stored}
            for rec in list(self.shelf.records.values()):
                if not wanted or not rec.in_flight:
                    continue
                mine = {k: wanted.pop(k) for k in set(rec.map["keys"]) if k in wanted}
                if not mine:
                    continue
                writer = None
                if not self.shelf.owner_is_alive(rec.name):
                    writer = self.shelf.take_over(rec.name)
                if writer is None:  # its driver lives, or another adopted it just now
                    follow = Follow(self, rec.name, mine)
                    self.assembly.parts.append(follow)
                    starts.append(lambda f=follow: self.hooks.follow(f))
                    continue
                starts.append(lambda r=rec, w=writer, m=mine: self._adopt(r, w, m))
            if self.run_missing is not True:
                allowed = self.run_missing or ()
                wanted = {k: ps for k, ps in wanted.items() if any(p in allowed for p in ps)}
            if wanted:
                starts.append(self._new_map(wanted))
        if stored:
            # Not in the caller's thread: a callback runs where the stdlib
            # runs it, apart from the caller (and after map_async returned).
            delivery = threading.Thread(
                target=self._deliver_or_fail, args=(stored,), name="pypoolparty-stored", daemon=True
            )
            delivery.start()
        for start in starts:
            start()

    def _deliver_or_fail(self, wanted: typing.Dict[str, typing.List[int]]) -> None:
        try:
            self.deliver_stored(wanted)
        except Exception as exc:  # a damaged store file: the call fails with it
            self.assembly.fail(exc)

    def _new_map(self, wanted: typing.Dict[str, typing.List[int]]) -> typing.Callable[[], None]:
        """Record a new map of the ``wanted`` keys (under the lock); return
        what starts it (after the lock)."""
        keys = sorted(wanted, key=lambda k: wanted[k][0])
        work_dir = self.hooks.new_map_dir()
        info = dict(self.hooks.map_info(work_dir), keys=keys, stop_on_failure=self.spec.stop_on_failure)
        writer = self.shelf.new_record(info)
        sink = PartSink(self.assembly, keys, [wanted[k] for k in keys], writer, self.shelf)
        self.assembly.parts.append(sink)
        jobs = [self.jobs[wanted[k][0]] for k in keys]

        def start() -> None:
            try:
                self.hooks.start_map(self.spec, jobs, self.chunksize, sink, work_dir)
            except Exception as exc:
                sink.failed(exc)

        return start

    def _adopt(self, rec, writer: RecordWriter, mine: typing.Dict[str, typing.List[int]]) -> None:
        """Take over a dead driver's map; what it cannot give runs anew."""
        keys = [str(k) for k in rec.map["keys"]]
        sink = PartSink(
            self.assembly, keys, [mine.get(k, []) for k in keys], writer, self.shelf
        )
        self.assembly.parts.append(sink)
        try:
            # A map stops a chunk at its first failure, imap and apply do
            # not: a map of the other kind cannot give this call its results.
            same_kind = rec.map.get("stop_on_failure", True) == self.spec.stop_on_failure
            adopted = same_kind and self.hooks.adopt_map(rec.map, sink, self.spec.stop_on_failure)
        except Exception as exc:  # a record or folder not as expected
            logger.warning("pypoolparty: could not adopt %s: %r", rec.name, exc)
            adopted = False
        if not adopted:
            self.assembly.parts.remove(sink)
            _salvage(rec.map, keys, writer)
            self.plan(mine)


def _salvage(info: dict, keys: typing.List[str], writer: RecordWriter) -> None:
    """A dead driver's map this call cannot adopt: store what its workers
    finished, close it to them, and end its record."""
    from . import outcomes
    from .pooldir import PoolDir
    from .workdir import WorkDir

    try:
        work_dir = WorkDir(info["work_dir"])
        PoolDir(info["pool_dir"]).close_map(work_dir)
        starts = work_dir.read_manifest().chunk_starts
        done_keys, values = [], []
        for chunk in sorted(work_dir.finished_chunks()):
            result = outcomes.decode(work_dir.read_result(chunk))
            for job, outcome in zip(range(starts[chunk], starts[chunk + 1]), result.outcomes):
                if outcome.ok and keys[job] not in writer.shelf.stored:
                    done_keys.append(keys[job])
                    values.append(outcome.value)
        writer.put(done_keys, values)
    except Exception as exc:  # gone, or never written: nothing to keep
        logger.info("pypoolparty: nothing kept of %s: %r", info.get("work_dir"), exc)
    try:
        writer.end("abandoned")
        writer.shelf.read_record(writer.name)
    except (OSError, errors.StoreError) as exc:
        logger.warning("pypoolparty: could not end the record %s: %s", writer.name, exc)
