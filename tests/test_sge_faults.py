"""
pypoolparty.sun_grid_engine.Pool on the real Grid Engine: lost and deleted
tasks, the -tc cap, held tasks and error states, a job that raises,
terminate(). Each ends with correct results or the described error in
bounded time, and leaves nothing in qstat.
"""
import functools
import os
import subprocess
import time
import xml.etree.ElementTree as ElementTree

import pytest

from pypoolparty import errors
from pypoolparty.core import event_log
from pypoolparty.core.event_log import EventLog
from pypoolparty.sun_grid_engine import Pool
from pypoolparty.sun_grid_engine.adapter import SgeArrayScheduler
from pypoolparty.sun_grid_engine.parsing import parse_qstat_gc_slots

import conformance_jobs as jobs
from conftest import (
    Sampler,
    claimant,
    most_at_once,
    noted_run,
    sleeping_workers,
    unique_name,
    wait_until,
)
from fake_jobs import map_dirs


def our_jobs(name):
    """(job number, state) of the jobs in qstat with this name."""
    out = subprocess.run(["qstat", "-xml"], stdout=subprocess.PIPE, text=True, check=True).stdout
    root = ElementTree.fromstring(out)
    return [
        (j.findtext("JB_job_number"), j.findtext("state"))
        for j in root.iter("job_list")
        if j.findtext("JB_name") == name
    ]


def qstat(*args):
    argv = ["qstat"] + list(args)
    return subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=True).stdout


def tasks_in(name, state):
    """Ids (job.task) of the tasks with this name in this state."""
    out = []
    for j in ElementTree.fromstring(qstat("-xml")).iter("job_list"):
        if j.findtext("JB_name") == name and j.findtext("state") == state:
            out.append("{:s}.{:s}".format(j.findtext("JB_job_number"), j.findtext("tasks") or "1"))
    return out


def events_of(work_dir):
    (map_dir,) = map_dirs(work_dir)
    return event_log.read(os.path.join(str(work_dir), map_dir, "log.jsonl"))


def named(events, name):
    return [e for e in events if e["event"] == name]


@pytest.fixture
def new_pool(sge):
    """Make pools; what a failed test left is deleted."""
    made = []

    def make(**kwargs):
        kwargs.setdefault("polling_interval", 1.0)
        made.append(Pool(**kwargs))
        return made[-1]

    yield make
    for pool in made:
        pool.terminate()


def die_once(marker):
    def job(x):
        if x == 0 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(3)
        return x + 1

    return job


def test_a_task_that_dies_is_resubmitted(sge, tmp_path, new_pool):
    name = unique_name()
    wd = tmp_path / "wd"
    pool = new_pool(processes=2, job_name=name, work_dir=str(wd), keep_work_dir=True)
    result = pool.map_async(die_once(str(tmp_path / "died")), range(6), chunksize=2)
    assert result.get(timeout=120) == list(range(1, 7))
    (map_dir,) = map_dirs(wd)
    events = event_log.read(str(wd / map_dir / "log.jsonl"))
    assert [e["chunk"] for e in events if e["event"] == "chunk_lost"] == [0]
    pool.close()
    pool.join()
    assert wait_until(lambda: our_jobs(name) == [], timeout=15)


def test_tasks_in_error_state_are_resubmitted_then_reported(sge, tmp_path, new_pool):
    name = unique_name()
    pool = new_pool(
        processes=1,
        polling_interval=1.0,
        max_num_resubmissions=1,
        job_name=name,
        qsub_options={"wd": str(tmp_path / "no" / "such" / "dir")},
    )
    result = pool.map_async(jobs.square, range(3))
    with pytest.raises(errors.JobsLostError) as info:
        result.get(timeout=120)
    msg = str(info.value)
    assert "Eqw" in msg
    assert "no/such/dir" in msg  # the reason from qstat -j
    assert "error state" in msg  # the hint
    pool.close()
    pool.join()
    assert wait_until(lambda: our_jobs(name) == [], timeout=15)


def test_terminate_leaves_nothing_in_qstat(sge, tmp_path, new_pool):
    name = unique_name()
    pool = new_pool(processes=2, polling_interval=1.0, job_name=name)
    result = pool.map_async(jobs.sleep_then_return, [300, 300, 300], chunksize=1)
    assert wait_until(lambda: sum(1 for _, s in our_jobs(name) if s == "r") >= 1, timeout=60)
    pool.terminate()
    pool.close()
    pool.join()
    assert wait_until(lambda: our_jobs(name) == [], timeout=15)
    with pytest.raises(errors.CancelledError):
        result.get(timeout=10)


def test_qsub_options_pass_through(sge, tmp_path):
    def env_of_task(_):
        return os.environ.get("PPP_MARK"), os.environ.get("QUEUE")

    with Pool(qsub_options={"q": "all.q", "v": "PPP_MARK=passed"}, polling_interval=1.0) as pool:
        assert pool.map(env_of_task, [0]) == [("passed", "all.q")]


def test_legacy_keywords_of_0_3_still_work(sge, tmp_path, new_pool):
    pool = new_pool(
        num_chunks=2,
        python_path=None,
        polling_interval=1.0,
        work_dir=str(tmp_path / "legacy"),
        keep_work_dir=False,
        max_num_resubmissions=2,
        verbose=False,
        qsub_path="qsub",
        queue_name="all.q",
        qstat_path="qstat",
        error_state_indicator="E",
        qdel_path="qdel",
    )
    assert pool.map(jobs.square, range(5)) == [0, 1, 4, 9, 16]


