"""
Workers that die without a result, on the real SLURM: the map never hangs.
"""
import os
import signal
import time

import pytest

from pypoolparty import errors
from pypoolparty.core import event_log
from pypoolparty.slurm.array import Pool

from conftest import TEST_SBATCH_OPTIONS, squeue_names, unique_name, wait_until
from fake_jobs import map_dirs


def die_once(marker_dir, how):
    """A job function whose first call kills its worker process."""

    def job(x):
        marker = os.path.join(marker_dir, "died")
        if x == 0 and not os.path.exists(marker):
            open(marker, "w").close()
            if how == "exit":
                os._exit(3)
            os.kill(os.getpid(), signal.SIGKILL)
        return x + 1

    return job


def always_die(x):
    os._exit(7)


@pytest.mark.parametrize("how,processes", [("exit", 2), ("sigkill", 2), ("exit", 1)])
def test_jobs_of_a_dead_worker_are_resubmitted(slurm, tmp_path, how, processes):
    wd = tmp_path / "wd"
    pool = Pool(
        processes=processes,
        sbatch_options=dict(TEST_SBATCH_OPTIONS),
        polling_interval=1.0,
        work_dir=str(wd),
        keep_work_dir=True,
    )
    t0 = time.monotonic()
    result = pool.map_async(die_once(str(tmp_path), how), range(10), chunksize=2)
    assert result.get(timeout=90) == list(range(1, 11))
    assert time.monotonic() - t0 < 60
    (map_dir,) = map_dirs(wd)
    events = event_log.read(str(wd / map_dir / "log.jsonl"))
    lost = [e for e in events if e["event"] == "chunk_lost"]
    assert [e["chunk"] for e in lost] == [0]
    assert lost[0]["scheduler_state"] in ("FAILED", "")
    submissions = len([e for e in events if e["event"] == "submitted"])
    if processes == 1:
        assert submissions == 2  # nobody else could take the lost chunk
    else:
        # The other worker takes it if it is free by then, else a new one.
        assert submissions in (1, 2)


def test_jobs_lost_too_often_raise_with_the_reason(slurm, tmp_path):
    name = unique_name()
    pool = Pool(
        processes=1,
        sbatch_options=dict(TEST_SBATCH_OPTIONS),
        polling_interval=1.0,
        max_num_resubmissions=1,
        job_name=name,
        work_dir=str(tmp_path / "wd"),
    )
    t0 = time.monotonic()
    result = pool.map_async(always_die, range(3), chunksize=3)
    with pytest.raises(errors.JobsLostError) as info:
        result.get(timeout=90)
    assert time.monotonic() - t0 < 60
    msg = str(info.value)
    assert "jobs 0 to 2" in msg
    assert "FAILED" in msg
    assert "max_num_resubmissions=1" in msg
    assert info.value.job_indices == [0, 1, 2]
    assert os.path.isdir(info.value.work_dir)
    assert isinstance(info.value, RuntimeError)
    pool.close()
    pool.join()
    assert wait_until(lambda: squeue_names(name) == [], timeout=10)


def test_workers_that_cannot_start_end_the_map_with_a_clear_error(slurm, tmp_path):
    name = unique_name()
    pool = Pool(
        processes=2,
        python_path=str(tmp_path / "no-such-python"),
        sbatch_options=dict(TEST_SBATCH_OPTIONS),
        polling_interval=1.0,
        max_num_resubmissions=1,
        job_name=name,
    )
    t0 = time.monotonic()
    result = pool.map_async(abs, range(4))
    with pytest.raises(errors.JobsLostError) as info:
        result.get(timeout=90)
    assert time.monotonic() - t0 < 60
    msg = str(info.value)
    assert "without returning any result" in msg
    assert "no-such-python" in msg  # the tail of the worker's output
    pool.close()
    pool.join()
    assert wait_until(lambda: squeue_names(name) == [], timeout=10)
