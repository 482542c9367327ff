"""
Faults on a real single-node SLURM cluster, for both SLURM pools (workers as
array tasks, ``pypoolparty.slurm.array.Pool``, and as single jobs,
``pypoolparty.slurm.Pool``): workers that someone else holds or requeues,
terminate(), a job that raises, and scheduler commands that fail transiently
or for good. Each map completes with correct results or raises the described
error in bounded time, and leaves nothing in the queue. (A worker someone
else cancels: test_slurm_budget.py; a driver that ends: test_slurm_driver_exit.py.)
"""
import os
import signal
import subprocess
import textwrap
import time

import pytest

from pypoolparty import errors
from pypoolparty.core import event_log
import pypoolparty.slurm
import pypoolparty.slurm.array

from conftest import TEST_SBATCH_OPTIONS, squeue_names, unique_name, wait_until

import conformance_jobs as jobs
from fake_jobs import map_dirs


def sbatch(*args):
    out = subprocess.run(
        ["sbatch", "--parsable", "--time=10", "--output=/dev/null"] + list(args),
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout
    return out.strip().split(";")[0]


def scontrol(*args):
    subprocess.run(["scontrol"] + list(args), check=True)


def tasks_in(name, state):
    return [i for i, s in squeue_names(name) if s == state]


def events_of(work_dir):
    (map_dir,) = map_dirs(work_dir)
    return event_log.read(os.path.join(work_dir, map_dir, "log.jsonl"))


def wrapper(tmp_path, name, real, fail_times, message, code=1):
    """A stand-in for a SLURM command that fails ``fail_times`` times first."""
    counter = tmp_path / (name + ".count")
    path = tmp_path / name
    path.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            n=$(cat {c} 2>/dev/null || echo 0)
            echo $((n + 1)) > {c}
            if [ "$n" -lt {k} ]; then echo "{m}" >&2; exit {code}; fi
            exec {real} "$@"
            """.format(c=counter, k=fail_times, m=message, code=code, real=real)
        )
    )
    path.chmod(0o755)
    return str(path), counter


POOLS = {"array": pypoolparty.slurm.array.Pool, "jobs": pypoolparty.slurm.Pool}


@pytest.fixture
def new_pool(slurm):
    """Make pools (of a kind of POOLS); what a failed test left is cancelled."""
    made = []

    def make(name, kind="array", **kwargs):
        kwargs.setdefault("sbatch_options", dict(TEST_SBATCH_OPTIONS))
        kwargs.setdefault("polling_interval", 1.0)
        made.append(POOLS[kind](job_name=name, **kwargs))
        return made[-1]

    yield make
    for pool in made:
        pool.terminate()


def test_the_pool_installs_no_signal_handler(slurm, new_pool):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with new_pool(unique_name()) as pool:
        assert pool.map(jobs.square, [1, 2]) == [1, 4]
        assert {s: signal.getsignal(s) for s in before} == before
    assert {s: signal.getsignal(s) for s in before} == before


# ------------------------------------------------- the caller gives up
@pytest.mark.parametrize("kind", sorted(POOLS))
def test_terminate_cancels_every_job_and_resolves_results(slurm, kind, new_pool):
    name = unique_name()
    pool = new_pool(name, kind, processes=2)
    first = pool.map_async(jobs.sleep_then_return, [300, 300])
    applied = pool.apply_async(jobs.sleep_then_return, (300,))
    running = lambda: sum(1 for _, s in squeue_names(name) if s == "RUNNING") == 2
    assert wait_until(running, timeout=60)
    pool.terminate()
    assert wait_until(lambda: squeue_names(name) == [], timeout=10)
    with pytest.raises(errors.CancelledError):
        first.get(timeout=10)
    with pytest.raises(errors.CancelledError):
        applied.get(timeout=10)


@pytest.mark.parametrize("kind", sorted(POOLS))
def test_a_job_that_raises_cancels_the_rest_of_the_map(slurm, kind, new_pool):
    name = unique_name()
    pool = new_pool(name, kind, processes=2)
    t0 = time.monotonic()
    result = pool.map_async(jobs.fail_first_else_sleep, range(6), chunksize=1)
    with pytest.raises(ValueError, match="first"):
        result.get(timeout=60)
    assert time.monotonic() - t0 < 60
    # The worker that ran the other jobs is cancelled; the one whose job
    # raised waits for the pool's next map, until the pool ends.
    assert wait_until(lambda: len(squeue_names(name)) == 1, timeout=10)
    assert pool.map(jobs.square, [3]) == [9]
    pool.terminate()
    assert wait_until(lambda: squeue_names(name) == [], timeout=10)


# ------------------------------------------- someone else acts on workers
@pytest.mark.parametrize("kind", sorted(POOLS))
def test_a_held_worker_is_cancelled_and_resubmitted(slurm, tmp_path, kind, new_pool):
    name = unique_name()
    blocker = sbatch("--job-name=" + name + "-blocker", "--exclusive", "--wrap", "sleep 300")
    try:
        assert wait_until(lambda: tasks_in(name + "-blocker", "RUNNING") != [], timeout=30)
        wd = str(tmp_path / "wd")
        pool = new_pool(name, kind, processes=1, work_dir=wd, keep_work_dir=True)
        result = pool.map_async(jobs.square, range(4))
        assert wait_until(lambda: tasks_in(name, "PENDING") != [], timeout=30)
        (held,) = tasks_in(name, "PENDING")
        scontrol("hold", held)
        assert wait_until(
            lambda: any(e["event"] == "held_cancelled" for e in events_of(wd)), timeout=30
        )
    finally:
        subprocess.run(["scancel", blocker], check=True)
    assert result.get(timeout=60) == [0, 1, 4, 9]
    events = events_of(wd)
    (cancelled,) = [e for e in events if e["event"] == "held_cancelled"]
    assert cancelled["worker"] == held
    assert "Held" in cancelled["reason"]
    assert len([e for e in events if e["event"] == "submitted"]) == 2
    pool.close()
    pool.join()
    assert squeue_names(name) == []


def append_and_sleep(args):
    path, x = args
    with open(path, "a") as f:
        f.write("{:d}\n".format(x))
    time.sleep(3)
    return x


def test_a_requeued_worker_finishes_its_chunks_and_results_count_once(slurm, tmp_path, new_pool):
    name = unique_name()
    runs = tmp_path / "runs"
    pool = new_pool(name, processes=1)
    result = pool.map_async(append_and_sleep, [(str(runs), i) for i in range(4)], chunksize=2)
    assert wait_until(lambda: runs.exists() and runs.read_text() != "", timeout=60)
    (worker,) = tasks_in(name, "RUNNING")
    scontrol("requeue", worker)
    assert result.get(timeout=120) == [0, 1, 2, 3]
    executed = [int(x) for x in runs.read_text().split()]
    assert executed.count(0) == 2  # the requeue ran job 0 again ...
    assert sorted(set(executed)) == [0, 1, 2, 3]  # ... and each result counts once
    pool.close()
    pool.join()
    assert squeue_names(name) == []


# ----------------------------------------- scheduler commands that fail
def test_transient_squeue_failures_are_retried(slurm, tmp_path, new_pool):
    squeue, counter = wrapper(
        tmp_path, "squeue", "squeue", 3,
        "slurm_load_jobs error: Socket timed out on send/recv operation",
    )
    name = unique_name()
    pool = new_pool(name, squeue_path=squeue, processes=2)
    assert pool.map_async(jobs.sleep_then_return, [3, 3]).get(timeout=120) == [3, 3]
    assert int(counter.read_text()) >= 4


def test_transient_scancel_failures_are_retried(slurm, tmp_path, new_pool):
    scancel, counter = wrapper(
        tmp_path, "scancel", "scancel", 2,
        "scancel: error: Kill job error on job id 1: Unable to contact slurm controller (connect failure)",
    )
    name = unique_name()
    pool = new_pool(name, scancel_path=scancel, processes=2)
    result = pool.map_async(jobs.sleep_then_return, [30, 30])
    assert wait_until(lambda: len(tasks_in(name, "RUNNING")) == 2, timeout=60)
    pool.terminate()
    with pytest.raises(errors.CancelledError):
        result.get(timeout=10)
    assert int(counter.read_text()) >= 3
    assert wait_until(lambda: squeue_names(name) == [], timeout=15)


def test_a_permanent_squeue_failure_raises_in_seconds(slurm, tmp_path, new_pool):
    squeue, _ = wrapper(
        tmp_path, "squeue", "squeue", 10 ** 6, "squeue: error: Invalid user: nobody_here"
    )
    name = unique_name()
    pool = new_pool(name, squeue_path=squeue, processes=2)
    t0 = time.monotonic()
    result = pool.map_async(jobs.sleep_then_return, [30, 30])
    with pytest.raises(errors.SchedulerCommandError, match="Invalid user"):
        result.get(timeout=60)
    assert time.monotonic() - t0 < 15
    pool.close()
    pool.join()  # cannot ask squeue: cancels the workers rather than hang
    assert wait_until(lambda: squeue_names(name) == [], timeout=10)