def test_a_deleted_task_is_replaced_within_processes(sge, tmp_path, new_pool):
    """Six chunks, one task at a time; someone else deletes it."""
    assert parse_qstat_gc_slots(qstat("-g", "c")) >= 2, "room for more than one task"
    name = unique_name()
    wd, notes = tmp_path / "wd", tmp_path / "notes"
    notes.mkdir()
    pool = new_pool(processes=1, job_name=name, work_dir=str(wd), keep_work_dir=True)
    sampler = Sampler(lambda: len(tasks_in(name, "r")))
    try:
        func = functools.partial(noted_run, str(notes), 1.5)
        result = pool.map_async(func, range(6), chunksize=1)
        victim = claimant(str(wd), chunk=0)
        subprocess.run(["qdel", victim], check=True, stdout=subprocess.DEVNULL)
        assert result.get(timeout=120) == list(range(6))
    finally:
        most_in_qstat = sampler.stop()
        pool.terminate()
    assert most_in_qstat == 1
    assert most_at_once(str(notes)) == 1
    events = events_of(wd)
    assert [e["worker"] for e in named(events, "chunk_lost")] == [victim]
    qsubs = [e["argv"] for e in named(events, "command") if e["argv"][0] == "qsub"]
    assert len(qsubs) == 2  # the replacement
    assert all(argv[argv.index("-tc") + 1] == "1" for argv in qsubs)
    pool.close()
    pool.join()
    assert wait_until(lambda: our_jobs(name) == [], timeout=15)


def test_the_tc_cap_holds_an_array_to_max_running_tasks(sge, tmp_path):
    """The adapter asked for more tasks than may run: -tc holds them back."""
    assert parse_qstat_gc_slots(qstat("-g", "c")) >= 2, "room for more than one task"
    name = unique_name()
    request = sleeping_workers(name, tmp_path, num_workers=4, max_running=1)
    sampler = Sampler(lambda: len(tasks_in(name, "r")))
    ids = []
    try:
        ids = SgeArrayScheduler().submit(request, EventLog())
        assert wait_until(lambda: our_jobs(name) == [], timeout=60)
    finally:
        most_in_qstat = sampler.stop()
        if our_jobs(name):
            subprocess.run(["qdel", ids[0].split(".")[0]], stdout=subprocess.DEVNULL)
    assert len(ids) == 4
    assert most_in_qstat == 1
    assert len(os.listdir(tmp_path)) == 4  # each task ran and wrote its log


def test_a_job_that_raises_cancels_the_rest_of_the_map(sge, new_pool):
    name = unique_name()
    pool = new_pool(processes=2, polling_interval=1.0, job_name=name)
    t0 = time.monotonic()
    result = pool.map_async(jobs.fail_first_else_sleep, range(6), chunksize=1)
    with pytest.raises(ValueError, match="first"):
        result.get(timeout=60)
    assert time.monotonic() - t0 < 60
    pool.close()
    pool.join()
    assert wait_until(lambda: our_jobs(name) == [], timeout=15)


def test_a_held_task_is_cancelled_and_resubmitted(sge, tmp_path, new_pool):
    name = unique_name()
    slots = parse_qstat_gc_slots(qstat("-g", "c"))
    blocker = subprocess.run(
        ["qsub", "-terse", "-b", "y", "-t", "1-{:d}".format(slots), "-N", name + "-blocker",
         "-o", "/dev/null", "-j", "y", "sleep", "300"],
        stdout=subprocess.PIPE, text=True, check=True,
    ).stdout.strip().split(".")[0]
    wd = tmp_path / "wd"
    try:
        assert wait_until(lambda: len(tasks_in(name + "-blocker", "r")) == slots, timeout=30)
        pool = new_pool(processes=1, job_name=name, work_dir=str(wd), keep_work_dir=True)
        result = pool.map_async(jobs.square, range(4))
        assert wait_until(lambda: tasks_in(name, "qw") != [], timeout=30)
        (held,) = tasks_in(name, "qw")
        subprocess.run(["qhold", held], check=True, stdout=subprocess.DEVNULL)
        assert wait_until(lambda: named(events_of(wd), "held_cancelled") != [], timeout=30)
    finally:
        subprocess.run(["qdel", blocker], check=True, stdout=subprocess.DEVNULL)
    assert result.get(timeout=60) == [0, 1, 4, 9]
    events = events_of(wd)
    (cancelled,) = named(events, "held_cancelled")
    assert cancelled["worker"] == held
    assert "h" in cancelled["scheduler_state"]
    assert len(named(events, "submitted")) == 2
    pool.close()
    pool.join()
    assert wait_until(lambda: our_jobs(name) == [], timeout=15)


def test_queue_name_is_the_queue_of_qsub(sge, tmp_path, new_pool):
    def queue_of_task(_):
        return os.environ.get("QUEUE")

    wd = tmp_path / "wd"
    pool = new_pool(queue_name="all.q", work_dir=str(wd), keep_work_dir=True)
    assert pool.map(queue_of_task, [0]) == ["all.q"]
    (qsub,) = [e["argv"] for e in named(events_of(wd), "command") if e["argv"][0] == "qsub"]
    assert qsub[qsub.index("-q") + 1] == "all.q"
    pool = new_pool(queue_name="no-such.q")
    with pytest.raises(errors.SchedulerCommandError, match="no-such.q"):
        pool.map(jobs.square, [1])
