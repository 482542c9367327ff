"""
The persistent store (``cache_dir=``) of :class:`pypoolparty.local.Pool`.

Same store, same keys as the cluster pools (:mod:`.core.store`,
:func:`.core.keys.call_keys`): what a laptop stored, a cluster pool
reads, and the other way round. The stdlib still does all the running; this
layer only decides what to send it and keeps what comes back::

    call ──> keys ──> stored? ──yes──> delivered at once (the caller's thread)
                         │
                         no: one record for the call, then per chunk
                         │
              stdlib apply_async(mapstar, (func, missing jobs of the chunk))
                         │  (result handler thread)
                         v
              record (local_records): batches ──> store (at most every second,
                         │                        and before the last result)
                         v
              the stdlib's own result object (MapResult, IMapIterator, ...)

The chunks are the stdlib's: ``chunksize`` (or the stdlib's default) cuts the
whole call, and a chunk sends only its jobs that are not stored. A call
with nothing stored sends exactly the stdlib's tasks, and its results and
errors arrive where and as the stdlib's would: this module fills the
stdlib's result classes (``MapResult``, ``IMapIterator``,
``IMapUnorderedIterator``, ``ApplyResult``) by their ``_set`` and
``_set_length``, as the stdlib's result handler does. That ties it to
those private methods (stable since Python 3.8) in exchange for the
stdlib's exact semantics of ``get``, ``wait``, ``next(timeout)``,
callbacks, and of a failing chunk.

Where a store departs from the stdlib:

* ``imap`` and ``imap_unordered`` read the whole iterable first (the keys
  say what is stored); an iterable that raises ends the call there, as in
  the stdlib.
* What is stored is delivered in the caller's thread, so the callback of
  a call that is stored entirely runs there, not in the pool's thread.
* A job that raises is not stored; it runs again next time.
* A map's (or imap's) last result is stored before the caller gets it;
  an ``apply_async`` result a second later at most, so that calls made one
  at a time share their records and batches.

Another driver on the same store is never waited for: what is not stored
runs here (the cluster pools follow a live driver's record instead, and do
follow a local pool's). Two drivers that run a job at once both store it;
readers take the first. A local driver that is killed loses the results it
had not stored yet (at most about a second's worth); its workers finish
the task they hold, cannot deliver it and exit. Resuming with the workers
still running is for the cluster pools (and ``pypoolparty.processes``).
"""
from __future__ import annotations

import dataclasses
import functools
import multiprocessing.pool
import typing

from . import errors
from .core import keys
from .core.calling import CallSpec, CallStyle
from .core.store import Store
from .local_records import LocalRecord, LocalRecords


def _reraise(exc: BaseException):
    """A task that raises what stopped the caller's iterable."""
    raise exc


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One of the stdlib's chunks of a call that has jobs to run."""

    index: int
    positions: range
    missing: typing.List[int]


@dataclasses.dataclass
class Planned:
    """A call against the store: each position's key, what is stored, and
    the record of what is not (None if everything is stored)."""

    keys: typing.List[str]
    values: typing.Dict[int, typing.Any]
    record: typing.Optional[LocalRecord]


