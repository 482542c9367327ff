"""
What a worker calls for each job, and how.

Every kind of work a pool takes is a map over jobs with a :class:`CallSpec`:
``map``/``imap`` call one function with each job, ``starmap`` unpacks the
job, and a batch of ``apply_async`` calls carries several functions, each job
naming its function and holding ``(args, kwds)``.
"""
from __future__ import annotations

import dataclasses
import enum
import typing


class CallStyle(enum.Enum):
    """How a job becomes a call."""

    ONE = "one"
    """``funcs[0](job)`` (map, imap, imap_unordered)."""
    STAR = "star"
    """``funcs[0](*job)`` (starmap)."""
    APPLY = "apply"
    """``funcs[i](*args, **kwds)`` with ``job == (i, args, kwds)`` (apply)."""


@dataclasses.dataclass
class CallSpec:
    """Everything about the calls of one map but the jobs.

    The pool's initializer is not here: it is the pool's, and runs once per
    worker (see :func:`pypoolparty.core.inputs.pickle_initializer`).

    Parameters
    ----------
    funcs : tuple of callables
        The function(s) to call.
    style : CallStyle
        How each job becomes a call.
    stop_on_failure : bool
        True for ``map``: the first job that raises ends the map. False for
        ``imap`` and ``apply_async``: every job runs, each failure is
        delivered on its own.
    """

    funcs: typing.Tuple[typing.Callable, ...]
    style: CallStyle
    stop_on_failure: bool = True

    def call(self, job):
        """Run one job."""
        if self.style is CallStyle.ONE:
            return self.funcs[0](job)
        if self.style is CallStyle.STAR:
            return self.funcs[0](*job)
        index, args, kwds = job
        return self.funcs[index](*args, **kwds)
