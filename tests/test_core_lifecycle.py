"""
The core on a fake scheduler: workers that outlive their map.

A pool's workers serve its later maps; they leave after ``idle_timeout``,
when the pool is closed and done, after ``maxtasksperchild`` chunks, and
before their time limit; ``join()`` returns once none is left.
"""
import functools
import os
import time

import pytest

from fake_jobs import Gate, note_init, pid_of_worker, pool_dirs, slow_square, square, wait_until
from pypoolparty.core import event_log
from pypoolparty.testing import fake

pytestmark = pytest.mark.timeout(60)


def exit_notes(root):
    """{worker id: why it left} of the pool in ``root``."""
    (pool_dir,) = pool_dirs(root)
    exits = os.path.join(pool_dir, "exits")
    return {n: open(os.path.join(exits, n)).read() for n in os.listdir(exits)}


def test_a_loop_of_maps_submits_once(tmp_path):
    # A map added while the supervisor ends the previous one must not wait
    # for the next poll (30 s): the loop takes seconds, not minutes.
    with fake.pool(2, work_dir=tmp_path, polling_interval=30.0) as pool:
        started = time.monotonic()
        for i in range(20):
            assert pool.map(square, range(i, i + 4)) == [x * x for x in range(i, i + 4)]
        assert time.monotonic() - started < 15.0
        assert pool.scheduler.calls["submit"] == 1
        assert pool.scheduler.max_alive == 2


def test_maps_of_every_kind_share_the_workers(tmp_path):
    with fake.pool(2, work_dir=tmp_path) as pool:
        assert pool.starmap(pow, [(2, 3), (3, 2)]) == [8, 9]
        assert list(pool.imap(square, range(5))) == [0, 1, 4, 9, 16]
        assert sorted(pool.imap_unordered(square, range(5))) == [0, 1, 4, 9, 16]
        assert pool.apply(square, (7,)) == 49
        assert pool.map_async(square, [3]).get() == [9]
        assert pool.scheduler.calls["submit"] == 1


def test_an_idle_worker_leaves_after_idle_timeout(tmp_path):
    with fake.pool(1, work_dir=tmp_path, idle_timeout=0.5, polling_interval=30.0) as pool:
        fake_scheduler = pool.scheduler
        assert pool.map(square, [2]) == [4]
        (wid,) = fake_scheduler.worker_ids()
        assert fake_scheduler.word(wid) == "RUNNING"
        assert wait_until(lambda: fake_scheduler.word(wid) == "COMPLETED", timeout=5)
        assert exit_notes(tmp_path) == {wid: "idle"}
        # The next map needs a new worker, and gets it without waiting for
        # polls to confirm the old one's end.
        started = time.monotonic()
        assert pool.map(square, [3]) == [9]
        assert time.monotonic() - started < 10.0  # not a polling interval
        assert fake_scheduler.calls["submit"] == 2


def test_join_returns_once_no_worker_is_left(tmp_path):
    with fake.pool(2, work_dir=tmp_path, polling_interval=5.0) as pool:
        fake_scheduler = pool.scheduler
        fake_scheduler.epilog(0.3)
        assert pool.map(square, range(4)) == [0, 1, 4, 9]
        ids = fake_scheduler.worker_ids()
        pool.close()
        started = time.monotonic()
        pool.join()
        assert time.monotonic() - started < 3.0  # not a polling interval
        assert fake_scheduler.worker_ids(*fake.ALIVE) == []
        # Those that started leave on their own; one that had not started
        # when the map ended (the other took every chunk) is cancelled.
        words = {w: fake_scheduler.word(w) for w in ids}
        assert "COMPLETED" in words.values()
        assert set(words.values()) <= {"COMPLETED", "CANCELLED"}
        assert sorted(w for c in fake_scheduler.cancelled for w in c) == sorted(
            w for w in ids if words[w] == "CANCELLED"
        )
    assert pool_dirs(tmp_path) == []


def test_close_lets_the_work_finish_then_the_workers_leave(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path / "pools") as pool:
        res = gate.start_map(pool, range(4), 2)
        pool.close()
        time.sleep(0.3)
        assert not res.ready()
        assert len(pool.scheduler.worker_ids("RUNNING")) == 2
        gate.open()
        pool.join()
        assert res.get(timeout=0) == [0, 1, 4, 9]
        assert pool.scheduler.worker_ids(*fake.ALIVE) == []


