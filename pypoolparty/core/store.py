"""
The persistent store (``cache_dir=``): results that outlive the driver.

Plain files on the shared filesystem, no server. The layout::

    <cache_dir>/                       mode 0700
        pypoolparty-store.json         {"format": 1}: marks the folder as a store
        <shelf>/                       one per function (its code fingerprint)
            function.json              the function's name, for people
            <record>.jsonl             one per map that ran jobs; one writer at a time
            <record>-g<g>-<n>.pickle   the values of a batch of jobs, written once by
                                       the record's writer of generation g (or .json)
            <record>.owner-<g>         who writes the record (generation g)
            .lock                      held for milliseconds while a driver plans a call

A record's lines, each one JSON object ended by a newline, appended by its
owner only::

    {"map": {"keys": [...], "work_dir": ..., "pool_dir": ..., ...}}   first
    {"stored": "<record>-g<g>-<n>.pickle", "keys": [...]}   after the batch is in place
    {"ended": "completed" | "failed" | "cancelled"}

So a reader never sees a torn entry: a batch is renamed into place before
its line is written, and a last line without its newline is being written
and is read later. A record without ``ended`` is in flight. A thread of its
owner's process touches its owner file every :data:`.store_writer.HEARTBEAT_SECONDS`; an
owner whose process is gone (same host) or whose file is older than
:data:`.store_writer.STALE_SECONDS` (another host) is dead, and another driver may take
the record over by creating the next generation's owner file (``O_EXCL``:
one wins). A writer that finds its owner file gone (it was taken for dead)
writes nothing more.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import re
import secrets
import threading
import time
import typing

from .. import errors
from . import encodings
from .store_writer import RECORD_SUFFIX, Owner, RecordWriter
from .workdir import check_private_dir, make_private_dir, write_atomic

MARK = "pypoolparty-store.json"
FORMAT = 1
LOCK = ".lock"

#: A planning lock older than this was left by a killed driver.
LOCK_STALE_SECONDS = 120.0

_OWNER = re.compile(r"^(?P<record>.+)\.owner-(?P<generation>\d+)$")


@dataclasses.dataclass
class Record:
    """A reader's view of one record."""

    name: str
    map: typing.Optional[dict] = None
    ended: typing.Optional[str] = None
    offset: int = 0
    line: int = 0
    stored: typing.List[str] = dataclasses.field(default_factory=list)
    """Keys stored in this record so far."""

    @property
    def in_flight(self) -> bool:
        return self.map is not None and self.ended is None


