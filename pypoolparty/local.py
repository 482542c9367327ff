"""
``pypoolparty.local.Pool``: the stdlib's pool on this machine's cores, with
the reach of the cluster pools.

It is a :class:`multiprocessing.pool.Pool` whose functions (``func`` and
``initializer``) travel with cloudpickle, so lambdas, closures and functions
of ``__main__`` or a notebook work here as they do on the cluster: a test on a
laptop proves the cluster run. Jobs, ``initargs`` and results travel as in
the stdlib.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import typing

import cloudpickle

from . import errors
from .core.async_result import AsyncResult

__all__ = ["Pool"]

_loaded: typing.Dict[bytes, typing.Callable] = {}


def _load(blob: bytes) -> typing.Callable:
    func = _loaded.get(blob)
    if func is None:
        if len(_loaded) > 64:
            _loaded.clear()
        func = _loaded[blob] = cloudpickle.loads(blob)
    return func


class _Carried:
    """A picklable callable that carries a function as cloudpickle bytes."""

    __slots__ = ("blob",)

    def __init__(self, func: typing.Callable):
        try:
            self.blob = cloudpickle.dumps(func)
        except Exception as exc:
            raise errors.NotPicklableError(
                "pypoolparty: func {!r} cannot be pickled ({:s}: {})".format(
                    func, type(exc).__name__, exc
                )
            ) from exc

    def __getstate__(self):
        return self.blob

    def __setstate__(self, blob):
        self.blob = blob

    def __call__(self, *args, **kwds):
        return _load(self.blob)(*args, **kwds)


def _failed(exc: BaseException, error_callback=None) -> AsyncResult:
    result = AsyncResult(error_callback=error_callback)
    result.set_exception(exc)
    return result


class Pool(multiprocessing.pool.Pool):
    """``multiprocessing.Pool`` whose functions travel with cloudpickle.

    Parameters are those of :class:`multiprocessing.pool.Pool`.
    """

    def __init__(
        self,
        processes: typing.Optional[int] = None,
        initializer: typing.Optional[typing.Callable] = None,
        initargs: typing.Iterable = (),
        maxtasksperchild: typing.Optional[int] = None,
        context=None,
    ):
        if initializer is not None and callable(initializer):
            initializer = _Carried(initializer)
        super().__init__(processes, initializer, initargs, maxtasksperchild, context)

    def _async(self, method, func, *args, error_callback=None, **kwargs):
        """Call the stdlib's ``method`` with ``func`` carried; a ``func``
        that cannot be pickled gives a failed result, as in the stdlib."""
        try:
            carried = _Carried(func)
        except errors.NotPicklableError as exc:
            self._check_running()
            return _failed(exc, error_callback)
        return method(carried, *args, error_callback=error_callback, **kwargs)

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        return self._async(super().apply_async, func, args, kwds, callback, error_callback=error_callback)

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._async(super().map_async, func, iterable, chunksize, callback, error_callback=error_callback)

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._async(
            super().starmap_async, func, iterable, chunksize, callback, error_callback=error_callback
        )

    def map(self, func, iterable, chunksize=None):
        return super().map(_Carried(func), iterable, chunksize)

    def starmap(self, func, iterable, chunksize=None):
        return super().starmap(_Carried(func), iterable, chunksize)

    def imap(self, func, iterable, chunksize=1):
        return super().imap(_Carried(func), iterable, chunksize)

    def imap_unordered(self, func, iterable, chunksize=1):
        return super().imap_unordered(_Carried(func), iterable, chunksize)
