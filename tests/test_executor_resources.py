"""
Per-call resources on an executor: equal ``resource_dict``\\ s share
workers, different ones get their own; a wrong key fails before anything
is submitted; ``cwd``; and calls on several MPI ranks (``cores``) on this
machine's processes, under a real ``mpirun``.
"""
import concurrent.futures
import os
import time

import pytest

import mpi_jobs
import pypoolparty.processes
from fake_jobs import square
from pypoolparty.core.executor import ClusterExecutor
from pypoolparty.testing import fake

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake_executor(tmp_path):
    made = []

    def make(max_workers=2, **options):
        scheduler = fake.FakeScheduler()
        pool = fake.ClusterPool(
            max_workers, scheduler=scheduler, work_dir=str(tmp_path), polling_interval=0.05, **options
        )
        made.append(ClusterExecutor(pool))
        return made[-1]

    yield make
    for ex in made:
        ex.shutdown(wait=True, cancel_futures=True)
        ex._pool.scheduler.shutdown()


def submissions(scheduler):
    return [call.request for call in scheduler.calls_of("submit")]


def test_equal_resources_share_workers_and_each_set_has_its_own(fake_executor):
    ex = fake_executor()
    small = [ex.submit(square, x, resource_dict={"mem": "1G"}) for x in range(4)]
    big = [ex.submit(square, x, resource_dict={"time": "5", "mem": "2G"}) for x in range(3)]
    assert [f.result(timeout=30) for f in small] == [0, 1, 4, 9]
    assert [f.result(timeout=30) for f in big] == [0, 1, 4]
    base = ex._pool.scheduler
    assert [d.resources.option_dict() for d in base.derived] == [{"mem": "1G"}, {"mem": "2G", "time": "5"}]
    assert [len(submissions(d)) for d in base.derived] == [1, 1]  # each burst one array
    assert submissions(base) == []  # no call without resources: the base pool started nothing
    # the same dict in another order later: the same workers, no new set
    assert ex.submit(square, 5, resource_dict={"mem": "2G", "time": "5"}).result(timeout=30) == 25
    assert len(base.derived) == 2
    assert ex.submit(square, 6).result(timeout=30) == 36
    assert len(submissions(base)) == 1


def test_a_wrong_resource_dict_fails_at_submit_before_anything_is_submitted(fake_executor):
    ex = fake_executor()
    with pytest.raises(ValueError, match="'memory'.*nothing was submitted"):
        ex.submit(square, 2, resource_dict={"memory": "2G"})
    with pytest.raises(ValueError, match="cores"):
        ex.submit(square, 2, resource_dict={"cores": 0})
    base = ex._pool.scheduler
    assert base.derived == [] and base.calls["submit"] == 0
    assert ex.submit(square, 3).result(timeout=30) == 9


def test_cwd_is_where_the_call_runs(fake_executor, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ex = fake_executor()
    here = ex.submit(os.getcwd).result(timeout=30)
    there = ex.submit(os.getcwd, resource_dict={"cwd": str(elsewhere)}).result(timeout=30)
    assert there == str(elsewhere) and here == os.getcwd() != there


def test_shutdown_closes_the_pool_of_every_set_of_resources(fake_executor):
    ex = fake_executor()
    futures = [ex.submit(square, x, resource_dict={"mem": str(x)}) for x in range(3)]
    pools = ex._pools.all()
    assert len(pools) == 4
    ex.shutdown(wait=True)
    assert [f.result(timeout=0) for f in futures] == [0, 1, 4]
    assert all(p._state != "RUN" for p in pools)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1, resource_dict={"mem": "9"})
    assert len(ex._pools.all()) == 4


# ---------------------------------------------------------------- MPI


@pytest.fixture
def mpi_executor(mpi, tmp_path):
    made = []

    def make(max_workers=1, **options):
        made.append(pypoolparty.processes.Executor(max_workers, work_dir=str(tmp_path), **options))
        return made[-1]

    yield make
    for ex in made:
        ex.shutdown(wait=True, cancel_futures=True)


def test_a_call_on_two_cores_runs_on_two_mpi_ranks_that_stay_up_between_calls(mpi_executor):
    ex = mpi_executor(1, initializer=mpi_jobs.note_init, initargs=("ready",))
    futures = [ex.submit(mpi_jobs.ranks, x, resource_dict={"cores": 2}) for x in (1, 2, 3)]
    results = [f.result(timeout=30) for f in futures]
    for x, ranks in zip((1, 2, 3), results):
        assert [r["rank"] for r in ranks] == [0, 1]
        assert {r["size"] for r in ranks} == {2}
        assert {r["total"] for r in ranks} == {2 * x}  # a collective on COMM_WORLD
        assert {tuple(r["init"]) for r in ranks} == {("ready",)}  # on every rank, once
    # one worker, its two ranks served every call
    assert len({(r[0]["pid"], r[1]["pid"]) for r in results}) == 1
    again = ex.submit(mpi_jobs.ranks, 4, resource_dict={"cores": 2}).result(timeout=30)
    assert (again[0]["pid"], again[1]["pid"]) == (results[0][0]["pid"], results[0][1]["pid"])
    plain = ex.submit(mpi_jobs.environment, "OMPI_COMM_WORLD_SIZE").result(timeout=30)
    assert plain == {"OMPI_COMM_WORLD_SIZE": None}  # a call without cores: no MPI


