"""
Futures as arguments: ``submit(g, f)`` with ``f`` a Future runs
``g(f.result())`` once ``f`` is done, without blocking the caller.

Any executor can use it: its ``submit`` hands ``args`` and ``kwargs`` to
:meth:`Dependents.submit` together with its own way to start a call. ::

    submit(fn, *args, **kwargs)
      │  futures_in(args, kwargs)
      ├── none ─────────────> hand_off(args, kwargs, None): the executor's Future
      └── some: a pending Future now; a done-callback on each dependency
             │  (the last one done queues the call; a thread of the
             │  Dependents' own takes it from the queue)
             ├── one failed ──────> the dependent fails with its exception
             ├── one cancelled ───> the dependent is cancelled (it never runs)
             └── all succeeded ───> hand_off(substituted args, kwargs, future)

Where futures are looked for: the arguments themselves and, recursively,
the items of lists, tuples, sets and frozensets and the values of dicts
(exact types only; keys, subclasses such as named tuples, and the
attributes of other objects are left alone). Each future is replaced by its
result, so a call gets exactly what the caller would have written with
``.result()`` in place of each future: a set of results is a set (equal
results become one item; an unhashable result fails the call with
TypeError, as ``{f.result()}`` would).

The dependent's Future stays pending, and ``cancel()`` works, while it
waits. Dependencies may come from any ``concurrent.futures`` executor.
When several dependencies fail, the first one in argument order names the
exception.
"""
from __future__ import annotations

import collections
import concurrent.futures
import threading
import typing

#: The containers whose items are looked through.
CONTAINERS = (list, tuple, set, frozenset, dict)

#: ``hand_off(args, kwargs, future)`` starts a call whose arguments hold no
#: future any more; ``future`` is the Future to complete (None: make one).
HandOff = typing.Callable[[tuple, dict, typing.Optional[concurrent.futures.Future]], concurrent.futures.Future]


def _items(obj) -> typing.Iterable:
    return obj.values() if type(obj) is dict else obj


def _walk(obj, found: dict, path: set) -> None:
    if isinstance(obj, concurrent.futures.Future):
        found.setdefault(id(obj), obj)
    elif type(obj) in CONTAINERS and id(obj) not in path:
        path.add(id(obj))  # a container that holds itself is walked once
        for item in _items(obj):
            _walk(item, found, path)
        path.discard(id(obj))


def futures_in(args: tuple, kwargs: dict) -> typing.List[concurrent.futures.Future]:
    """The distinct futures in ``args`` and ``kwargs``, in argument order."""
    found: dict = {}
    _walk((args, kwargs), found, set())
    return list(found.values())


def _replaced(obj, path: set) -> typing.Tuple[typing.Any, bool]:
    """``obj`` with each future replaced by its result, and whether it held
    one (a container without a future is returned as it is, not copied)."""
    if isinstance(obj, concurrent.futures.Future):
        return obj.result(), True
    kind = type(obj)
    if kind not in CONTAINERS or id(obj) in path:
        return obj, False
    path.add(id(obj))
    try:
        if kind is dict:
            pairs = [(key, _replaced(value, path)) for key, value in obj.items()]
            changed = any(held for _, (_, held) in pairs)
            return ({key: new for key, (new, _) in pairs} if changed else obj), changed
        items = [_replaced(item, path) for item in obj]
        changed = any(held for _, held in items)
        return (kind(new for new, _ in items) if changed else obj), changed
    finally:
        path.discard(id(obj))


def substituted(args: tuple, kwargs: dict) -> typing.Tuple[tuple, dict]:
    """``args`` and ``kwargs`` with each future replaced by its result.

    Every future in them must be done; the result of a failed one raises.
    """
    (new_args, new_kwargs), _ = _replaced((args, kwargs), set())
    return new_args, new_kwargs


def _first_failure(dependencies) -> typing.Optional[concurrent.futures.Future]:
    for dependency in dependencies:
        if dependency.cancelled() or dependency.exception() is not None:
            return dependency
    return None


def _fail(future: concurrent.futures.Future, exc: BaseException) -> None:
    try:
        future.set_exception(exc)
    except concurrent.futures.InvalidStateError:
        pass  # cancelled meanwhile


def _notify_cancelled(future: concurrent.futures.Future) -> None:
    """Tell ``wait()`` and ``as_completed()`` that a cancelled future is
    done: they count only the state that
    ``set_running_or_notify_cancel()`` leaves (as an executor does when it
    would have started the call)."""
    if future.cancelled():
        try:
            future.set_running_or_notify_cancel()
        except RuntimeError:
            pass  # notified already


