"""
The documented semantics of ``concurrent.futures`` executors, on every
executor kind, with the stdlib's ``ProcessPoolExecutor`` as the reference:
a test that fails on the stdlib's kind is wrong, not the stdlib.

Gated jobs (:class:`fake_jobs.Gate`) hold a call running until the test
opens the gate. The core's executors hand the calls of a burst to a map
once no call came for ``applies.QUIET_SECONDS``; the tests that need a call
to stay pending widen that window, so that nothing depends on timing.
"""
import concurrent.futures
import contextlib
import os

import pytest

from executor_kinds import KINDS, executor_fixture
from fake_jobs import Gate, counted, fail_on, pid_of_worker, runs_of, square, wait_until
from pypoolparty.core import applies

pytestmark = pytest.mark.timeout(60)

executor = executor_fixture(KINDS)


@contextlib.contextmanager
def calls_kept_pending():
    """The core's executors keep the calls submitted in here pending
    (cancellable) until the block ends; the stdlib's keep those beyond its
    call queue pending."""
    widened = {"QUIET_SECONDS": 60.0, "MAX_WAIT_SECONDS": 60.0}
    saved = {name: getattr(applies, name) for name in widened}
    for name, value in widened.items():
        setattr(applies, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(applies, name, value)


def start_gated(ex, gate, x=1):
    """Submit a gated call and wait until it runs."""
    future = ex.submit(gate.job(), x)
    gate.wait_started(1, timeout=30)
    assert wait_until(future.running, timeout=10)
    return future


def test_result_exception_done_and_running(executor):
    with executor() as ex:
        good, bad = ex.submit(square, 4), ex.submit(fail_on, 3)
        assert good.result(timeout=30) == 16 and good.exception() is None
        assert good.done() and not good.running() and not good.cancelled()
        error = bad.exception(timeout=30)
        assert isinstance(error, ValueError) and error.args == ("bad job", 3)
        with pytest.raises(ValueError, match="bad job"):
            bad.result()


def test_a_running_call_is_running_and_cannot_be_cancelled(executor, tmp_path):
    gate = Gate(tmp_path / "gate")
    with executor(1) as ex:
        running = start_gated(ex, gate)
        assert not running.done() and not running.cancel() and not running.cancelled()
        gate.open()
        assert running.result(timeout=30) == 1


def test_cancel_of_a_pending_call_returns_true_and_it_never_runs(executor, tmp_path):
    gate, runs = Gate(tmp_path / "gate"), tmp_path / "runs"
    runs.mkdir()
    with executor(1) as ex:
        running = start_gated(ex, gate)
        with calls_kept_pending():
            queued = [ex.submit(counted, x, str(runs)) for x in range(4)]
            last = queued[-1]
            assert not last.running() and not last.done()
            assert last.cancel() and last.cancelled() and last.done()
        with pytest.raises(concurrent.futures.CancelledError):
            last.result(timeout=1)
        gate.open()
        assert [f.result(timeout=30) for f in queued[:-1]] == [0, 1, 4] and running.result(timeout=30) == 1
    assert runs_of(runs) == {0: 1, 1: 1, 2: 1}


def test_a_callback_added_to_a_done_future_runs_at_once(executor):
    with executor() as ex:
        future = ex.submit(square, 5)
        later = []
        future.add_done_callback(lambda f: later.append(f.result()))
        assert future.result(timeout=30) == 25
        assert wait_until(lambda: later == [25])
        now = []
        future.add_done_callback(lambda f: now.append(f.result()))
        assert now == [25]  # in this thread, before add_done_callback returned


def test_as_completed_and_wait(executor, tmp_path):
    gate = Gate(tmp_path / "gate")
    with executor(2) as ex:
        held = start_gated(ex, gate)
        quick, bad = ex.submit(square, 2), ex.submit(fail_on, 3)
        done, not_done = concurrent.futures.wait([held, quick], timeout=30, return_when=concurrent.futures.FIRST_COMPLETED)
        assert done == {quick} and not_done == {held}
        done, not_done = concurrent.futures.wait([held, bad], timeout=30, return_when=concurrent.futures.FIRST_EXCEPTION)
        assert done == {bad} and not_done == {held}
        done, not_done = concurrent.futures.wait([held, quick], timeout=0.2)  # ALL_COMPLETED times out
        assert not_done == {held}
        with pytest.raises(concurrent.futures.TimeoutError):
            list(concurrent.futures.as_completed([held, quick], timeout=0.2))
        gate.open()
        finished = list(concurrent.futures.as_completed([held, quick, bad], timeout=30))
        assert set(finished) == {held, quick, bad}
        done, not_done = concurrent.futures.wait([held, quick, bad], timeout=30)
        assert done == {held, quick, bad} and not not_done


@pytest.mark.parametrize("chunksize", [1, 2])
def test_map_order_and_the_exception_at_its_position(executor, chunksize):
    with executor() as ex:
        assert list(ex.map(square, range(10), chunksize=chunksize)) == [x * x for x in range(10)]
        pids = list(ex.map(pid_of_worker, range(6), chunksize=3))
        assert pids[0] == pids[1] == pids[2] and pids[3] == pids[4] == pids[5]  # a chunk is one job
        assert list(ex.map(pow, [2, 3], [5, 2, 9], chunksize=chunksize)) == [32, 9]  # the shortest
        results = ex.map(fail_on, [0, 1, 2, 3, 4, 5], chunksize=chunksize)
        before = [next(results) for _ in range(3 // chunksize * chunksize)]
        assert before == [x * x for x in range(len(before))]
        with pytest.raises(ValueError, match="bad job"):
            next(results)  # where the failed call's chunk begins
    with pytest.raises(ValueError):
        executor().map(square, [1], chunksize=0)


def test_map_is_lazy_and_times_out(executor, tmp_path):
    gate = Gate(tmp_path / "gate")
    with executor(2) as ex:
        results = ex.map(gate.job(which=[2]), [1, 2, 3], timeout=30)  # returns before any result
        assert next(results) == 1
        gate.wait_started(1, timeout=30)
        gate.open()
        assert list(results) == [4, 9]
        other = Gate(tmp_path / "other")
        waiting = ex.map(other.job(), [5], timeout=0.3)
        with pytest.raises(concurrent.futures.TimeoutError):
            next(waiting)
        other.open()


def test_shutdown_waits_or_not_and_submit_after_it_raises(executor, tmp_path):
    gate = Gate(tmp_path / "gate")
    ex = executor(1)
    running = start_gated(ex, gate)
    ex.shutdown(wait=False)  # returns while the call runs
    assert not running.done()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)
    gate.open()
    assert running.result(timeout=30) == 1
    other = executor(1)
    futures = [other.submit(square, x) for x in range(3)]
    other.shutdown(wait=True)
    assert all(f.done() for f in futures) and [f.result() for f in futures] == [0, 1, 4]


def test_shutdown_cancel_futures_cancels_the_pending_calls(executor, tmp_path):
    gate, runs = Gate(tmp_path / "gate"), tmp_path / "runs"
    runs.mkdir()
    ex = executor(1)
    running = start_gated(ex, gate)
    with calls_kept_pending():
        queued = [ex.submit(counted, x, str(runs)) for x in range(4)]
        ex.shutdown(wait=False, cancel_futures=True)
    gate.open()
    assert running.result(timeout=30) == 1
    assert queued[-1].cancelled()
    for future in queued:  # each either cancelled before it ran, or done
        assert future.cancelled() or future.result(timeout=30) >= 0
    ran = {x for x, future in enumerate(queued) if not future.cancelled()}
    assert wait_until(lambda: set(runs_of(runs)) == ran)


def test_the_context_manager_shuts_down_and_waits(executor):
    with executor() as ex:
        futures = [ex.submit(square, x) for x in range(3)]
    assert all(f.done() for f in futures)
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)


def test_a_worker_that_dies_breaks_its_call(executor):
    """The stdlib raises BrokenProcessPool; ours a BrokenExecutor too."""
    with executor(1, max_num_resubmissions=0) as ex:
        future = ex.submit(os._exit, 1)
        assert isinstance(future.exception(timeout=50), concurrent.futures.BrokenExecutor)
