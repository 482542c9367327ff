"""
The objects a pool hands back, fed by the core as chunks arrive.

* :class:`MapResult` -- ``map_async``/``starmap_async``: a list when all is in;
* :class:`IMapIterator` -- ``imap`` (in order) and ``imap_unordered``.

Each is a :class:`ResultSink`; so is
:class:`~pypoolparty.core.applies.ApplyBatch`.
"""
from __future__ import annotations

import collections
import multiprocessing
import threading
import time
import typing

from .async_result import AsyncResult

Pair = typing.Tuple[bool, typing.Any]


class ResultSink(typing.Protocol):
    """Where a map's results go (a map's AsyncResult, an imap iterator, ...).

    ``chunk_done`` gets, for each job of the chunk in order, ``(True, value)``
    or ``(False, exception)``; the exception carries the remote traceback as
    its ``__cause__``.
    """

    def chunk_done(
        self, chunk: int, first_job: int, results: typing.List[Pair]
    ) -> None:
        ...

    def completed(self) -> None:
        ...

    def failed(self, exc: BaseException) -> None:
        ...


class Cancellable:
    """Knows the map behind it, to cancel it when the caller gives up."""

    run = None  # the MapRun, set once it exists

    def abandon(self) -> None:
        """The caller gave up waiting: cancel the map behind this."""
        if self.run is not None:
            self.run.cancel("the caller stopped waiting (interrupt or exception)")


class MapResult(AsyncResult, Cancellable):
    """The AsyncResult of ``map_async``: a list once every chunk is in."""

    def __init__(self, num_jobs: int, callback=None, error_callback=None):
        AsyncResult.__init__(self, callback, error_callback, on_abandon=self.abandon)
        self._values: typing.List[typing.Any] = [None] * num_jobs

    def chunk_done(self, chunk: int, first_job: int, results: typing.List[Pair]) -> None:
        for ok, value in results:
            if not ok:
                self.set_exception(value)
                return
        self._values[first_job : first_job + len(results)] = [v for _, v in results]

    def completed(self) -> None:
        self.set_result(self._values)

    def failed(self, exc: BaseException) -> None:
        self.set_exception(exc)


class IMapIterator(Cancellable):
    """The iterator of ``imap`` (ordered) and ``imap_unordered``.

    ``next(timeout)`` raises :class:`multiprocessing.TimeoutError` if nothing
    arrived in time. A job's exception is raised at its place; iterating
    further goes on with the next results, as in the stdlib. An exception
    of the job iterable is raised after the results of the jobs before it.
    """

    def __init__(
        self,
        num_jobs: int,
        ordered: bool,
        iterable_error: typing.Optional[BaseException] = None,
    ):
        self._cond = threading.Condition()
        self._num_jobs = num_jobs
        self._ordered = ordered
        self._iterable_error = iterable_error
        self._items: typing.Dict[int, Pair] = {}
        self._arrived: typing.Deque[Pair] = collections.deque()
        self._next_index = 0
        self._yielded = 0
        self._error: typing.Optional[BaseException] = None

    # ResultSink
    def chunk_done(self, chunk: int, first_job: int, results: typing.List[Pair]) -> None:
        with self._cond:
            for i, pair in enumerate(results):
                if self._ordered:
                    self._items[first_job + i] = pair
                else:
                    self._arrived.append(pair)
            self._cond.notify_all()

    def completed(self) -> None:
        pass

    def failed(self, exc: BaseException) -> None:
        with self._cond:
            self._error = exc
            self._cond.notify_all()

    # iterator
    def __iter__(self):
        return self

    def _take(self) -> typing.Optional[Pair]:
        if self._ordered:
            return self._items.pop(self._next_index, None)
        return self._arrived.popleft() if self._arrived else None

    def next(self, timeout: typing.Optional[float] = None):
        with self._cond:
            if self._yielded >= self._num_jobs:
                if self._iterable_error is not None:
                    err, self._iterable_error = self._iterable_error, None
                    self._num_jobs = -1
                    raise err
                raise StopIteration
            pair = self._wait_for_next(timeout)
            self._next_index += 1
            self._yielded += 1
        ok, value = pair
        if ok:
            return value
        raise value

    __next__ = next

    def _wait_for_next(self, timeout: typing.Optional[float]) -> Pair:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pair = self._take()
            if pair is not None:
                return pair
            if self._error is not None:
                self._yielded = self._num_jobs
                self._iterable_error = None
                raise self._error
            if deadline is None:
                try:
                    self._cond.wait(0.25)
                except BaseException:
                    self._cond.release()
                    try:
                        self.abandon()
                    finally:
                        self._cond.acquire()
                    raise
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise multiprocessing.TimeoutError
            self._cond.wait(remaining)
