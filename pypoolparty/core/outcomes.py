"""
What one job's run produced, and how a chunk of them travels to the driver.

A worker encodes the outcomes of a chunk into one pickle; the driver decodes
it. A value or exception that cannot be pickled becomes a
:class:`multiprocessing.pool.MaybeEncodingError`, as in the stdlib, so the
driver never waits for a result that cannot arrive.
"""
from __future__ import annotations

import dataclasses
import pickle
import traceback
import typing

import cloudpickle


_TAG = "pypoolparty-chunk-result"


@dataclasses.dataclass
class Failure:
    """A job raised ``exception``; ``traceback`` is its formatted traceback."""

    exception: BaseException
    traceback: str

    def reraise_with(self, note: str = "") -> typing.NoReturn:
        """Raise the job's own exception, the remote traceback as cause."""
        text = '\n"""\n{:s}"""'.format(self.traceback)
        if note:
            text += "\n" + note
        from ..errors import RemoteTraceback

        raise self.exception from RemoteTraceback(text)


@dataclasses.dataclass
class Outcome:
    """One job's outcome: ``value`` if ``failure`` is None."""

    value: typing.Any = None
    failure: typing.Optional[Failure] = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclasses.dataclass
class ChunkResult:
    """The outcomes of one chunk's jobs, in order.

    A chunk whose job failed holds the outcomes up to and including the
    failure; the worker stops there. ``started`` and ``ended`` are the
    worker's clock (seconds since the epoch) around the chunk's run, and
    ``host`` its machine: the report's timeline.
    """

    chunk: int
    worker_id: str
    outcomes: typing.List[Outcome]
    started: float = 0.0
    ended: float = 0.0
    host: str = ""

    @property
    def failure(self) -> typing.Optional[typing.Tuple[int, Failure]]:
        """(position in chunk, failure) of the first failed job, or None."""
        for i, o in enumerate(self.outcomes):
            if o.failure is not None:
                return i, o.failure
        return None


def failure_of(exc: BaseException) -> Failure:
    """Capture an exception raised in the worker."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Failure(exception=exc, traceback=tb)


def _roundtrips(obj) -> bool:
    try:
        pickle.loads(cloudpickle.dumps(obj))
        return True
    except Exception:
        return False


def _plain(outcome: Outcome) -> tuple:
    if outcome.failure is None:
        return (True, outcome.value)
    return (False, (outcome.failure.exception, outcome.failure.traceback))


def _maybe_encoding_error(*args) -> BaseException:
    # Imported here: a worker needs the error classes (and the stdlib's
    # multiprocessing.pool behind them) only when something goes wrong,
    # and every import lengthens its start.
    from ..errors import MaybeEncodingError

    return MaybeEncodingError(*args)


def _encodable(outcome: Outcome) -> Outcome:
    """The outcome itself, or a MaybeEncodingError if it cannot travel."""
    if outcome.failure is None:
        if _roundtrips(outcome.value):
            return outcome
        try:
            cloudpickle.dumps(outcome.value)
            reason = "it cannot be unpickled again"
        except Exception as err:
            reason = repr(err)
        exc = _maybe_encoding_error(reason, repr(outcome.value)[:1000])
        return Outcome(failure=Failure(exc, "MaybeEncodingError: " + str(exc) + "\n"))
    if _roundtrips(outcome.failure.exception):
        return outcome
    exc = _maybe_encoding_error(
        "the exception cannot be pickled", repr(outcome.failure.exception)[:1000]
    )
    return Outcome(failure=Failure(exc, outcome.failure.traceback))


def encode(result: ChunkResult) -> bytes:
    """Pickle a chunk's outcomes; unpicklable ones become MaybeEncodingError."""
    # Exceptions are rare and may pickle but fail to unpickle: check each.
    times = (result.started, result.ended, result.host)
    payload = [_plain(o if o.ok else _encodable(o)) for o in result.outcomes]
    try:
        return cloudpickle.dumps((_TAG, result.chunk, result.worker_id, payload, times))
    except Exception:
        pass
    payload = [_plain(_encodable(o)) for o in result.outcomes]
    return cloudpickle.dumps((_TAG, result.chunk, result.worker_id, payload, times))


def decode(data: bytes) -> ChunkResult:
    """Unpickle what :func:`encode` wrote."""
    tag, chunk, worker_id, payload, *times = pickle.loads(data)
    if tag != _TAG:
        raise ValueError("not a pypoolparty chunk result")
    outcomes = []
    for ok, item in payload:
        if ok:
            outcomes.append(Outcome(value=item))
        else:
            outcomes.append(Outcome(failure=Failure(*item)))
    result = ChunkResult(chunk=chunk, worker_id=worker_id, outcomes=outcomes)
    if times:  # workers before the report wrote none
        result.started, result.ended, result.host = times[0]
    return result