def test_close_right_after_apply_async_lets_the_workers_leave_at_once(tmp_path):
    # The calls start their map after close (apply_async gathers them for a
    # moment): the pool dir made then must say closed too, or join would
    # wait for the workers' idle_timeout.
    with fake.pool(2, work_dir=tmp_path / "pools", idle_timeout=30.0) as pool:
        results = [pool.apply_async(square, (x,)) for x in range(3)]
        pool.close()
        started = time.monotonic()
        pool.join()
        assert time.monotonic() - started < 10.0
        assert [r.get(timeout=0) for r in results] == [0, 1, 4]
        assert pool.scheduler.worker_ids(*fake.ALIVE) == []


def test_a_lone_call_to_idle_workers_does_not_wait_for_a_burst(tmp_path, monkeypatch):
    # apply_async gathers calls made close together into one map, so that
    # a burst costs one submission; with idle workers there is nothing to
    # save, and a lone call must not wait for company.
    from pypoolparty.core import applies

    with fake.pool(2, work_dir=tmp_path / "pools", idle_timeout=30.0) as pool:
        assert pool.map(square, range(4)) == [0, 1, 4, 9]  # the workers are up now
        monkeypatch.setattr(applies, "QUIET_SECONDS", 30.0)
        monkeypatch.setattr(applies, "MAX_WAIT_SECONDS", 60.0)
        started = time.monotonic()
        assert pool.apply(square, (5,)) == 25
        assert time.monotonic() - started < 10.0
        assert pool.scheduler.calls["submit"] == 1


def test_a_burst_to_a_pool_at_its_size_does_not_wait_for_more_company(tmp_path, monkeypatch):
    # Every worker the pool may have is up: no submission to save by waiting.
    from pypoolparty.core import applies

    with fake.pool(2, work_dir=tmp_path / "pools", idle_timeout=30.0) as pool:
        assert pool.map(square, range(8), chunksize=1) == [x * x for x in range(8)]
        assert wait_until(lambda: len(pool.scheduler.worker_ids("RUNNING")) == 2)
        monkeypatch.setattr(applies, "QUIET_SECONDS", 30.0)
        monkeypatch.setattr(applies, "MAX_WAIT_SECONDS", 60.0)
        started = time.monotonic()
        results = [pool.apply_async(square, (x,)) for x in range(10)]
        assert [r.get(timeout=20) for r in results] == [x * x for x in range(10)]
        assert time.monotonic() - started < 10.0
        assert pool.scheduler.calls["submit"] == 1


def test_a_burst_with_gaps_to_a_warm_worker_is_still_one_submission(tmp_path):
    # Calls 3 ms apart, more than one idle worker can take: the short window
    # must not cut the burst into maps that each submit workers.
    with fake.pool(8, work_dir=tmp_path / "pools", idle_timeout=30.0) as pool:
        assert pool.apply(square, (2,)) == 4  # one warm worker
        assert pool.scheduler.calls["submit"] == 1
        results = []
        for x in range(40):
            results.append(pool.apply_async(square, (x,)))
            time.sleep(0.003)
        assert [r.get(timeout=30) for r in results] == [x * x for x in range(40)]
        assert pool.scheduler.calls["submit"] <= 2


def test_maxtasksperchild_gives_each_task_a_new_worker(tmp_path):
    # polling_interval is long: replacements must not wait for polls.
    with fake.pool(2, work_dir=tmp_path, maxtasksperchild=1, polling_interval=30.0) as pool:
        started = time.monotonic()
        pids = pool.map(pid_of_worker, range(6), chunksize=1)
        assert time.monotonic() - started < 10.0
        assert len(set(pids)) == 6
        assert sum(len(ids) for ids in pool.scheduler.submitted) == 6
        assert set(exit_notes(tmp_path).values()) == {"maxtasksperchild"}


def test_maxtasksperchild_counts_chunks_as_the_stdlib_counts_tasks(tmp_path):
    with fake.pool(1, work_dir=tmp_path, maxtasksperchild=2, polling_interval=30.0) as pool:
        pids = pool.map(pid_of_worker, range(8), chunksize=2)
        assert [len(set(pids[i : i + 4])) for i in (0, 4)] == [1, 1]
        assert len(set(pids)) == 2


