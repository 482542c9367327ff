"""
``Executor.map(fn, *iterables, chunksize=n)``: n calls travel as one job.

As in the stdlib's ``ProcessPoolExecutor``: the calls are cut into chunks
of ``chunksize`` in order, each chunk is one submitted call (so it runs on
one worker, one call after the other), and the results come back in order.
A call that raises fails its chunk: the results before it in the same
chunk are lost, and the exception is raised where that chunk's first
result would have been.
"""
from __future__ import annotations

import itertools
import typing


def chunks(iterables: typing.Sequence[typing.Iterable], chunksize: int) -> typing.Iterator[tuple]:
    """Tuples of up to ``chunksize`` argument tuples, in order."""
    calls = zip(*iterables)
    while True:
        chunk = tuple(itertools.islice(calls, chunksize))
        if not chunk:
            return
        yield chunk


def run_chunk(fn: typing.Callable, chunk: tuple) -> list:
    """The results of ``fn(*args)`` for each ``args`` of ``chunk`` (on the worker)."""
    return [fn(*args) for args in chunk]


def flattened(results: typing.Iterator[list]) -> typing.Iterator:
    """The results of the chunks one by one; a chunk's list is let go once read."""
    for chunk in results:
        chunk.reverse()
        while chunk:
            yield chunk.pop()
