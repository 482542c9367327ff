"""
``pypoolparty.local.Pool``: the stdlib's pool on this machine's cores, with
the reach of the cluster pools.

It is a :class:`multiprocessing.pool.Pool` whose functions (``func`` and
``initializer``) travel with cloudpickle, so lambdas, closures and functions
of ``__main__`` or a notebook work here as they do on the cluster: a test on a
laptop proves the cluster run. Jobs, ``initargs`` and results travel as in
the stdlib.

With ``cache_dir=`` it keeps results in the same persistent store as the
cluster pools, under the same keys (:mod:`.local_store`): a store filled on
a laptop serves the cluster, and the other way round.

``pypoolparty.local.Executor`` is the stdlib's ``ProcessPoolExecutor`` with
the same reach (:mod:`.local_executor`).
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import typing

import cloudpickle

from . import errors
from .core import inputs
from .core.async_result import AsyncResult

__all__ = ["Pool"]  # and Executor, imported on first use

_loaded: typing.Dict[bytes, typing.Callable] = {}


def _load(blob: bytes) -> typing.Callable:
    func = _loaded.get(blob)
    if func is None:
        if len(_loaded) > 64:
            _loaded.clear()
        func = _loaded[blob] = cloudpickle.loads(blob)
    return func


class Carried:
    """A picklable callable that carries a function as cloudpickle bytes
    (so that the stdlib's pools and executors take what cloudpickle takes)."""

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

    Parameters
    ----------
    processes, initializer, initargs, maxtasksperchild, context
        Those of :class:`multiprocessing.pool.Pool`.
    cache_dir : str or None
        A persistent store (the cluster pools' ``cache_dir``): results of
        jobs are kept there, keyed by the function's code and the job, and
        a call runs only what is not stored. None: no store, exactly the
        stdlib's pool. See :mod:`pypoolparty.local_store` for what a store
        changes.

    Raises
    ------
    StoreError
        If ``cache_dir`` holds something else than a store.
    """

    def __init__(
        self,
        processes: typing.Optional[int] = None,
        initializer: typing.Optional[typing.Callable] = None,
        initargs: typing.Iterable = (),
        maxtasksperchild: typing.Optional[int] = None,
        context=None,
        *,
        cache_dir: typing.Optional[str] = None,
    ):
        if initializer is not None and callable(initializer):
            initializer = Carried(initializer)
        self._stored = None  # the LocalStore, with a cache_dir
        super().__init__(processes, initializer, initargs, maxtasksperchild, context)
        if cache_dir is not None:
            from .local_store import LocalStore  # only a pool with a store needs it

            try:
                self._stored = LocalStore(str(cache_dir))
            except BaseException:
                super().terminate()
                raise

    def _async(self, method, func, *args, error_callback=None, **kwargs):
        """Call the stdlib's ``method`` with ``func`` carried; a ``func``
        that cannot be pickled gives a failed result, as in the stdlib."""
        try:
            carried = Carried(func)
        except errors.NotPicklableError as exc:
            self._check_running()
            return _failed(exc, error_callback)
        return method(carried, *args, error_callback=error_callback, **kwargs)

    # ------------------------------------------------------ with a store
    def _takes(self, chunksize, none_is_default: bool = True) -> bool:
        """True if the store handles a call with this ``chunksize``; other
        values go to the stdlib unchanged (it raises or does what it does)."""
        if self._stored is None:
            return False
        if chunksize is None:
            return none_is_default
        return isinstance(chunksize, int) and chunksize >= 1

    def _stored_async(self, start, func, *args, error_callback=None):
        """Start a call on the store: ``start(self, carried func, func,
        *args)``. What fails before anything runs (``func`` or a job cannot
        be pickled, the store cannot be read) gives a failed result."""
        self._check_running()
        try:
            return start(self, Carried(func), func, *args, error_callback=error_callback)
        except (errors.NotPicklableError, errors.StoreError, OSError) as exc:
            return _failed(exc, error_callback)

    def _stored_map(self, func, iterable, chunksize, star, callback=None, error_callback=None):
        self._check_running()
        return self._stored_async(
            self._stored.map_async, func, list(iterable), chunksize, star, callback,
            error_callback=error_callback,
        )

    def _stored_imap(self, func, iterable, chunksize, ordered):
        self._check_running()
        carried = Carried(func)
        jobs, stop = inputs.read_jobs(iterable)
        return self._stored.imap(self, carried, func, jobs, stop, chunksize, ordered)

    # -------------------------------------------------------- the calls
    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        if self._stored is None:
            return self._async(
                super().apply_async, func, args, kwds, callback, error_callback=error_callback
            )
        return self._stored_async(
            self._stored.apply_async, func, args, kwds, callback, error_callback=error_callback
        )

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        if self._takes(chunksize):
            return self._stored_map(func, iterable, chunksize, False, callback, error_callback)
        return self._async(
            super().map_async, func, iterable, chunksize, callback, error_callback=error_callback
        )

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        if self._takes(chunksize):
            return self._stored_map(func, iterable, chunksize, True, callback, error_callback)
        return self._async(
            super().starmap_async, func, iterable, chunksize, callback, error_callback=error_callback
        )

    def map(self, func, iterable, chunksize=None):
        if self._takes(chunksize):
            return self._stored_map(func, iterable, chunksize, False).get()
        return super().map(Carried(func), iterable, chunksize)

    def starmap(self, func, iterable, chunksize=None):
        if self._takes(chunksize):
            return self._stored_map(func, iterable, chunksize, True).get()
        return super().starmap(Carried(func), iterable, chunksize)

    def imap(self, func, iterable, chunksize=1):
        if self._takes(chunksize, none_is_default=False):
            return self._stored_imap(func, iterable, chunksize, ordered=True)
        return super().imap(Carried(func), iterable, chunksize)

    def imap_unordered(self, func, iterable, chunksize=1):
        if self._takes(chunksize, none_is_default=False):
            return self._stored_imap(func, iterable, chunksize, ordered=False)
        return super().imap_unordered(Carried(func), iterable, chunksize)

    def terminate(self):
        super().terminate()
        if self._stored is not None:
            self._stored.records.shut()

    def join(self):
        super().join()
        if self._stored is not None:
            self._stored.records.shut()


def __getattr__(name):
    if name == "Executor":  # imported on first use: the pool does not need it
        from .local_executor import Executor

        return Executor
    raise AttributeError("module {!r} has no attribute {!r}".format(__name__, name))
