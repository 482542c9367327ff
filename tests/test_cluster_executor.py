"""
The ``concurrent.futures.Executor`` of the real schedulers: a burst of
calls travels in one array, results and exceptions come back on their
futures, and ``shutdown()`` leaves nothing in the queue.
"""
import concurrent.futures
import os

import pytest

import conformance_jobs as jobs
import mpi_jobs
import pypoolparty.slurm
import pypoolparty.sun_grid_engine
from conftest import TEST_SBATCH_OPTIONS
from pypoolparty.core import event_log

pytestmark = pytest.mark.timeout(240)

EXECUTORS = {
    "slurm": (pypoolparty.slurm.Executor, {"sbatch_options": TEST_SBATCH_OPTIONS}),
    "sun_grid_engine": (pypoolparty.sun_grid_engine.Executor, {}),
}


@pytest.fixture(
    params=[
        pytest.param("slurm", marks=[pytest.mark.cluster, pytest.mark.slurm]),
        pytest.param("sun_grid_engine", marks=[pytest.mark.cluster, pytest.mark.sge]),
    ]
)
def executor_class(request):
    request.getfixturevalue("slurm" if request.param == "slurm" else "sge")
    cls, options = EXECUTORS[request.param]

    def make(*args, **kwargs):
        return cls(*args, **options, polling_interval=1.0, **kwargs)

    make.kind = request.param
    return make


def test_a_burst_of_calls_is_one_submission_and_shutdown_leaves_nothing(executor_class, tmp_path):
    ex = executor_class(2, work_dir=str(tmp_path / "wd"), keep_work_dir=True)
    futures = [ex.submit(jobs.square, x) for x in range(8)]
    assert [f.result(timeout=120) for f in futures] == [x * x for x in range(8)]
    assert list(ex.map(pow, [2, 3], [3, 2], timeout=120)) == [8, 9]
    bad = ex.submit(jobs.raise_custom, 5)
    assert isinstance(bad.exception(timeout=120), jobs.CustomError)
    events = event_log.read(ex._pool._pool_dir.log_path)
    submitted = [w for e in events if e["event"] == "submitted" for w in e["workers"]]
    assert len([e for e in events if e["event"] == "submitted"]) == 1
    ex.shutdown(wait=True)
    statuses = ex._pool.scheduler.states(submitted, event_log.EventLog())
    assert [w for w in submitted if w in statuses and statuses[w].state.is_alive] == []
    with pytest.raises(RuntimeError):
        ex.submit(jobs.square, 1)
    assert concurrent.futures.wait(futures, timeout=1).not_done == set()
    assert os.path.isdir(str(tmp_path / "wd"))


#: Per scheduler: a resource_dict of the scheduler's own options, and one of a
#: call on two MPI ranks.
RESOURCES = {
    "slurm": ({"mem": "100M"}, {"cores": 2, "slurm_cmd_args": ["--mpi=pmix"]}),
    "sun_grid_engine": ({"l": "h_rt=600"}, {"cores": 2, "pe": "mpi"}),
}


def test_each_set_of_resources_has_its_own_array_and_mpi_calls_run_on_ranks(
    executor_class, tmp_path, mpi
):
    kind = executor_class.kind
    options, on_ranks = RESOURCES[kind]
    # Idle workers of one set hold their slots until idle_timeout: on the
    # test cluster's two slots, the MPI call's job waits for them to leave.
    with executor_class(2, work_dir=str(tmp_path / "wd"), idle_timeout=3.0) as ex:
        plain = ex.submit(mpi_jobs.job_of, 0)
        sized = [ex.submit(mpi_jobs.job_of, x, resource_dict=options) for x in (1, 2)]
        ranks = ex.submit(mpi_jobs.ranks, 5, resource_dict=on_ranks)
        plain, sized = plain.result(timeout=180), [f.result(timeout=180) for f in sized]
        ranks = ranks.result(timeout=180)
        with pytest.raises(ValueError, match="nothing was submitted"):
            ex.submit(mpi_jobs.job_of, 3, resource_dict={"no_such_option": 1})
    # equal resources shared an array; each set had its own
    assert sized[0]["job"] == sized[1]["job"] != plain["job"] is not None
    if kind == "slurm":
        assert sized[0]["mem"] == "100" and plain["mem"] != "100"
    # the MPI call: two ranks of one job, a collective over COMM_WORLD
    assert [(r["rank"], r["size"], r["total"]) for r in ranks] == [(0, 2, 10), (1, 2, 10)]
    assert len(ex._pools.all()) == 3


@pytest.mark.cluster
@pytest.mark.slurm
def test_a_call_on_slurm_takes_another_calls_result(slurm, tmp_path):
    """A chain a -> b: b waits on the driver, then runs in a SLURM job with a's result."""
    cls, options = EXECUTORS["slurm"]
    with cls(2, work_dir=str(tmp_path / "wd"), polling_interval=1.0, **options) as ex:
        a = ex.submit(jobs.square, 7)
        b = ex.submit(lambda x: (x + 1, os.environ.get("SLURM_JOB_ID")), a)
        value, job_id = b.result(timeout=120)
    assert value == 50 and job_id
