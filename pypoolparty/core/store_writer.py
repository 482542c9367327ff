"""
The writer's side of the store (:mod:`.store`): who owns a record, the
record's writer, and the thread that shows an owner lives.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time
import typing
import weakref

from .. import errors
from . import encodings
from .workdir import write_atomic

if typing.TYPE_CHECKING:
    from .store import Shelf

RECORD_SUFFIX = ".jsonl"
#: An owner refreshes its owner file this often while its map runs ...
HEARTBEAT_SECONDS = 10.0
#: ... and counts as dead (seen from another host) once it is this old.
STALE_SECONDS = 60.0


def _process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot), or "" if unknown."""
    try:
        with open("/proc/{:d}/stat".format(pid), "rt") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


@dataclasses.dataclass(frozen=True)
class Owner:
    """The driver process that writes a record."""

    host: str
    pid: int
    started: str

    @classmethod
    def this_process(cls) -> "Owner":
        return cls(socket.gethostname(), os.getpid(), _process_start(os.getpid()))

    def is_alive(self, age: float) -> bool:
        """Alive, judged by its process on this host, else by the ``age`` of
        its owner file."""
        if self.host != socket.gethostname():
            return age < STALE_SECONDS
        if self.started and _process_start(self.pid) != self.started:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


class RecordWriter:
    """The owner's side of a record: it stores results and ends it."""

    def __init__(self, shelf: Shelf, name: str, generation: int):
        self.shelf = shelf
        self.encoding = shelf.encoding
        self.name = name
        self.generation = generation
        self._batches = 0
        self.ended = False

    @property
    def owner_path(self) -> str:
        return self.shelf.join("{:s}.owner-{:d}".format(self.name, self.generation))

    def take_ownership(self) -> bool:
        """Become the record's writer, unless another driver did first."""
        try:
            fd = os.open(self.owner_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wt") as f:
            json.dump(dataclasses.asdict(Owner.this_process()), f)
        _HEARTBEAT.add(self)
        return True

    def append(self, entry: dict) -> None:
        """Add a line, as long as this driver still owns the record.

        Raises
        ------
        StoreError
            If another driver took the record over.
        """
        if not os.path.exists(self.owner_path):
            raise errors.StoreError(
                "pypoolparty: another driver took over the store's record {!r}: "
                "this one looked dead to it (no sign of life for {:.0f} s: a "
                "suspended process, a stalled filesystem, clocks apart). This "
                "driver stores nothing more of that map.".format(
                    self.shelf.join(self.name + RECORD_SUFFIX), STALE_SECONDS
                )
            )
        line = (json.dumps(entry) + "\n").encode()
        fd = os.open(
            self.shelf.join(self.name + RECORD_SUFFIX),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o600,
        )
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def put(self, keys: typing.Sequence[str], values: typing.Sequence[typing.Any]) -> None:
        """Store a batch of results: the pickle first, then its line."""
        if not keys:
            return
        self._batches += 1
        data, suffix = encodings.dump(list(values), self.encoding)
        file_name = "{:s}-g{:d}-{:d}{:s}".format(self.name, self.generation, self._batches, suffix)
        write_atomic(self.shelf.join(file_name), data)
        self.append({"stored": file_name, "keys": list(keys)})

    def end(self, how: str) -> None:
        """The map ended: the record is complete, its owner file goes."""
        self.ended = True
        self.append({"ended": how})
        try:
            os.unlink(self.owner_path)
        except FileNotFoundError:
            pass

    def heartbeat(self) -> None:
        """Show that the owner lives (its owner file's time)."""
        if not self.ended:
            try:
                os.utime(self.owner_path)
            except OSError:
                pass


class _Heartbeat:
    """One thread per process that refreshes the owner files of the records
    this process writes, every HEARTBEAT_SECONDS, whatever its pools do (a
    scheduler call that hangs must not make it look dead)."""

    def __init__(self):
        self._writers: "weakref.WeakSet[RecordWriter]" = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: typing.Optional[threading.Thread] = None

    def add(self, writer: RecordWriter) -> None:
        with self._lock:
            self._writers.add(writer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat, name="pypoolparty-store-heartbeat", daemon=True)
                self._thread.start()

    def _beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            with self._lock:
                writers = [w for w in self._writers if not w.ended]
            for writer in writers:
                writer.heartbeat()


_HEARTBEAT = _Heartbeat()
