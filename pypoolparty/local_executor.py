"""
``pypoolparty.local.Executor``: the stdlib's ``ProcessPoolExecutor`` with
the reach of the cluster executors, for a laptop.

It is a :class:`concurrent.futures.ProcessPoolExecutor`: its processes,
futures, ``map(..., chunksize=)``, ``BrokenProcessPool`` and ``shutdown``
are the stdlib's. What it adds:

* ``fn`` and ``initializer`` travel with cloudpickle, as in
  :class:`pypoolparty.local.Pool`: lambdas, closures and functions of
  ``__main__`` or a notebook run here as on the cluster.
* Futures among a call's arguments are waited for without blocking the
  caller and replaced by their results (:mod:`.core.future_args`), as the
  cluster executors do.
* ``submit(..., resource_dict=None)`` is accepted, so that code written for
  the cluster executors runs here; resources are not implemented yet.

Where it departs from the stdlib:

* A call with futures among its arguments gets a Future of its own. It is
  pending, and ``cancel()`` works, while the call waits for them; once they
  are done the call goes to the stdlib's executor and the Future counts as
  running from then on, also while the call waits there for a free process.
  A call without futures among its arguments gets the stdlib's own Future.
* ``shutdown(wait=False)`` closes the stdlib's executor only once no call
  waits for its arguments any more, so that those calls still run
  (``cancel_futures=True`` cancels them).

No ``cache_dir``: the local pool's store (:mod:`.local_store`) fills the
result objects of ``multiprocessing.pool``, which this executor has none of.
"""
from __future__ import annotations

import concurrent.futures
import functools
import threading
import typing

from . import errors
from .core.future_args import Dependents
from .local import Carried

__all__ = ["Executor"]


def _copy_outcome(outer: concurrent.futures.Future, inner: concurrent.futures.Future) -> None:
    """Complete ``outer`` (running) as the stdlib's ``inner`` ended."""
    if inner.cancelled():
        outer.set_exception(concurrent.futures.CancelledError("the executor cancelled the call at shutdown"))
    elif inner.exception() is not None:
        outer.set_exception(inner.exception())
    else:
        outer.set_result(inner.result())


class Executor(concurrent.futures.ProcessPoolExecutor):
    """The stdlib's ``ProcessPoolExecutor`` whose calls may take futures
    as arguments and whose functions travel with cloudpickle.

    Parameters
    ----------
    max_workers, mp_context, initializer, initargs, max_tasks_per_child
        Those of :class:`concurrent.futures.ProcessPoolExecutor`.
    """

    def __init__(
        self,
        max_workers: typing.Optional[int] = None,
        mp_context=None,
        initializer: typing.Optional[typing.Callable] = None,
        initargs: tuple = (),
        *,
        max_tasks_per_child: typing.Optional[int] = None,
    ):
        if initializer is not None:
            initializer = Carried(initializer)
        super().__init__(max_workers, mp_context, initializer, initargs, max_tasks_per_child=max_tasks_per_child)
        self._dependents = Dependents()
        self._closing_lock = threading.Lock()
        self._closing = False

    def submit(
        self, fn: typing.Callable, /, *args, resource_dict: typing.Optional[dict] = None, **kwargs
    ) -> concurrent.futures.Future:
        """Run ``fn(*args, **kwargs)`` in a process of this machine.

        Futures among the arguments (also in lists, tuples, sets and dict
        values) are waited for, and replaced by their results.

        Raises
        ------
        NotImplementedError
            If ``resource_dict`` is given (not None): not implemented here yet.
        """
        if resource_dict is not None:
            raise NotImplementedError(
                "pypoolparty.local.Executor: resource_dict={!r} is not implemented yet; "
                "submit without it (or with resource_dict=None)".format(resource_dict)
            )
        with self._closing_lock:
            if self._closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
            return self._dependents.submit(args, kwargs, functools.partial(self._hand_off, fn))

    def _hand_off(
        self, fn: typing.Callable, args: tuple, kwargs: dict, future: typing.Optional[concurrent.futures.Future]
    ) -> concurrent.futures.Future:
        """Give the call to the stdlib's executor; complete ``future`` (a
        call that waited for its arguments) with the outcome."""
        try:
            carried = Carried(fn)
        except errors.NotPicklableError as exc:
            failed = concurrent.futures.Future() if future is None else future
            failed.set_exception(exc)  # as the stdlib does with what it cannot pickle
            return failed
        if future is None:
            return super().submit(carried, *args, **kwargs)
        if future.set_running_or_notify_cancel():
            inner = super().submit(carried, *args, **kwargs)
            inner.add_done_callback(functools.partial(_copy_outcome, future))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The stdlib's ``shutdown``; calls still waiting for futures among
        their arguments run first (unless ``cancel_futures``)."""
        with self._closing_lock:
            self._closing = True
        if cancel_futures:
            self._dependents.cancel_all()
        stop = functools.partial(super().shutdown, cancel_futures=cancel_futures)
        if wait:
            self._dependents.wait_idle()
            stop(wait=True)
        else:
            self._dependents.when_idle(functools.partial(stop, wait=False))
