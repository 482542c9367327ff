"""
Faults on a real single-node SLURM cluster: a killed driver, workers that
someone else cancels, holds or requeues, and scheduler commands that fail
transiently or for good. Each map completes with correct results or raises
the described error in bounded time, and leaves nothing in the queue.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pypoolparty import errors
from pypoolparty.core import event_log
from pypoolparty.slurm.array import Pool

from conftest import driver_script, TEST_SBATCH_OPTIONS, squeue_names, unique_name, wait_until

import conformance_jobs as jobs


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
    (map_dir,) = os.listdir(work_dir)
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


def new_pool(name, **kwargs):
    kwargs.setdefault("sbatch_options", dict(TEST_SBATCH_OPTIONS))
    kwargs.setdefault("polling_interval", 1.0)
    return Pool(job_name=name, **kwargs)


# ------------------------------------------------------- the driver dies
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_driver_leaves_no_job_in_the_queue(slurm, tmp_path, sig):
    name = unique_name("kill")
    script = driver_script(tmp_path, name)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(tmp_path))
    try:
        assert wait_until(lambda: len(tasks_in(name, "RUNNING")) == 2, timeout=60)
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -sig
    assert wait_until(lambda: squeue_names(name) == [], timeout=15)


def test_the_pool_installs_no_signal_handler(slurm):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with new_pool(unique_name()) as pool:
        assert pool.map(jobs.square, [1, 2]) == [1, 4]
        assert {s: signal.getsignal(s) for s in before} == before
    assert {s: signal.getsignal(s) for s in before} == before


# ------------------------------------------- someone else acts on workers
def test_a_worker_cancelled_by_someone_else_is_replaced(slurm, tmp_path):
    name = unique_name()
    wd = str(tmp_path / "wd")
    pool = new_pool(name, processes=2, work_dir=wd, keep_work_dir=True)
    result = pool.map_async(jobs.sleep_then_return, [4, 4, 4, 4], chunksize=1)
    # The victim must hold a chunk: pick the claimant of chunk 0.
    claim = lambda: [os.path.join(wd, d, "claims", "0") for d in os.listdir(wd)][0]
    assert wait_until(lambda: os.path.exists(claim()), timeout=60)
    with open(claim()) as f:
        victim = f.read().strip()
    subprocess.run(["scancel", victim], check=True)
    assert result.get(timeout=120) == [4, 4, 4, 4]
    lost = [e for e in events_of(wd) if e["event"] == "chunk_lost"]
    assert [e["worker"] for e in lost] == [victim]
    assert lost[0]["scheduler_state"] == "CANCELLED"
    assert wait_until(lambda: squeue_names(name) == [], timeout=10)


def test_a_held_worker_is_cancelled_and_resubmitted(slurm, tmp_path):
    name = unique_name()
    blocker = sbatch("--job-name=" + name + "-blocker", "--exclusive", "--wrap", "sleep 300")
    try:
        assert wait_until(lambda: tasks_in(name + "-blocker", "RUNNING") != [], timeout=30)
        wd = str(tmp_path / "wd")
        pool = new_pool(name, processes=1, work_dir=wd, keep_work_dir=True)
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
    assert wait_until(lambda: squeue_names(name) == [], timeout=10)


def append_and_sleep(args):
    path, x = args
    with open(path, "a") as f:
        f.write("{:d}\n".format(x))
    time.sleep(3)
    return x


def test_a_requeued_worker_finishes_its_chunks_and_results_count_once(slurm, tmp_path):
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
    assert wait_until(lambda: squeue_names(name) == [], timeout=10)


# ----------------------------------------- scheduler commands that fail
def test_transient_squeue_failures_are_retried(slurm, tmp_path):
    squeue, counter = wrapper(
        tmp_path, "squeue", "squeue", 3,
        "slurm_load_jobs error: Socket timed out on send/recv operation",
    )
    name = unique_name()
    pool = new_pool(name, squeue_path=squeue, processes=2)
    assert pool.map_async(jobs.sleep_then_return, [3, 3]).get(timeout=120) == [3, 3]
    assert int(counter.read_text()) >= 4


def test_transient_scancel_failures_are_retried(slurm, tmp_path):
    scancel, counter = wrapper(
        tmp_path, "scancel", "scancel", 2,
        "scancel: error: Kill job error on job id 1: Unable to contact slurm controller (connect failure)",
    )
    name = unique_name()
    pool = new_pool(name, scancel_path=scancel, processes=2)
    with pytest.raises(ValueError):
        pool.map_async(jobs.fail_on_two, range(2, 8), chunksize=1).get(timeout=120)
    assert int(counter.read_text()) >= 3
    assert wait_until(lambda: squeue_names(name) == [], timeout=15)


def test_a_permanent_squeue_failure_raises_in_seconds(slurm, tmp_path):
    squeue, _ = wrapper(
        tmp_path, "squeue", "squeue", 10 ** 6, "squeue: error: Invalid user: nobody_here"
    )
    name = unique_name()
    pool = new_pool(name, squeue_path=squeue, processes=2)
    t0 = time.monotonic()
    with pytest.raises(errors.SchedulerCommandError, match="Invalid user"):
        pool.map_async(jobs.sleep_then_return, [30, 30]).get(timeout=60)
    assert time.monotonic() - t0 < 15
    assert wait_until(lambda: squeue_names(name) == [], timeout=10)