class Shelf:
    """The results of one function: its records and their pickles.

    Parameters
    ----------
    path : str
        The shelf's folder.
    """

    def __init__(self, path: str, encoding: str = "pickle"):
        self.path = path
        self.encoding = encoding
        self._read_lock = threading.RLock()
        self.records: typing.Dict[str, Record] = {}
        self.stored: typing.Dict[str, typing.Tuple[str, int]] = {}
        """key -> (pickle file, position in it)."""

    def join(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    # ------------------------------------------------------------ reading
    def scan(self) -> None:
        """Read what records gained since the last scan (appended bytes only)."""
        for name in sorted(os.listdir(self.path)):
            if name.endswith(RECORD_SUFFIX) and not name.startswith("."):
                self.read_record(name[: -len(RECORD_SUFFIX)])

    def read_record(self, name: str) -> Record:
        """Read the new complete lines of one record."""
        with self._read_lock:
            return self._read_record(name)

    def _read_record(self, name: str) -> Record:
        rec = self.records.setdefault(name, Record(name))
        if rec.ended is not None:
            return rec  # an ended record gets no more lines
        path = self.join(name + RECORD_SUFFIX)
        try:
            if os.stat(path).st_size == rec.offset:
                return rec
            with open(path, "rb") as f:
                f.seek(rec.offset)
                data = f.read()
        except FileNotFoundError:
            return rec
        end = data.rfind(b"\n") + 1  # a last line without newline is being written
        for raw in data[:end].split(b"\n")[:-1]:
            self._take_line(rec, raw, path, rec.line + 1)
            rec.line += 1
            rec.offset += len(raw) + 1
        return rec

    def _take_line(self, rec: Record, raw: bytes, path: str, line: int) -> None:
        try:
            entry = json.loads(raw)
            if "map" in entry:
                rec.map = dict(entry["map"])
            elif "stored" in entry:
                pickle_name = str(entry["stored"])
                keys = [str(k) for k in entry["keys"]]
                for position, key in enumerate(keys):
                    self.stored.setdefault(key, (pickle_name, position))
                rec.stored.extend(keys)
            elif "ended" in entry:
                rec.ended = str(entry["ended"])
            else:
                raise ValueError("unknown entry")
        except (ValueError, TypeError, KeyError) as exc:
            raise errors.StoreError(
                "pypoolparty: line {:d} of the store's record {!r} is not one "
                "pypoolparty wrote ({:s}). Was the file edited or copied over? "
                "Remove this record (and its .pickle files) to go on; the "
                "other results in the store are not affected.".format(line, path, str(exc))
            ) from exc

    def values(self, keys: typing.Iterable[str]) -> typing.Dict[str, typing.Any]:
        """The stored values of ``keys`` (each in :attr:`stored`).

        The keys of a batch file that was removed (as the error about a
        damaged one says to) are left out, and count as not stored from
        now on: their jobs run again.

        Raises
        ------
        StoreError
            If a batch file cannot be read.
        """
        by_file: typing.Dict[str, typing.List[typing.Tuple[str, int]]] = {}
        for key in keys:
            name, position = self.stored[key]
            by_file.setdefault(name, []).append((key, position))
        out = {}
        for name, wanted in by_file.items():
            path = self.join(name)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                for key, _ in wanted:
                    self.stored.pop(key, None)
                continue
            try:
                batch = encodings.load(data, name)
                for key, position in wanted:
                    out[key] = batch[position]
            except Exception as exc:
                raise errors.StoreError(
                    "pypoolparty: the store's file {!r} cannot be read ({:s}: {}). "
                    "It may be damaged (a full disk, a copy cut short) or not "
                    "pypoolparty's. Remove it: the results it held are then "
                    "computed again. The other results in the store are not "
                    "affected.".format(path, type(exc).__name__, exc)
                ) from exc
        return out

    def placed(self, wanted: typing.Mapping[str, typing.Sequence[int]]) -> typing.List[typing.Tuple[int, typing.Any]]:
        """``(position, value)`` of the stored ones of ``wanted`` (key ->
        the call's positions), in position order. A key not stored, or
        whose batch file was removed (see :meth:`values`), is left out and
        is not in :attr:`stored` after."""
        values = self.values([k for k in wanted if k in self.stored])
        return sorted(
            ((p, values[k]) for k, positions in wanted.items() if k in values for p in positions),
            key=lambda placed: placed[0],
        )

    def owner_of(self, name: str) -> typing.Tuple[int, typing.Optional[Owner], float]:
        """(generation, owner, age of its file in s) of record ``name``."""
        best, best_name = -1, None
        for entry in os.listdir(self.path):
            m = _OWNER.match(entry)
            if m and m.group("record") == name and int(m.group("generation")) > best:
                best, best_name = int(m.group("generation")), entry
        if best_name is None:
            return -1, None, float("inf")
        path = self.join(best_name)
        try:
            with open(path, "rt") as f:
                owner = Owner(**json.load(f))
            age = time.time() - os.stat(path).st_mtime
        except (OSError, ValueError, TypeError):
            return best, None, float("inf")
        return best, owner, age

    def owner_is_alive(self, name: str) -> bool:
        _, owner, age = self.owner_of(name)
        return owner is not None and owner.is_alive(age)

    # ------------------------------------------------------------ writing
    @contextlib.contextmanager
    def lock(self, timeout: float = 300.0) -> typing.Iterator[None]:
        """Hold the shelf's planning lock: a file made with ``O_EXCL``,
        holding a token of this holder's.

        It is held while a driver reads what records gained since its last
        look and writes a new record's first line: milliseconds (the
        caller reads the shelf once before). A lock older than
        :data:`LOCK_STALE_SECONDS` was left by a killed driver: it is
        renamed away (one waiter wins) and removed. A holder removes the
        lock only while it is still its own.
        """
        path = self.join(LOCK)
        token = secrets.token_hex(8).encode()
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                self._break_stale_lock(path)
                if time.monotonic() > deadline:
                    raise errors.StoreError(
                        "pypoolparty: the store's lock {!r} was held for {:.0f} s. "
                        "Another driver may hang while planning; remove the "
                        "file if no driver uses the store.".format(path, timeout)
                    )
                time.sleep(0.01)
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(token)
            break
        try:
            yield
        finally:
            try:
                with open(path, "rb") as f:
                    mine = f.read() == token
                if mine:
                    os.unlink(path)
            except FileNotFoundError:
                pass

    def _break_stale_lock(self, path: str) -> None:
        try:
            if time.time() - os.stat(path).st_mtime <= LOCK_STALE_SECONDS:
                return
            doomed = "{:s}.stale-{:s}".format(path, secrets.token_hex(4))
            os.rename(path, doomed)  # only one waiter's rename finds it
            os.unlink(doomed)
        except FileNotFoundError:
            pass

    def new_record(self, map_info: dict) -> "RecordWriter":
        """Start a record of a map that runs the jobs ``map_info["keys"]``."""
        name = "{:s}-{:s}".format(
            datetime.datetime.now().strftime("%Y%m%d-%H%M%S"), secrets.token_hex(4)
        )
        writer = RecordWriter(self, name, 0)
        if not writer.take_ownership():
            raise errors.StoreError("pypoolparty: record {!r} exists already".format(name))
        writer.append({"map": map_info})
        self.read_record(name)
        return writer

    def take_over(self, name: str) -> typing.Optional["RecordWriter"]:
        """Become the writer of a record whose owner died; None if another
        driver took it first."""
        generation, _, _ = self.owner_of(name)
        writer = RecordWriter(self, name, generation + 1)
        if not writer.take_ownership():
            return None
        for older in range(generation + 1):
            try:
                os.unlink(self.join("{:s}.owner-{:d}".format(name, older)))
            except FileNotFoundError:
                pass
        return writer


class Store:
    """A store folder.

    Parameters
    ----------
    path : str
        The folder; made if missing. An existing folder must be empty or a
        store.
    encoding : str
        How new results are written: ``"pickle"`` or ``"json"``
        (:mod:`.encodings`); a store holds and reads both.

    Raises
    ------
    StoreError
        If the folder holds other things than a store.
    WorkDirError
        If another user could change what is in it.
    """

    def __init__(self, path: str, encoding: str = "pickle"):
        self.path = os.path.abspath(path)
        self.encoding = encodings.check(encoding)
        make_private_dir(self.path)
        mark = os.path.join(self.path, MARK)
        if not os.path.exists(mark):
            # (another driver may make the same new store at this moment)
            foreign = [n for n in os.listdir(self.path) if not n.startswith(".") and n != MARK]
            if foreign:
                raise errors.StoreError(
                    "pypoolparty: cache_dir {!r} is not a pypoolparty store: it "
                    "holds {:s} and no {:s}. Pass cache_dir= a new or empty "
                    "folder; nothing in this one was changed.".format(
                        self.path, ", ".join(sorted(foreign)[:5]), MARK
                    )
                )
            write_atomic(mark, json.dumps({"format": FORMAT}).encode())
        try:
            with open(mark, "rt") as f:
                fmt = json.load(f)["format"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise errors.StoreError(
                "pypoolparty: {!r} is damaged ({}); it marks a store. Restore "
                "it as {{\"format\": {:d}}} or pass a new cache_dir=.".format(mark, exc, FORMAT)
            ) from exc
        if fmt != FORMAT:
            raise errors.StoreError(
                "pypoolparty: the store {!r} has format {!r}; this pypoolparty "
                "reads format {:d}. Use the pypoolparty that wrote it, or a new "
                "cache_dir=.".format(self.path, fmt, FORMAT)
            )
        self._shelves: typing.Dict[str, Shelf] = {}

    def shelf(self, fingerprint: str, name: str) -> Shelf:
        """The shelf of a function, made on first use."""
        key = fingerprint[:24]
        if key not in self._shelves:
            path = os.path.join(self.path, key)
            if not os.path.isdir(path):
                os.makedirs(path, mode=0o700, exist_ok=True)
                write_atomic(
                    os.path.join(path, "function.json"),
                    json.dumps({"name": name, "fingerprint": fingerprint}).encode(),
                )
            check_private_dir(path)
            self._shelves[key] = Shelf(path, self.encoding)
        return self._shelves[key]
