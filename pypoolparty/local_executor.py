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
* ``submit(..., resource_dict={...})`` takes what the cluster executors
  take, so that code written for them runs here: a call on several MPI
  ranks (``cores``) or in another directory (``cwd``) runs on a
  :class:`pypoolparty.processes.Executor` this executor starts for it
  (``mpirun`` starts the ranks), the other keys mean nothing here and are
  checked only (a misspelt key is an error, as on a cluster).

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
from .core import future_args, resources
from .core.future_args import Dependents
from .local import Carried
from .processes.adapter import cluster_option

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
        # What the processes executor of calls with resources gets too.
        self._worker_options = dict(
            initializer=initializer, initargs=tuple(initargs), maxtasksperchild=max_tasks_per_child
        )
        if initializer is not None:
            initializer = Carried(initializer)
        super().__init__(max_workers, mp_context, initializer, initargs, max_tasks_per_child=max_tasks_per_child)
        self._dependents = Dependents()
        self._closing_lock = threading.RLock()
        self._closing = False
        self._elsewhere: typing.Optional[concurrent.futures.Executor] = None

    def submit(
        self, fn: typing.Callable, /, *args, resource_dict: typing.Optional[dict] = None, **kwargs
    ) -> concurrent.futures.Future:
        """Run ``fn(*args, **kwargs)`` in a process of this machine.

        Futures among the arguments (also in lists, tuples, sets and dict
        values) are waited for, and replaced by their results.
        ``resource_dict`` takes the cluster executors' keys (see the module).

        Raises
        ------
        ValueError
            For a key of ``resource_dict`` that neither executorlib nor SLURM
            nor Grid Engine knows.
        """
        wanted = resources.parse(resource_dict, cluster_option, "this machine")
        elsewhere = resource_dict if wanted.is_mpi or wanted.cwd is not None else None
        with self._closing_lock:
            if self._closing:
                raise RuntimeError("cannot schedule new futures after shutdown")
            return self._dependents.submit(args, kwargs, functools.partial(self._hand_off, fn, elsewhere))

    def _hand_off(
        self,
        fn: typing.Callable,
        elsewhere: typing.Optional[dict],
        args: tuple,
        kwargs: dict,
        future: typing.Optional[concurrent.futures.Future],
    ) -> concurrent.futures.Future:
        """Give the call to the stdlib's executor (or, with ``elsewhere``
        resources, to the processes executor); complete ``future`` (a call
        that waited for its arguments) with the outcome."""
        if elsewhere is not None:
            submit = functools.partial(self._executor_elsewhere().submit, resource_dict=elsewhere)
        else:
            try:
                fn = Carried(fn)
            except errors.NotPicklableError as exc:
                failed = concurrent.futures.Future() if future is None else future
                failed.set_exception(exc)  # as the stdlib does with what it cannot pickle
                return failed
            submit = super().submit
        if future is None:
            return submit(fn, *args, **kwargs)
        if future_args.start(future):
            inner = submit(fn, *args, **kwargs)
            inner.add_done_callback(functools.partial(_copy_outcome, future))
        return future

    def _executor_elsewhere(self) -> concurrent.futures.Executor:
        """The processes executor of calls on MPI ranks or in another
        directory, started with the first of them."""
        with self._closing_lock:
            if self._elsewhere is None:
                from .processes import Executor as ProcessesExecutor

                self._elsewhere = ProcessesExecutor(self._max_workers, **self._worker_options)
            return self._elsewhere

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The stdlib's ``shutdown``; calls still waiting for futures among
        their arguments run first (unless ``cancel_futures``)."""
        with self._closing_lock:
            self._closing = True
        if cancel_futures:
            self._dependents.cancel_all()
        def stop(wait: bool) -> None:
            super(Executor, self).shutdown(wait=wait, cancel_futures=cancel_futures)
            if self._elsewhere is not None:
                self._elsewhere.shutdown(wait=wait, cancel_futures=cancel_futures)

        if wait:
            self._dependents.wait_idle()
            stop(wait=True)
        else:
            self._dependents.when_idle(functools.partial(stop, wait=False))