def start(future: concurrent.futures.Future) -> bool:
    """``future.set_running_or_notify_cancel()`` for a call about to run:
    False if it was cancelled (also if waiters were told so already)."""
    try:
        return future.set_running_or_notify_cancel()
    except RuntimeError:
        return False  # cancelled, and notified while it waited


class Dependents:
    """The calls of one executor that wait for futures among their arguments.

    Each call whose dependencies are all done goes into a queue; a thread of
    its own (started while the queue has work) fails, cancels or starts the
    calls in order. So neither a long chain (``x = submit(step, x)`` a
    thousand times, whose first link fails) recurses through the
    dependencies' callbacks, nor does a call start in the thread of another
    executor that completed its dependency.

    Besides starting them, it tells the executor's ``shutdown`` when none
    waits any more: an executor closes its pool only then, so that calls
    submitted before ``shutdown(wait=False)`` still run.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: "set[concurrent.futures.Future]" = set()
        self._when_idle: typing.List[typing.Callable[[], None]] = []
        self._hooks_running = 0
        self._ready: "collections.deque[tuple]" = collections.deque()
        self._dispatching = False

    def submit(self, args: tuple, kwargs: dict, hand_off: HandOff) -> concurrent.futures.Future:
        """Start the call at once if no future is among its arguments
        (``hand_off(args, kwargs, None)``), else once they are all done."""
        dependencies = futures_in(args, kwargs)
        if not dependencies:
            return hand_off(args, kwargs, None)
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            self._waiting.add(future)
        future.add_done_callback(self._ended)  # cancelled, or failed by a dependency
        left = [len(dependencies)]
        lock = threading.Lock()

        def one_done(_: concurrent.futures.Future) -> None:
            with lock:
                left[0] -= 1
                if left[0]:
                    return
            self._queue((future, dependencies, args, kwargs, hand_off))

        for dependency in dependencies:
            dependency.add_done_callback(one_done)
        return future

    def _queue(self, item: tuple) -> None:
        with self._cond:
            self._ready.append(item)
            if self._dispatching:
                return
            self._dispatching = True
        threading.Thread(target=self._dispatch, name="pypoolparty-dependents", daemon=True).start()

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                if not self._ready:
                    self._dispatching = False
                    return
                item = self._ready.popleft()
            self._resolve(*item)

    def _resolve(self, future, dependencies, args, kwargs, hand_off: HandOff) -> None:
        """Every dependency is done: fail, cancel or start the dependent."""
        try:
            if future.done():
                return
            failed = _first_failure(dependencies)
            if failed is not None and failed.cancelled():
                future.cancel()
            elif failed is not None:
                _fail(future, failed.exception())
            else:
                try:
                    hand_off(*substituted(args, kwargs), future)
                except Exception as exc:  # e.g. an unhashable result in a set
                    _fail(future, exc)
        finally:
            self._left(future)

    def _ended(self, future: concurrent.futures.Future) -> None:
        """A waiting call's future is done before it started: cancelled (by
        its caller, a cancelled dependency or ``cancel_all``) or failed."""
        _notify_cancelled(future)
        self._left(future)

    def _left(self, future: concurrent.futures.Future) -> None:
        """``future`` waits no more (started, failed or cancelled)."""
        with self._cond:
            if future not in self._waiting:
                return
            self._waiting.discard(future)
            if self._waiting:
                return
            hooks, self._when_idle = self._when_idle, []
            self._hooks_running += 1
        try:
            for hook in hooks:
                hook()
        finally:
            with self._cond:
                self._hooks_running -= 1
                self._cond.notify_all()

    def waiting(self) -> int:
        """How many calls wait for their dependencies."""
        with self._cond:
            return len(self._waiting)

    def cancel_all(self) -> None:
        """Cancel every call that waits (``shutdown(cancel_futures=True)``)."""
        with self._cond:
            waiting = list(self._waiting)
        for future in waiting:
            future.cancel()

    def when_idle(self, hook: typing.Callable[[], None]) -> None:
        """Call ``hook`` once no call waits: now, or in the thread that
        starts (or fails, or cancels) the last one."""
        with self._cond:
            if self._waiting:
                self._when_idle.append(hook)
                return
        hook()

    def wait_idle(self) -> None:
        """Block until no call waits and the hooks that this ran are done."""
        with self._cond:
            self._cond.wait_for(lambda: not self._waiting and not self._hooks_running)
