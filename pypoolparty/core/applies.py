"""
``apply_async`` calls: their results, and how a burst of them becomes one
map.

Calls made in quick succession are gathered in an :class:`ApplyQueue` and
run as one map (at most one submission) once no call came for
:data:`QUIET_SECONDS` (:data:`WARM_QUIET_SECONDS` when the workers up can
take them without a submission) or the oldest waited
:data:`MAX_WAIT_SECONDS`; job
``i`` of that map is call ``i`` and has its own :class:`ApplyResult`.
"""
from __future__ import annotations

import dataclasses
import threading
import time
import typing

from .async_result import AsyncResult
from .calling import CallSpec, CallStyle
from .results import Cancellable, Pair

#: A burst ends when no call came for this long ...
QUIET_SECONDS = 0.05
#: ... or this long when idle workers can take every call gathered so far,
#: or all the workers the pool may have are up (no submission to save: a
#: lone call does not wait for company) ...
WARM_QUIET_SECONDS = 0.002
#: ... or when its oldest call waited this long.
MAX_WAIT_SECONDS = 0.5


class ApplyResult(AsyncResult):
    """The AsyncResult of one ``apply_async`` call."""

    def __init__(self, callback=None, error_callback=None, starting: typing.Optional[typing.Callable[[], bool]] = None):
        super().__init__(callback, error_callback, on_abandon=self.abandon)
        self.batch: typing.Optional["ApplyBatch"] = None
        self.starting = starting

    def start(self) -> bool:
        """The call goes to a map now; False if it was cancelled before
        (an executor's future), and then it does not run."""
        return self.starting() if self.starting is not None else True

    def abandon(self) -> None:
        """The caller gave up waiting: cancel the batch this call is in."""
        if self.batch is not None:
            self.batch.abandon()


class ApplyBatch(Cancellable):
    """Several apply_async calls run as one map; job i is call i."""

    def __init__(self, results: typing.List[ApplyResult]):
        self.results = results
        for r in results:
            r.batch = self

    def chunk_done(self, chunk: int, first_job: int, results: typing.List[Pair]) -> None:
        for i, (ok, value) in enumerate(results):
            if ok:
                self.results[first_job + i].set_result(value)
            else:
                self.results[first_job + i].set_exception(value)

    def completed(self) -> None:
        pass

    def failed(self, exc: BaseException) -> None:
        for r in self.results:
            r.set_exception(exc)


@dataclasses.dataclass(frozen=True)
class PendingApply:
    """One ``apply_async`` call not yet submitted."""

    func: typing.Callable
    args: tuple
    kwds: dict
    result: ApplyResult


class ApplyQueue:
    """The ``apply_async`` calls of a pool that wait to be run as one map."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: typing.List[PendingApply] = []
        self._first = 0.0
        self._last = 0.0

    def add(self, call: PendingApply) -> None:
        with self._lock:
            now = time.monotonic()
            if not self._calls:
                self._first = now
            self._last = now
            self._calls.append(call)

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)

    def take(self, at_once: bool, quiet: typing.Optional[float] = None) -> typing.Optional[typing.List[PendingApply]]:
        """The burst if it ended (no call for ``quiet`` seconds, default
        :data:`QUIET_SECONDS`, or ``at_once``), None while it goes on."""
        if quiet is None:
            quiet = QUIET_SECONDS
        with self._lock:
            now = time.monotonic()
            ended = (
                at_once
                or now - self._last >= quiet
                or now - self._first >= MAX_WAIT_SECONDS
            )
            if self._calls and not ended:
                return None
            calls, self._calls = self._calls, []
            return calls


def batch_of(
    calls: typing.Sequence[PendingApply],
) -> typing.Tuple[CallSpec, list, ApplyBatch]:
    """The call spec, jobs and result sink of one map that runs ``calls``."""
    funcs: typing.List[typing.Callable] = []
    index_of: typing.Dict[int, int] = {}
    jobs = []
    for call in calls:
        if id(call.func) not in index_of:
            index_of[id(call.func)] = len(funcs)
            funcs.append(call.func)
        jobs.append((index_of[id(call.func)], call.args, call.kwds))
    spec = CallSpec(funcs=tuple(funcs), style=CallStyle.APPLY, stop_on_failure=False)
    return spec, jobs, ApplyBatch([call.result for call in calls])
