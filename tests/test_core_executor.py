"""
The ``concurrent.futures.Executor`` surface on the core, on the fake
scheduler, on the processes pool and in ``pypoolparty.local.Executor``,
next to the stdlib's ``ProcessPoolExecutor`` where they must agree.
"""
import concurrent.futures
import functools
import os
import subprocess
import sys
import time

import pytest

import pypoolparty.processes
from executor_kinds import KINDS, executor_fixture
from fake_jobs import Gate, counted, fail_on, runs_of, slow_square, square, wait_until
from pypoolparty import errors
from pypoolparty.core.executor import ClusterExecutor
from pypoolparty.testing import fake

pytestmark = pytest.mark.timeout(60)


#: An executor of each kind; the stdlib's is the reference.
executor = executor_fixture(KINDS)


def test_submit_result_exception_and_as_completed(executor):
    with executor() as ex:
        futures = [ex.submit(square, x) for x in range(6)]
        assert all(isinstance(f, concurrent.futures.Future) for f in futures)
        assert sorted(f.result(timeout=30) for f in concurrent.futures.as_completed(futures, timeout=30)) == [
            x * x for x in range(6)
        ]
        bad = ex.submit(fail_on, 3)
        with pytest.raises(ValueError, match="bad job") as info:
            bad.result(timeout=30)
        assert info.value.__cause__ is not None  # the remote traceback
        assert isinstance(bad.exception(), ValueError)
        keyword = ex.submit(functools.partial(pow, 2), exp=5)
        assert keyword.result(timeout=30) == 32


def test_map_is_lazy_in_order_and_times_out(executor):
    with executor() as ex:
        assert list(ex.map(pow, [2, 3, 4], [2, 2, 2], timeout=30)) == [4, 9, 16]
        results = ex.map(slow_square, [1, 2], [1.0, 1.0], timeout=0.5)
        with pytest.raises(concurrent.futures.TimeoutError):
            list(results)


def test_callbacks_wait_and_shutdown(executor):
    ex = executor()
    seen = []
    future = ex.submit(square, 7)
    future.add_done_callback(lambda f: seen.append(f.result()))
    done, not_done = concurrent.futures.wait([future], timeout=30)
    assert done == {future} and not not_done
    assert wait_until(lambda: seen == [49])
    ex.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)


def test_a_call_not_yet_handed_on_can_be_cancelled(tmp_path):
    """A future is pending until its call goes to a map: cancel() works
    until then, the call never runs, and the others go on."""
    gate = Gate(tmp_path / "gate")
    with fake.pool(1, work_dir=tmp_path / "w") as pool:
        ex = ClusterExecutor(pool)
        first = ex.submit(gate.job(), 1)
        gate.wait_started(1)
        assert first.running() and not first.cancel()
        (tmp_path / "runs").mkdir()
        late = ex.submit(counted, 5, str(tmp_path / "runs"))
        assert late.cancel() and late.cancelled()
        kept = ex.submit(counted, 6, str(tmp_path / "runs"))
        gate.open()
        assert first.result(timeout=30) == 1 and kept.result(timeout=30) == 36
        ex.shutdown(wait=True)
    assert runs_of(tmp_path / "runs") == {6: 1}  # the cancelled call never ran


def test_shutdown_cancel_futures_cancels_the_pending_ones(tmp_path):
    with fake.pool(2, work_dir=tmp_path / "w") as pool:
        ex = ClusterExecutor(pool)
        futures = [ex.submit(square, x) for x in range(3)]
        ex.shutdown(wait=True, cancel_futures=True)
        for f in futures:  # each either cancelled before it ran, or done
            assert f.cancelled() or f.result(timeout=1) == f.result()


def test_a_worker_that_died_breaks_its_futures_as_the_stdlib_does(tmp_path):
    scheduler = fake.FakeScheduler()
    with fake.pool(1, work_dir=tmp_path / "w", scheduler=scheduler, max_num_resubmissions=0) as pool:
        ex = ClusterExecutor(pool)
        future = ex.submit(time.sleep, 30)
        assert wait_until(lambda: scheduler.worker_ids("RUNNING"), timeout=10)
        time.sleep(0.3)
        scheduler.lose(scheduler.worker_ids("RUNNING")[0])
        with pytest.raises(concurrent.futures.BrokenExecutor) as info:
            future.result(timeout=30)
        assert isinstance(info.value, errors.JobsLostError)


def test_the_local_executor_carries_lambdas_and_checks_resources():
    """Functions and the initializer travel with cloudpickle, as in local.Pool;
    a cluster's resource_dict is accepted, a misspelt key is not. The
    spawned process receives the initializer pickled (a forked one would not)."""
    import multiprocessing

    import pypoolparty.local

    offset = 10
    spawn = multiprocessing.get_context("spawn")
    with pypoolparty.local.Executor(1, spawn, initializer=lambda: None) as ex:
        assert ex.submit(lambda x: x + offset, 1, resource_dict=None).result(timeout=30) == 11
        assert list(ex.map(lambda x: -x, [1, 2], chunksize=2)) == [-1, -2]
        cluster = {"mem": "2G", "partition": "short", "l": "h_rt=60", "threads_per_core": 2}
        assert ex.submit(square, 3, resource_dict=cluster).result(timeout=30) == 9
        with pytest.raises(ValueError, match="'memory'"):
            ex.submit(square, 2, resource_dict={"memory": "2G"})
        assert ex._elsewhere is None  # those ran in the stdlib's processes
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)


EXITING_DRIVER = """
import os, sys, time
import pypoolparty.processes

def late_marker(path):
    time.sleep(1.0)
    open(path, "w").close()
    return 7

ex = pypoolparty.processes.Executor(1, work_dir=sys.argv[1])
future = ex.submit(late_marker, os.path.join(sys.argv[1], "marker"))
future.add_done_callback(lambda f: print("result", f.result(), flush=True))
ex.shutdown(wait=False)
"""


def test_calls_submitted_before_shutdown_without_wait_finish_before_the_program_exits(tmp_path):
    """As the stdlib documents it: the program does not exit until the
    pending futures are done, whatever ``wait`` was."""
    script = tmp_path / "driver.py"
    script.write_text(EXITING_DRIVER)
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(pypoolparty.processes.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "result 7" in proc.stdout, proc.stdout + proc.stderr
    assert (tmp_path / "marker").exists()
