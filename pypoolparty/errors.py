"""
Every exception pypoolparty raises of its own.

Each subclasses the stdlib exception a user would catch for the same kind of
problem, and its message says what happened, the likely cause, and where to
look. A job's own exception is not wrapped: it is re-raised with its type and
args, and the remote traceback as its ``__cause__``
(:class:`multiprocessing.pool.RemoteTraceback`, the stdlib's own class).
"""
from __future__ import annotations

import concurrent.futures
import pickle
import typing
from multiprocessing.pool import MaybeEncodingError, RemoteTraceback

__all__ = [
    "MaybeEncodingError",
    "RemoteTraceback",
    "PoolError",
    "NotPicklableError",
    "SchedulerCommandError",
    "SchedulerUnavailableError",
    "JobsLostError",
    "WorkDirError",
    "StoreError",
    "EntryNotFoundError",
    "RunsNotReadyWarning",
    "CancelledError",
]


class PoolError(RuntimeError):
    """Base of pypoolparty's own runtime errors."""


class NotPicklableError(pickle.PicklingError, TypeError):
    """``func``, ``initializer`` or a job cannot be pickled.

    Raised (by ``get()`` of an async call) before anything is written or
    submitted. A ``TypeError`` too, as the stdlib's pool raises for an
    unpicklable job.
    """


class SchedulerCommandError(PoolError):
    """A scheduler command (sbatch, squeue, scancel, ...) failed for good.

    Attributes
    ----------
    argv : list of str
        The command line.
    returncode : int or None
        Its exit status, None if it could not be started.
    stderr : str
        What it wrote to stderr.
    """

    def __init__(
        self,
        argv: typing.Sequence[str],
        returncode: typing.Optional[int],
        stderr: str,
        hint: str = "",
    ):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.hint = hint
        msg = "The scheduler command {!r} failed".format(" ".join(self.argv))
        if returncode is None:
            msg += " to start"
        else:
            msg += " with exit status {:d}".format(returncode)
        msg += ". It said: {:s}".format(stderr.strip() or "(nothing)")
        if hint:
            msg += " " + hint
        super().__init__(msg)

    def __reduce__(self):
        return (
            self.__class__,
            (self.argv, self.returncode, self.stderr, self.hint),
        )


class SchedulerUnavailableError(SchedulerCommandError):
    """A scheduler command kept failing transiently until the retries ran out."""


class JobsLostError(PoolError, concurrent.futures.BrokenExecutor):
    """Jobs whose workers died without a result, after every resubmission.

    A :class:`concurrent.futures.BrokenExecutor` too: what an executor's
    future raises when the worker that ran its call died.

    Attributes
    ----------
    job_indices : list of int
        Indices, in the map's iterable, of the jobs lost more often than
        allowed; when submissions kept ending without any result, of every
        job that has none.
    work_dir : str
        The map's work dir, kept for inspection.
    """

    def __init__(self, message: str, job_indices=(), work_dir: str = ""):
        self.job_indices = list(job_indices)
        self.work_dir = work_dir
        super().__init__(message)

    def __reduce__(self):
        return (self.__class__, (self.args[0], self.job_indices, self.work_dir))


class WorkDirError(PermissionError):
    """The work dir cannot be used safely (owner, permissions, location)."""


class StoreError(PoolError):
    """The store (``cache_dir``) holds something pypoolparty did not write,
    or a file of it is damaged.

    The message names the file and what to remove; the store's other
    results are not affected.
    """


class EntryNotFoundError(LookupError):
    """A decorated function was never called with these arguments under
    this ``path`` (``dont_submit``, ``cancel_job``, ``print_job_output``)."""


class RunsNotReadyWarning(UserWarning):
    """Some runs of a ``@parallel`` or ``@parallel_average`` call are not
    finished: the result holds the finished ones only."""


class CancelledError(PoolError, concurrent.futures.CancelledError):
    """The work behind a result was cancelled (``terminate()``, Ctrl-C).

    Raised by ``get()`` of results whose jobs the pool cancelled, so that
    nobody waits forever for them. A
    :class:`concurrent.futures.CancelledError` too, which is what code
    written against ``concurrent.futures`` catches.
    """
