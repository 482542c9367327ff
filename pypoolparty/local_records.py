"""
The store records a :class:`pypoolparty.local.Pool` writes
(:mod:`.local_store`): each one's results in batches, at most one a second
and the last before the caller sees it, and a keeper thread that stores
what waited (the store's heartbeat thread shows the records' owner lives).

A record is the cluster pools' (:mod:`.core.store`); its ``map`` line names
``"scheduler": "local"`` and no work dir, so a cluster pool never adopts
it: it follows it while its driver lives and runs its jobs anew once the
driver is dead.
"""
from __future__ import annotations

import datetime
import logging
import threading
import time
import typing

from .core.store import RecordWriter, Shelf
from .core.stored_call import FLUSH_SECONDS

logger = logging.getLogger("pypoolparty")

#: What a local record names as its scheduler.
SCHEDULER = "local"
#: The keeper thread's name.
KEEPER = "pypoolparty-local-store"


class LocalRecord:
    """One record this pool writes: the results of a call's tasks (or of a
    burst of ``apply_async`` calls), stored in batches.

    Parameters
    ----------
    writer : RecordWriter
        The record's writer (this process owns the record).
    shelf : Shelf
        The shelf the record is on.
    lingers : bool
        False: the record ends with its last task, which is stored before
        the caller sees it (a call). True: it waits for more tasks and ends
        once it has had none to wait for during :data:`FLUSH_SECONDS` (a
        burst of ``apply_async`` calls, which may come one at a time).
    """

    def __init__(self, writer: RecordWriter, shelf: Shelf, lingers: bool = False):
        self.writer = writer
        self.shelf = shelf
        self.lingers = lingers
        self.lock = threading.Lock()
        self.left = 0
        self.failed = False
        self.ended = False
        self._pending: typing.Dict[str, typing.Any] = {}
        self._flushed = self._idle_since = time.monotonic()

    def expect(self, tasks: int) -> bool:
        """``tasks`` more tasks will report; False once the record ended."""
        with self.lock:
            if self.ended:
                return False
            self.left += tasks
            return True

    def task_done(self, keys: typing.Sequence[str], values: typing.Sequence, ok: bool) -> bool:
        """A task reported (its keys and values if ``ok``); stores what is
        due. True if it was the last task: the record is then ended."""
        with self.lock:
            if ok:
                for key, value in zip(keys, values):
                    if key not in self.shelf.stored:
                        self._pending.setdefault(key, value)
            else:
                self.failed = True
            self.left -= 1
            if self.left <= 0 and not self.lingers:
                self._end("failed" if self.failed else "completed")
                return True
            self._idle_since = time.monotonic()
            if time.monotonic() - self._flushed >= FLUSH_SECONDS:
                self._flush()
            return False

    def tick(self) -> bool:
        """The keeper's round: store what waited a second, end a lingering
        record that waited for nothing as long (the store's heartbeat thread
        shows the owner lives). True if the record ended."""
        with self.lock:
            now = time.monotonic()
            if self.lingers and self.left <= 0 and now - self._idle_since >= FLUSH_SECONDS:
                self._end("completed")
            if self.ended:
                return True
            if self._pending and now - self._flushed >= FLUSH_SECONDS:
                self._flush()
            return False

    def close(self) -> None:
        """The pool ended: what came is stored; tasks still out will not report."""
        with self.lock:
            self._end("completed" if self.left <= 0 and not self.failed else "cancelled")

    def _end(self, how: str) -> None:
        if self.ended:
            return
        self.ended = True
        self._flush()
        _guarded(self.writer.end, how)

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        self._flushed = time.monotonic()
        if pending and _guarded(self.writer.put, list(pending), list(pending.values())):
            _guarded(self.shelf.read_record, self.writer.name)


def _guarded(action: typing.Callable, *args) -> bool:
    """Run a store write; a failure is logged, never raised: it must not
    break the stdlib's result handler, and the caller gets its results
    anyway."""
    try:
        action(*args)
        return True
    except Exception as exc:
        logger.warning("pypoolparty: could not write to the store: %s", exc)
        return False


class LocalRecords:
    """The records a pool writes now, and their keeper thread (running
    while one is open)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: typing.Set[LocalRecord] = set()
        self._bursts: typing.Dict[str, LocalRecord] = {}
        self._keeper: typing.Optional[threading.Thread] = None
        self._wake = threading.Event()

    def open(self, shelf: Shelf, keys: typing.List[str], lingers: bool = False) -> LocalRecord:
        """A new record of the ``keys`` this pool runs now."""
        info = {
            "keys": keys,
            "scheduler": SCHEDULER,
            "created": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        with shelf.lock():
            record = LocalRecord(shelf.new_record(info), shelf, lingers)
        with self._lock:
            self._open.add(record)
            if self._keeper is None:
                self._wake.clear()
                self._keeper = threading.Thread(target=self._keep, name=KEEPER, daemon=True)
                self._keeper.start()
        return record

    def burst(self, shelf: Shelf, key: str) -> LocalRecord:
        """The record of the ``apply_async`` calls on ``shelf``, expecting
        one more (the one of ``key``); a new one if the last ended. Its
        ``keys`` name the job of the call that opened it only. Its results
        are stored a second later at most, not before the caller sees them:
        calls that come one at a time share the record and its batches."""
        with self._lock:
            record = self._bursts.get(shelf.path)
            if record is not None and record.expect(1):
                return record
        record = self.open(shelf, [key], lingers=True)
        record.expect(1)
        with self._lock:
            self._bursts[shelf.path] = record
        return record

    def task_done(self, record: LocalRecord, keys, values, ok: bool) -> None:
        """Store a task's results (before the caller sees them, if it was
        the record's last task)."""
        if record.task_done(keys, values, ok):
            with self._lock:
                self._open.discard(record)

    def shut(self) -> None:
        """The pool ended: store what came, end every record still open and
        stop the keeper."""
        with self._lock:
            records = list(self._open)
            self._open.clear()
            self._bursts.clear()
        for record in records:
            record.close()
        self._wake.set()

    def _keep(self) -> None:
        """The keeper thread: each second, store what waited; ends when no
        record is open."""
        while True:
            self._wake.wait(FLUSH_SECONDS)
            with self._lock:
                records = list(self._open)
                if not records or self._wake.is_set():
                    self._keeper = None
                    return
            ended = [record for record in records if record.tick()]
            with self._lock:
                self._open.difference_update(ended)