def test_a_rank_that_raises_fails_the_call_with_its_exception(mpi_executor):
    ex = mpi_executor(1)
    future = ex.submit(mpi_jobs.fail_on_rank, 7, resource_dict={"cores": 3, "openmpi_oversubscribe": True})
    with pytest.raises(mpi_jobs.RankError, match="rank 1 fails on 7") as info:
        future.result(timeout=30)
    assert "on MPI rank 1" in str(info.value.__cause__)
    ok = ex.submit(mpi_jobs.fail_on_rank, 8, 5, resource_dict={"cores": 3, "openmpi_oversubscribe": True})
    assert ok.result(timeout=30) == [0, 1, 2]


# ---------------------------------------------------------------- store


def test_a_store_serves_an_executors_calls_again_without_a_submission(fake_executor, tmp_path):
    store = str(tmp_path / "store")
    first = fake_executor(cache_dir=store)
    assert [f.result(timeout=30) for f in [first.submit(square, x) for x in range(3)]] == [0, 1, 4]
    again = fake_executor(cache_dir=store)
    assert [f.result(timeout=30) for f in [again.submit(square, x) for x in range(4)]] == [0, 1, 4, 9]
    # only the new call ran: one submission for it, none for the stored ones
    assert again._pool.scheduler.calls["submit"] == 1
    assert len(again._pool.scheduler.calls_of("submit")[0].worker_ids) == 1


def test_a_call_on_mpi_ranks_is_stored_apart_from_the_same_call_on_one(mpi_executor, tmp_path):
    store = str(tmp_path / "store")
    size = "OMPI_COMM_WORLD_SIZE"
    ex = mpi_executor(1, cache_dir=store)
    on_two = ex.submit(mpi_jobs.environment, size, resource_dict={"cores": 2}).result(timeout=30)
    alone = ex.submit(mpi_jobs.environment, size).result(timeout=30)
    assert on_two == [{size: "2"}, {size: "2"}] and alone == {size: None}
    ex.shutdown(wait=True)
    again = mpi_executor(1, cache_dir=store)
    assert again.submit(mpi_jobs.environment, size, resource_dict={"cores": 2}).result(timeout=30) == on_two
    assert again.submit(mpi_jobs.environment, size).result(timeout=30) == alone
    # both from the store: no pool of the new executor started a worker
    assert [p._launcher.fleet_or_none for p in again._pools.all()] == [None, None]


def test_the_local_executor_runs_mpi_calls_and_other_directories_on_processes(mpi, tmp_path, monkeypatch):
    import pypoolparty.local

    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pypoolparty.local.Executor(2, initializer=mpi_jobs.note_init, initargs=("set",)) as ex:
        ranks = ex.submit(mpi_jobs.ranks, 2, resource_dict={"cores": 2}).result(timeout=60)
        assert [(r["rank"], r["size"], r["total"]) for r in ranks] == [(0, 2, 4), (1, 2, 4)]
        assert [r["init"] for r in ranks] == [["set"], ["set"]]  # the executor's initializer ran there too
        there = ex.submit(os.getcwd, resource_dict={"cwd": str(elsewhere)})
        first = ex.submit(mpi_jobs.ranks, 1, resource_dict={"cores": 2})
        chained = ex.submit(len, first)  # a future as argument, across the two
        assert there.result(timeout=60) == str(elsewhere)
        assert chained.result(timeout=60) == 2
        assert ex.submit(os.getcwd).result(timeout=60) == str(tmp_path)
        assert ex._elsewhere is not None
    assert ex._elsewhere._pool._state != "RUN"


def test_the_ranks_of_an_idle_mpi_worker_do_not_spin(mpi_executor):
    ex = mpi_executor(1)
    ranks = ex.submit(mpi_jobs.ranks, 1, resource_dict={"cores": 2}).result(timeout=30)
    follower = ranks[1]["pid"]
    before = mpi_jobs.cpu_ticks(follower)
    time.sleep(2.0)  # the worker waits for the next call meanwhile
    used = mpi_jobs.cpu_ticks(follower) - before
    assert used < 0.1 * 2.0 * os.sysconf("SC_CLK_TCK"), used  # under a tenth of a CPU


def test_a_rank_that_exits_loses_the_call_instead_of_hanging_it(mpi_executor):
    ex = mpi_executor(1, max_num_resubmissions=0)
    future = ex.submit(mpi_jobs.exit_on_rank, 5, resource_dict={"cores": 2})
    assert isinstance(future.exception(timeout=40), concurrent.futures.BrokenExecutor)
