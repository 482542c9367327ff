"""
What the stdlib surface means on a real SLURM cluster: cancellation, one
squeue per poll for all maps in flight, one budget of processes, batching.
"""
import os
import textwrap
import time

import pytest

from pypoolparty import errors
from pypoolparty.core import event_log
from pypoolparty.slurm.array import Pool

import conformance_jobs as jobs
from conftest import TEST_SBATCH_OPTIONS, squeue_names, unique_name, wait_until


def map_logs(work_dir):
    out = []
    for name in sorted(os.listdir(work_dir)):
        out.append(event_log.read(os.path.join(work_dir, name, "log.jsonl")))
    return out


def test_terminate_cancels_every_job_and_resolves_results(slurm, tmp_path):
    name = unique_name()
    pool = Pool(processes=2, job_name=name, sbatch_options=dict(TEST_SBATCH_OPTIONS), polling_interval=1.0)
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


def test_maps_in_flight_share_one_squeue_per_poll_and_the_budget(slurm, tmp_path):
    calls = tmp_path / "squeue-calls"
    counting = tmp_path / "counting-squeue"
    counting.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            date +%s.%N >> {calls}
            exec squeue "$@"
            """.format(calls=calls)
        )
    )
    counting.chmod(0o755)
    wd = tmp_path / "wd"
    pool = Pool(
        processes=2,
        squeue_path=str(counting),
        sbatch_options=dict(TEST_SBATCH_OPTIONS),
        polling_interval=1.0,
        work_dir=str(wd),
        keep_work_dir=True,
    )
    t0 = time.monotonic()
    a = pool.map_async(jobs.sleep_then_return, [2, 2, 2, 2], chunksize=1)
    b = pool.map_async(jobs.sleep_then_return, [1, 1], chunksize=1)
    assert a.get(120) == [2, 2, 2, 2]
    assert b.get(120) == [1, 1]
    elapsed = time.monotonic() - t0
    num_calls = len(calls.read_text().split())
    assert 1 <= num_calls <= elapsed / 1.0 + 1
    # At most `processes` workers at once: the second map got its workers
    # when the first one's were done.
    logs = map_logs(str(wd))
    assert len(logs) == 2
    submitted = [e for log in logs for e in log if e["event"] == "submitted"]
    assert sum(len(e["workers"]) for e in submitted) == 4
    first_done = min(
        e["t"] for log in logs for e in log if e["event"] == "completed"
    )
    assert max(e["t"] for e in submitted) >= first_done


def test_a_loop_of_apply_async_is_one_submission(slurm, tmp_path):
    wd = tmp_path / "wd"
    pool = Pool(
        processes=2,
        sbatch_options=dict(TEST_SBATCH_OPTIONS),
        work_dir=str(wd),
        keep_work_dir=True,
    )
    results = [pool.apply_async(jobs.add, (i, i)) for i in range(30)]
    assert [r.get(60) for r in results] == [2 * i for i in range(30)]
    (log,) = map_logs(str(wd))
    sbatch = [e for e in log if e["event"] == "command" and "--parsable" in e["argv"]]
    assert len(sbatch) == 1
