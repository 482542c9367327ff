"""
Workers that outlive their map, on the real schedulers.

A loop of maps makes one submission; ``close(); join()`` returns once no
worker of the pool is left in the queue; an idle worker leaves after
``idle_timeout``; a worker near its time limit takes no chunk it cannot
finish.
"""
import os

import pytest

import conformance_jobs as jobs
from fake_jobs import pool_dirs, wait_until
from pool_kinds import CLUSTER_POOLS, pool_maker, with_marks
from pypoolparty.core import event_log

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(params=with_marks(list(CLUSTER_POOLS)))
def make_pool(request, tmp_path, monkeypatch):
    yield from pool_maker(request, tmp_path, monkeypatch)


def pool_events(pool, name):
    """Events ``name`` of the pool's log (while the pool is alive)."""
    return [e for e in event_log.read(pool._pool_dir.log_path) if e["event"] == name]


def exit_notes(pool):
    exits = pool._pool_dir.join("exits")
    return {n: open(os.path.join(exits, n)).read() for n in os.listdir(exits)}


def alive(pool, ids):
    """The ids the scheduler still reports pending or running."""
    log = event_log.EventLog()
    return [w for w, s in pool.scheduler.states(ids, log).items() if s.state.is_alive]


def test_a_loop_of_maps_submits_once_and_join_leaves_nothing(make_pool, tmp_path):
    pool = make_pool(2, work_dir=str(tmp_path / "wd"))
    for i in range(10):
        assert pool.map(jobs.square, range(i, i + 6)) == [x * x for x in range(i, i + 6)]
    (submitted,) = pool_events(pool, "submitted")
    ids = submitted["workers"]
    assert len(ids) == 2
    assert sorted(alive(pool, ids)) == sorted(ids)  # idle, waiting for work
    pool.close()
    pool.join()
    assert alive(pool, ids) == []
    assert pool_dirs(tmp_path / "wd") == []


def test_an_idle_worker_leaves_after_idle_timeout(make_pool, tmp_path):
    pool = make_pool(1, work_dir=str(tmp_path / "wd"), idle_timeout=2.0)
    assert pool.map(jobs.square, [3]) == [9]
    (wid,) = pool_events(pool, "submitted")[0]["workers"]
    assert wait_until(lambda: exit_notes(pool) == {wid: "idle"}, timeout=20)
    assert wait_until(lambda: alive(pool, [wid]) == [], timeout=20)
    assert pool.map(jobs.square, [4]) == [16]
    assert len(pool_events(pool, "submitted")) == 2


def test_a_worker_near_its_time_limit_leaves_instead_of_timing_out(make_pool, tmp_path):
    if make_pool.kind == "sun_grid_engine":
        options = {"qsub_options": {"l": "h_rt=0:0:20"}}
        num_jobs, seconds = 5, 4.0
    else:
        options = {"sbatch_options": {"time": "1"}}  # SLURM counts whole minutes
        num_jobs, seconds = 4, 15.0
    pool = make_pool(1, work_dir=str(tmp_path / "wd"), keep_work_dir=True, **options)
    assert pool.map(jobs.sleep_then_return, [seconds] * num_jobs, chunksize=1) == [seconds] * num_jobs
    workers = [w for e in pool_events(pool, "submitted") for w in e["workers"]]
    assert len(workers) == 2
    assert exit_notes(pool)[workers[0]] == "time limit"
    (map_dir,) = [d for d in os.listdir(pool._pool_dir.path) if d.startswith("map-")]
    events = event_log.read(os.path.join(pool._pool_dir.path, map_dir, "log.jsonl"))
    assert [e for e in events if e["event"] == "chunk_lost"] == []
