"""
The core on a fake scheduler: the pool's budget of workers and its polls.

At most ``processes`` workers of a pool are alive at once, over all its maps
in flight and their replacements; the scheduler is asked for states once
per polling interval for all of them.
"""
import time

import pytest

from fake_jobs import Gate, square, wait_until
from pypoolparty.testing import fake

pytestmark = pytest.mark.timeout(60)


def test_more_chunks_than_processes_never_more_workers(tmp_path):
    with fake.pool(3, work_dir=tmp_path) as pool:
        assert pool.map(square, range(30), chunksize=1) == [x * x for x in range(30)]
        assert pool.scheduler.max_alive == 3
        assert [len(ids) for ids in pool.scheduler.submitted] == [3]


def test_overlapping_maps_share_the_budget_and_replacements_stay_in_it(tmp_path):
    """Three maps in flight on 4 processes; two workers are lost."""
    gate = Gate(tmp_path / "gate")
    with fake.pool(4, work_dir=tmp_path / "pools") as pool:
        fake_scheduler = pool.scheduler
        jobs = [range(2), range(10, 14), range(20, 24)]
        maps = [pool.map_async(gate.job(), j, chunksize=1) for j in jobs]
        gate.wait_started(4)
        time.sleep(0.3)  # polls and rounds with three maps in flight
        assert len(gate.started()) == 4
        assert sum(len(ids) for ids in fake_scheduler.submitted) == 4
        # Two workers are lost: their chunks get two new workers, no more.
        lost = sum(fake_scheduler.submitted, [])[:2]
        for wid in lost:
            fake_scheduler.lose(wid)
        gate.wait_started(6)
        time.sleep(0.3)
        assert len(fake_scheduler.submitted[-1]) == 2
        assert sum(len(ids) for ids in fake_scheduler.submitted) == 6
        assert fake_scheduler.max_alive == 4
        gate.open()
        for j, res in zip(jobs, maps):
            assert res.get() == [x * x for x in j]


def test_workers_of_a_completed_map_serve_the_next_within_the_budget(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path) as pool:
        fake_scheduler = pool.scheduler
        # Workers take a while to end, as jobs do in an epilog.
        fake_scheduler.epilog(0.5)
        first = gate.start_map(pool, [0, 1], 2)
        second = pool.map_async(square, range(4), chunksize=1)
        gate.open()
        assert first.get() == [0, 1]
        assert second.get() == [0, 1, 4, 9]
        assert fake_scheduler.max_alive <= 2
        assert fake_scheduler.calls["submit"] == 1


def test_a_map_gets_the_budget_an_earlier_map_leaves(tmp_path):
    gate_a, gate_b = Gate(tmp_path / "a"), Gate(tmp_path / "b")
    with fake.pool(4, work_dir=tmp_path) as pool:
        a = pool.map_async(gate_a.job(), range(2), chunksize=1)
        b = pool.map_async(gate_b.job(), range(4), chunksize=1)
        gate_a.wait_started(2)
        gate_b.wait_started(2)
        time.sleep(0.2)  # a poll or two: b has 2 workers and 2 chunks unclaimed
        gate_a.open()
        assert a.get() == [0, 1]
        more = wait_until(lambda: len(gate_b.started()) == 4, timeout=2.0)
        gate_b.open()
        assert b.get() == [0, 1, 4, 9]
        assert more


def test_one_states_call_per_interval_for_all_maps_in_flight(tmp_path):
    gate = Gate(tmp_path / "gate")
    interval, window = 0.25, 1.5
    with fake.pool(4, work_dir=tmp_path, polling_interval=interval) as pool:
        fake_scheduler = pool.scheduler
        maps = [pool.map_async(gate.job(), range(2 * i, 2 * i + 2), chunksize=1) for i in range(2)]
        gate.wait_started(4)
        ids = sum(fake_scheduler.submitted, [])
        before = fake_scheduler.calls["states"]
        time.sleep(window)
        polls = fake_scheduler.calls_of("states")[before:]
        gate.open()
        for res in maps:
            res.get()
    assert window / interval / 2 <= len(polls) <= window / interval + 1
    for call in polls:
        assert sorted(call.worker_ids) == sorted(ids)


def test_queued_workers_wait_for_the_next_map_for_a_polling_interval(tmp_path):
    scheduler = fake.FakeScheduler(slots=1)
    with fake.pool(3, work_dir=tmp_path, scheduler=scheduler, polling_interval=1.0) as pool:
        scheduler.epilog(1.0)  # the one slot stays taken until join
        assert pool.map(square, range(6), chunksize=1) == [x * x for x in range(6)]
        (ids,) = scheduler.submitted
        (ran,) = [w for w in ids if scheduler.pids(w)]
        pending = [w for w in ids if w != ran]
        # The next map of a loop comes at once: the queued workers stay.
        assert pool.map(square, [7]) == [49]
        assert scheduler.cancelled == [] and scheduler.calls["submit"] == 1
        # No map for a polling interval: they would start only to wait.
        assert wait_until(lambda: scheduler.cancelled, timeout=5)
        assert [sorted(c) for c in scheduler.cancelled] == [sorted(pending)]
        assert scheduler.word(ran) == "RUNNING"
        pool.close()
        pool.join()
        assert scheduler.worker_ids(*fake.ALIVE) == []
        assert scheduler.word(ran) == "COMPLETED"


def test_workers_kept_pending_still_get_the_map_done(tmp_path):
    with fake.pool(2, work_dir=tmp_path) as pool:
        fake_scheduler = pool.scheduler
        fake_scheduler.close_gate()
        res = pool.map_async(square, range(4))
        time.sleep(0.3)
        assert not res.ready()
        assert len(fake_scheduler.worker_ids("PENDING")) == 2
        fake_scheduler.open_gate()
        assert res.get(timeout=10) == [0, 1, 4, 9]
        fake_scheduler.delay_start(5.0)
        started = time.monotonic()
        assert pool.map(square, [5]) == [25]
        assert time.monotonic() - started < 5.0  # the workers are warm
        assert fake_scheduler.calls["submit"] == 1