class LocalStore:
    """The store side of one :class:`pypoolparty.local.Pool`.

    Parameters
    ----------
    path : str
        The store's folder (``cache_dir``).

    Raises
    ------
    StoreError, WorkDirError
        As :class:`~pypoolparty.core.store.Store`.
    """

    def __init__(self, path: str):
        self.store = Store(path)
        self.records = LocalRecords()

    # ------------------------------------------------------------ calls
    def map_async(
        self,
        pool: multiprocessing.pool.Pool,
        carried: typing.Callable,
        func: typing.Callable,
        jobs: list,
        chunksize: typing.Optional[int],
        star: bool,
        callback: typing.Optional[typing.Callable] = None,
        error_callback: typing.Optional[typing.Callable] = None,
    ) -> multiprocessing.pool.MapResult:
        """``map_async`` (``star``: ``starmap_async``) of ``jobs`` on
        ``pool``; ``carried`` is ``func`` as the workers get it.

        Raises NotPicklableError or StoreError before any task is sent.
        """
        planned = self._plan(func, CallStyle.STAR if star else CallStyle.ONE, jobs)
        if planned is None:
            stdlib = multiprocessing.pool.Pool
            start = stdlib.starmap_async if star else stdlib.map_async
            return start(pool, carried, jobs, chunksize, callback, error_callback)
        if chunksize is None:
            chunksize, extra = divmod(len(jobs), len(pool._pool) * 4)
            chunksize += bool(extra)
        if not jobs:
            chunksize = 0
        result = multiprocessing.pool.MapResult(pool, chunksize, len(jobs), callback, error_callback)
        mapper = multiprocessing.pool.starmapstar if star else multiprocessing.pool.mapstar
        task_of = functools.partial(_chunk_call, mapper, carried)
        self._run(pool, planned, jobs, chunksize, result._set, task_of)
        return result

    def imap(
        self,
        pool: multiprocessing.pool.Pool,
        carried: typing.Callable,
        func: typing.Callable,
        jobs: list,
        stop: typing.Optional[BaseException],
        chunksize: int,
        ordered: bool,
    ) -> typing.Iterator:
        """``imap`` (not ``ordered``: ``imap_unordered``) of ``jobs``;
        ``stop`` is what stopped the caller's iterable, raised after them."""
        if stop is not None:
            # The stdlib reads the iterable chunk by chunk: the jobs of the
            # chunk that the error cut short are never sent.
            jobs = jobs[: len(jobs) - len(jobs) % chunksize]
        planned = self._plan(func, CallStyle.ONE, jobs)
        if ordered:
            result = multiprocessing.pool.IMapIterator(pool)
        else:
            result = multiprocessing.pool.IMapUnorderedIterator(pool)
        if chunksize == 1:
            task_of = functools.partial(_one_call, carried)
        else:
            task_of = functools.partial(_chunk_call, multiprocessing.pool.mapstar, carried)
        self._run(pool, planned, jobs, chunksize, result._set, task_of, single=chunksize == 1)
        length = -(-len(jobs) // chunksize)
        if stop is not None:
            failure = functools.partial(_failure, result._set, length)
            multiprocessing.pool.Pool.apply_async(pool, _reraise, (stop,), error_callback=failure)
            length += 1
        result._set_length(length)
        if chunksize == 1:
            return result
        return (item for chunk in result for item in chunk)

    def apply_async(
        self,
        pool: multiprocessing.pool.Pool,
        carried: typing.Callable,
        func: typing.Callable,
        args: typing.Sequence,
        kwds: typing.Mapping,
        callback: typing.Optional[typing.Callable] = None,
        error_callback: typing.Optional[typing.Callable] = None,
    ) -> multiprocessing.pool.ApplyResult:
        """``apply_async``. Calls that overlap in time share one record (see
        :meth:`.LocalRecords.burst`)."""
        try:
            job = (0, tuple(args), dict(kwds))
        except TypeError:  # the stdlib's worker will say what is wrong
            stdlib = multiprocessing.pool.Pool
            return stdlib.apply_async(pool, carried, args, kwds, callback, error_callback)
        spec = CallSpec(funcs=(func,), style=CallStyle.APPLY)
        ((code, name, wanted),) = keys.call_keys(spec, [job])
        (key,) = wanted
        shelf = self.store.shelf(code, name)
        shelf.scan()
        placed = shelf.placed(wanted)
        if placed:
            result = multiprocessing.pool.ApplyResult(pool, callback, error_callback)
            result._set(0, (True, placed[0][1]))
            return result
        record = self.records.burst(shelf, key)

        def done(value):
            self.records.task_done(record, [key], [value], True)
            if callback is not None:
                callback(value)

        def failed(exc):
            self.records.task_done(record, [], [], False)
            if error_callback is not None:
                error_callback(exc)

        return multiprocessing.pool.Pool.apply_async(pool, carried, args, kwds, done, failed)

    # --------------------------------------------------------- internals
    def _plan(self, func, style: CallStyle, jobs: list) -> typing.Optional[Planned]:
        """Each job's key, the stored values, and a record of the rest.
        None if a job is not a call (a starmap job that is not a sequence):
        the stdlib then runs the call, without the store, and fails it.

        Raises NotPicklableError (func or a job) and StoreError before any
        task is sent.
        """
        if not jobs:
            return Planned([], {}, None)
        try:
            groups = keys.call_keys(CallSpec(funcs=(func,), style=style), jobs)
        except errors.NotPicklableError:
            raise
        except TypeError:
            return None
        ((code, name, wanted),) = groups
        key_of: typing.List[str] = [""] * len(jobs)
        for key, positions in wanted.items():
            for position in positions:
                key_of[position] = key
        shelf = self.store.shelf(code, name)
        shelf.scan()
        values = dict(shelf.placed(wanted))
        missing = [k for k in wanted if k not in shelf.stored]
        record = self.records.open(shelf, missing) if missing else None
        return Planned(key_of, values, record)

    def _run(
        self,
        pool: multiprocessing.pool.Pool,
        planned: Planned,
        jobs: list,
        chunksize: int,
        deliver: typing.Callable,
        task_of: typing.Callable,
        single: bool = False,
    ) -> None:
        """Deliver the stored chunks, then send the stdlib a task for each
        other chunk: ``task_of(its jobs that are not stored)``. ``single``:
        chunks of one job whose result is not a list (``imap``'s default)."""
        todo = []
        for index, start in enumerate(range(0, len(jobs), chunksize or 1)):
            positions = range(start, min(start + chunksize, len(jobs)))
            missing = [p for p in positions if p not in planned.values]
            if missing:
                todo.append(Chunk(index, positions, missing))
            elif single:
                deliver(index, (True, planned.values[start]))
            else:
                deliver(index, (True, [planned.values[p] for p in positions]))
        if not todo:
            return
        planned.record.expect(len(todo))
        for chunk in todo:
            func, args = task_of(tuple(jobs[p] for p in chunk.missing))
            multiprocessing.pool.Pool.apply_async(
                pool,
                func,
                args,
                callback=functools.partial(self._chunk_done, planned, chunk, deliver, single),
                error_callback=functools.partial(self._chunk_failed, planned, chunk, deliver),
            )

    def _chunk_done(self, planned: Planned, chunk: Chunk, deliver, single: bool, value) -> None:
        computed = [value] if single else value
        done = [planned.keys[p] for p in chunk.missing]
        self.records.task_done(planned.record, done, computed, True)
        if single:
            deliver(chunk.index, (True, value))
            return
        computed_at = dict(zip(chunk.missing, computed))
        merged = [computed_at[p] if p in computed_at else planned.values[p] for p in chunk.positions]
        deliver(chunk.index, (True, merged))

    def _chunk_failed(self, planned: Planned, chunk: Chunk, deliver, exc: BaseException) -> None:
        self.records.task_done(planned.record, [], [], False)
        deliver(chunk.index, (False, exc))


def _failure(deliver: typing.Callable, index: int, exc: BaseException) -> None:
    deliver(index, (False, exc))


def _one_call(func: typing.Callable, jobs: tuple) -> tuple:
    """The stdlib's task of one ``imap`` job: ``func(job)``."""
    return func, jobs


def _chunk_call(mapper: typing.Callable, func: typing.Callable, jobs: tuple) -> tuple:
    """The stdlib's task of a chunk: ``mapper((func, jobs))`` (``mapstar``
    or ``starmapstar``)."""
    return mapper, ((func, jobs),)
