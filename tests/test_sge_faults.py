"""
pypoolparty.sun_grid_engine.Pool on the real Grid Engine: lost tasks,
error states, cancellation. Each ends with correct results or the described
error in bounded time, and leaves nothing in qstat.
"""
import os
import subprocess
import xml.etree.ElementTree as ElementTree

import pytest

from pypoolparty import errors
from pypoolparty.core import event_log
from pypoolparty.sun_grid_engine import Pool

import conformance_jobs as jobs
from conftest import unique_name, wait_until


def our_jobs(name):
    """(job number, state) of the jobs in qstat with this name."""
    out = subprocess.run(["qstat", "-xml"], stdout=subprocess.PIPE, text=True, check=True).stdout
    root = ElementTree.fromstring(out)
    return [
        (j.findtext("JB_job_number"), j.findtext("state"))
        for j in root.iter("job_list")
        if j.findtext("JB_name") == name
    ]


def die_once(marker):
    def job(x):
        if x == 0 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(3)
        return x + 1

    return job


def test_a_task_that_dies_is_resubmitted(sge, tmp_path):
    name = unique_name()
    wd = tmp_path / "wd"
    pool = Pool(processes=2, polling_interval=1.0, job_name=name, work_dir=str(wd), keep_work_dir=True)
    result = pool.map_async(die_once(str(tmp_path / "died")), range(6), chunksize=2)
    assert result.get(timeout=120) == list(range(1, 7))
    (map_dir,) = os.listdir(wd)
    events = event_log.read(str(wd / map_dir / "log.jsonl"))
    assert [e["chunk"] for e in events if e["event"] == "chunk_lost"] == [0]
    assert wait_until(lambda: our_jobs(name) == [], timeout=15)


def test_tasks_in_error_state_are_resubmitted_then_reported(sge, tmp_path):
    name = unique_name()
    pool = Pool(
        processes=1,
        polling_interval=1.0,
        max_num_resubmissions=1,
        job_name=name,
        qsub_options={"wd": str(tmp_path / "no" / "such" / "dir")},
    )
    with pytest.raises(errors.JobsLostError) as info:
        pool.map_async(jobs.square, range(3)).get(timeout=120)
    msg = str(info.value)
    assert "Eqw" in msg
    assert "no/such/dir" in msg  # the reason from qstat -j
    assert "error state" in msg  # the hint
    assert wait_until(lambda: our_jobs(name) == [], timeout=15)


def test_terminate_leaves_nothing_in_qstat(sge, tmp_path):
    name = unique_name()
    pool = Pool(processes=2, polling_interval=1.0, job_name=name)
    result = pool.map_async(jobs.sleep_then_return, [300, 300, 300], chunksize=1)
    assert wait_until(lambda: sum(1 for _, s in our_jobs(name) if s == "r") >= 1, timeout=60)
    pool.terminate()
    assert wait_until(lambda: our_jobs(name) == [], timeout=15)
    with pytest.raises(errors.CancelledError):
        result.get(timeout=10)


def test_qsub_options_pass_through(sge, tmp_path):
    def env_of_task(_):
        return os.environ.get("PPP_MARK"), os.environ.get("QUEUE")

    with Pool(qsub_options={"q": "all.q", "v": "PPP_MARK=passed"}, polling_interval=1.0) as pool:
        assert pool.map(env_of_task, [0]) == [("passed", "all.q")]


def test_legacy_keywords_of_0_3_still_work(sge, tmp_path):
    pool = Pool(
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