def test_the_initializer_runs_once_per_worker_over_many_maps(tmp_path):
    folder = tmp_path / "inits"
    folder.mkdir()
    with fake.pool(2, work_dir=tmp_path / "pools", initializer=note_init, initargs=(str(folder),)) as pool:
        pids = set()
        for i in range(5):
            pids.update(pool.map(pid_of_worker, range(4), chunksize=1))
        inits = sorted(int(n.split("-")[1]) for n in os.listdir(folder))
        assert inits == sorted(pids)
        assert pool.scheduler.calls["submit"] == 1


def test_a_worker_near_its_time_limit_takes_no_chunk_and_is_replaced(tmp_path):
    scheduler = fake.FakeScheduler(time_limit=1.5)
    job = functools.partial(slow_square, seconds=0.4)
    with fake.pool(1, work_dir=tmp_path / "pools", scheduler=scheduler, keep_work_dir=True) as pool:
        assert pool.map(job, range(6), chunksize=1) == [x * x for x in range(6)]
        workers = [ids[0] for ids in scheduler.submitted]
        assert len(workers) >= 2
        notes = exit_notes(tmp_path / "pools")
        assert [notes[w] for w in workers[:-1]] == ["time limit"] * (len(workers) - 1)
        assert "TIMEOUT" not in [scheduler.word(w) for w in workers]
        (pool_dir,) = pool_dirs(tmp_path / "pools")
        (map_dir,) = [n for n in os.listdir(pool_dir) if n.startswith("map-")]
        events = event_log.read(os.path.join(pool_dir, map_dir, "log.jsonl"))
        assert [e for e in events if e["event"] == "chunk_lost"] == []


def test_without_the_time_limit_check_the_chunk_would_be_lost(tmp_path, monkeypatch):
    """The test above can fail: with no limit told, the fake's TIMEOUT loses a chunk."""
    scheduler = fake.FakeScheduler(time_limit=1.5)
    monkeypatch.setattr(scheduler, "time_limit", lambda: None)
    job = functools.partial(slow_square, seconds=0.4)
    with fake.pool(1, work_dir=tmp_path / "pools", scheduler=scheduler, keep_work_dir=True) as pool:
        assert pool.map(job, range(6), chunksize=1) == [x * x for x in range(6)]
        first = scheduler.submitted[0][0]
        assert scheduler.word(first) == "TIMEOUT"


def test_terminate_stops_idle_workers_and_removes_the_pool_dir(tmp_path):
    with fake.pool(2, work_dir=tmp_path) as pool:
        fake_scheduler = pool.scheduler
        pool.map(square, range(4))
        ids = fake_scheduler.worker_ids("RUNNING")
        assert len(ids) == 2
        pool.terminate()
        assert sorted(w for c in fake_scheduler.cancelled for w in c) == sorted(ids)
        assert fake_scheduler.worker_ids(*fake.ALIVE) == []
    assert pool_dirs(tmp_path) == []


def test_a_garbage_collected_pool_stops_its_workers(tmp_path):
    import gc

    fake_scheduler = fake.FakeScheduler()
    try:
        pool = fake.ClusterPool(2, scheduler=fake_scheduler, work_dir=str(tmp_path), polling_interval=0.05)
        pool.map(square, range(4))
        ids = fake_scheduler.worker_ids("RUNNING")
        assert ids
        with pytest.warns(ResourceWarning):
            del pool
            gc.collect()
        assert sorted(w for c in fake_scheduler.cancelled for w in c) == sorted(ids)
        assert wait_until(lambda: fake_scheduler.worker_ids(*fake.ALIVE) == [])
        assert pool_dirs(tmp_path) == []
    finally:
        fake_scheduler.shutdown()


def test_a_cancelled_map_stops_only_its_own_workers(tmp_path):
    slow, other = Gate(tmp_path / "slow"), Gate(tmp_path / "other")
    with fake.pool(3, work_dir=tmp_path / "pools", polling_interval=0.05) as pool:
        fake_scheduler = pool.scheduler
        a = slow.start_map(pool, [0, 1], 2)
        b = other.start_map(pool, [5], 1)
        (b_pid,) = [pid for _, pid in other.marks("started")]
        a.run.cancel("the test cancels it")
        cancelled = {w for c in fake_scheduler.cancelled for w in c}
        assert len(cancelled) == 2
        assert all(b_pid not in fake_scheduler.pids(w) for w in cancelled)
        other.open()
        assert b.get(timeout=10) == [25]
        # The pool goes on, with new workers where it needs them.
        assert pool.map(square, range(6), chunksize=1) == [x * x for x in range(6)]


