"""
The result of an asynchronous call, as in ``multiprocessing.pool``.
"""
from __future__ import annotations

import multiprocessing
import threading
import typing

#: How long one wait may block before the waiting thread checks for signals.
_WAIT_SLICE = 0.25


class AsyncResult:
    """What ``map_async`` and friends return.

    Behaves like :class:`multiprocessing.pool.AsyncResult`: ``get``,
    ``wait``, ``ready`` and ``successful``; ``callback`` or
    ``error_callback`` is called once, from the pool's supervisor thread.

    When the thread waiting in :meth:`get` is interrupted (Ctrl-C, or any
    other exception raised while it waits), the work behind this result is
    cancelled before the exception propagates.
    """

    def __init__(
        self,
        callback: typing.Optional[typing.Callable] = None,
        error_callback: typing.Optional[typing.Callable] = None,
        on_abandon: typing.Optional[typing.Callable[[], None]] = None,
    ):
        self._event = threading.Event()
        self._set_lock = threading.Lock()
        self._callback = callback
        self._error_callback = error_callback
        self._on_abandon = on_abandon
        self._success = False
        self._value = None

    def ready(self) -> bool:
        """True once the call has completed."""
        return self._event.is_set()

    def successful(self) -> bool:
        """True if the call completed without raising.

        Raises
        ------
        ValueError
            If the result is not ready.
        """
        if not self.ready():
            raise ValueError("{0!r} not ready".format(self))
        return self._success

    def wait(self, timeout: typing.Optional[float] = None) -> None:
        """Wait until the result is available or ``timeout`` seconds pass."""
        if timeout is not None:
            self._event.wait(timeout)
            return
        while not self._event.wait(_WAIT_SLICE):
            pass

    def get(self, timeout: typing.Optional[float] = None):
        """Return the result when it arrives; raise the call's exception.

        Raises
        ------
        multiprocessing.TimeoutError
            If it did not arrive within ``timeout`` seconds.
        """
        try:
            self.wait(timeout)
        except BaseException:
            if not self.ready() and self._on_abandon is not None:
                self._on_abandon()
            raise
        if not self.ready():
            raise multiprocessing.TimeoutError
        if self._success:
            return self._value
        raise self._value

    # ------------------------------------------- for pool implementations
    def set_result(self, value) -> None:
        """Deliver the call's value (once) and run ``callback``.

        For pool implementations, as
        :meth:`concurrent.futures.Future.set_result` is for executors; a
        second outcome is ignored.
        """
        self._deliver(True, value)

    def set_exception(self, exc: BaseException) -> None:
        """Deliver the call's exception (once) and run ``error_callback``.

        For pool implementations; a second outcome is ignored.
        """
        self._deliver(False, exc)

    def _deliver(self, success: bool, value) -> None:
        with self._set_lock:
            if self._event.is_set():
                return
            self._success = success
            self._value = value
            try:
                if success and self._callback is not None:
                    self._callback(value)
                if not success and self._error_callback is not None:
                    self._error_callback(value)
            finally:
                self._event.set()