def test_a_cancelled_map_alone_also_takes_the_workers_that_never_served(tmp_path):
    """Ctrl-C right after the workers were submitted: the cancel takes the
    workers still queued or starting too, not only those running the map's
    chunks; else they would hold a slot until idle_timeout (here the
    supervisor's own clean-up waits for a 30 s poll)."""
    gate = Gate(tmp_path / "gate")
    scheduler = fake.FakeScheduler(slots=1)
    with fake.pool(2, work_dir=tmp_path / "pools", scheduler=scheduler, polling_interval=30.0) as pool:
        res = gate.start_map(pool, [0, 1], 1)
        assert sorted(scheduler.worker_ids()) == ["1_0", "1_1"]
        assert scheduler.word("1_1") == "PENDING"
        res.run.cancel("the test cancels it")
        assert sorted(w for call in scheduler.cancelled for w in call) == ["1_0", "1_1"]


def test_a_cancelled_map_leaves_the_workers_that_served_earlier_maps(tmp_path):
    first, second = Gate(tmp_path / "first"), Gate(tmp_path / "second")
    with fake.pool(2, work_dir=tmp_path / "pools", polling_interval=30.0) as pool:
        scheduler = pool.scheduler
        warm = first.start_map(pool, [0, 1], 2)  # one job a worker: both serve
        first.open()
        assert warm.get(timeout=10) == [0, 1]
        res = second.start_map(pool, [7], 1)
        (busy,) = {w for w in scheduler.worker_ids() if second.pid_of(7) in scheduler.pids(w)}
        res.run.cancel("the test cancels it")
        assert [w for call in scheduler.cancelled for w in call] == [busy]
        (idle,) = set(scheduler.worker_ids()) - {busy}
        assert scheduler.word(idle) == "RUNNING"
        assert pool.map(square, [4]) == [16]
        assert pool.scheduler.calls["submit"] == 1


def test_an_idle_worker_backs_off_to_one_look_every_two_seconds(tmp_path, monkeypatch):
    """An idle worker's only filesystem call is one listdir per look."""
    import cloudpickle

    from pypoolparty.core.pooldir import ExitReason, PoolDir, WorkerSettings
    from pypoolparty.core.worker import Worker

    settings = WorkerSettings(idle_timeout=9.0)
    pool_dir = PoolDir.create(str(tmp_path), "pypoolparty-", settings, cloudpickle.dumps((None, ())))
    worker = Worker(pool_dir, "1_0")
    looks = []
    real_listdir = os.listdir

    def counting_listdir(path):
        looks.append((time.monotonic(), path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", counting_listdir)
    started = time.monotonic()
    assert worker.serve() is ExitReason.IDLE
    assert {path for _, path in looks} == {pool_dir.join("open")}
    late = [t for t, _ in looks if t - started >= 6.0]
    assert len(late) >= 2
    assert min(b - a for a, b in zip(late, late[1:])) > 1.8  # one listing per 2 s
    assert len(looks) <= 40  # fast right after work, then backing off


def test_a_wake_up_that_comes_during_a_round_is_not_lost():
    """A map added while the supervisor's round runs (as the next map of a
    loop is, right after the last result is delivered) gets the next round
    at once, not after the polling interval."""
    from pypoolparty.core.supervisor import PollIntervals, Supervisor

    supervisor = Supervisor(PollIntervals(scheduler=30.0), "test", lambda: False, 3)

    class LiveWorkers:
        def alive_ids(self):
            return ["1_0"]  # so an idle supervisor waits for its next poll

    supervisor.fleet = LiveWorkers()
    supervisor._next_poll = time.monotonic() + 30.0
    rounds = []

    def one_round(runs):
        rounds.append(time.monotonic())
        if len(rounds) == 2:
            supervisor.wake()  # what add() does, here in the middle of a round
        return False

    supervisor._round = one_round
    supervisor.ensure_thread()
    try:
        assert wait_until(lambda: len(rounds) >= 3, timeout=5)
    finally:
        supervisor.stop(timeout=1)
