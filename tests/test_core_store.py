"""
The store (``cache_dir=``) on the fake scheduler: stored results return
without the scheduler, partial calls run only the rest, two drivers share
one store without running a job twice, and a dead driver's map is adopted.
"""
import functools
import json
import os
import subprocess
import time

import pytest

from fake_jobs import counted, runs_of, wait_until
from pypoolparty import errors
from pypoolparty.testing import fake

pytestmark = pytest.mark.timeout(60)


def job(folder, **kwargs):
    os.makedirs(str(folder), exist_ok=True)
    return functools.partial(counted, folder=str(folder), **kwargs)


def shelves(store):
    return [d for d in os.listdir(str(store)) if os.path.isdir(os.path.join(str(store), d))]


def test_a_stored_map_returns_without_any_scheduler_call(tmp_path):
    f = job(tmp_path / "runs")
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        assert pool.map(f, range(10)) == [x * x for x in range(10)]
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        started = time.monotonic()
        assert pool.map(f, range(10)) == [x * x for x in range(10)]
        assert time.monotonic() - started < 1.0
        assert sum(pool.scheduler.calls.values()) == 0
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(10)}


def test_a_partly_stored_map_runs_only_the_rest(tmp_path):
    f = job(tmp_path / "runs")
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        assert pool.map(f, range(0, 20, 2)) == [x * x for x in range(0, 20, 2)]
        assert pool.map(f, range(20)) == [x * x for x in range(20)]
        assert pool.map(f, reversed(range(20))) == [x * x for x in reversed(range(20))]
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(20)}


def test_every_kind_of_call_takes_what_is_stored(tmp_path):
    f = job(tmp_path / "runs")
    expected = [x * x for x in range(6)]

    def every_kind(pool):
        assert pool.map(f, range(6)) == expected
        assert list(pool.imap(f, range(6), chunksize=2)) == expected
        assert sorted(pool.imap_unordered(f, range(6))) == expected
        assert pool.starmap(pow, [(2, 3), (3, 2)]) == [8, 9]
        assert [pool.apply_async(f, (x,)).get(timeout=10) for x in range(3)] == expected[:3]
        got = []
        pool.map_async(f, range(6), callback=got.append).wait(timeout=10)
        assert got == [expected]

    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        every_kind(pool)
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        every_kind(pool)
        assert sum(pool.scheduler.calls.values()) == 0
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(6)}


def test_a_failed_job_is_not_stored_and_runs_again(tmp_path):
    bad = job(tmp_path / "runs", bad=(3,))
    with fake.pool(1, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        with pytest.raises(ValueError, match="bad job"):
            pool.map(bad, range(6), chunksize=1)
        assert runs_of(tmp_path / "runs") == {0: 1, 1: 1, 2: 1, 3: 1}
        it = pool.imap(bad, range(6), chunksize=1)
        got = []
        for _ in range(6):
            try:
                got.append(next(it))
            except ValueError:
                got.append("raised")
    assert got == [0, 1, 4, "raised", 16, 25]
    assert runs_of(tmp_path / "runs") == {0: 1, 1: 1, 2: 1, 3: 2, 4: 1, 5: 1}


def test_results_that_came_before_a_failure_are_kept(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    f = job(tmp_path / "runs", bad=(0,), gate=str(gate))
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        # Job 0 fails once the others are done: the map ends with their
        # results on disk but not yet handed to the caller.
        result = pool.map_async(f, range(4), chunksize=2)
        assert wait_until(lambda: len(runs_of(tmp_path / "runs")) == 2)
        (gate / "go").touch()
        with pytest.raises(ValueError):
            result.get(timeout=20)
        assert pool.map(job(tmp_path / "runs", bad=(), gate=str(gate)), [1]) == [1]
    runs = runs_of(tmp_path / "runs")
    assert runs[0] == 1 and runs[2] == 1


def test_an_edited_function_does_not_reuse_old_results(tmp_path):
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        assert pool.map(job(tmp_path / "a"), range(4)) == [0, 1, 4, 9]
        assert pool.map(job(tmp_path / "b"), range(4)) == [0, 1, 4, 9]
    assert runs_of(tmp_path / "a") == runs_of(tmp_path / "b") == {x: 1 for x in range(4)}


def test_two_drivers_on_one_store_run_each_job_once(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    f = job(tmp_path / "runs", gate=str(gate))
    scheduler = fake.FakeScheduler()
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store", scheduler=scheduler) as a:
        first = a.map_async(f, range(8))
        assert wait_until(lambda: len(runs_of(tmp_path / "runs")) >= 2)
        b = fake.ClusterPool(
            2, scheduler=scheduler, work_dir=str(tmp_path / "w2"), cache_dir=str(tmp_path / "store"),
            polling_interval=0.05,
        )
        try:
            second = b.map_async(f, range(12))
            (gate / "go").touch()
            assert first.get(timeout=20) == [x * x for x in range(8)]
            assert second.get(timeout=20) == [x * x for x in range(12)]
            submitted_by_b = len(scheduler.calls_of("submit")) - 1
        finally:
            b.terminate()
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(12)}
    assert submitted_by_b == 1  # for jobs 8..11 only


def dying_driver(tmp_path, scheduler, f, num_jobs, chunksize):
    """A pool whose map has two jobs running at the gate when it dies."""
    pool = fake.ClusterPool(
        2, scheduler=scheduler, work_dir=str(tmp_path / "w"), cache_dir=str(tmp_path / "store"),
        polling_interval=0.05,
    )
    pool.map_async(f, range(num_jobs), chunksize=chunksize)
    assert wait_until(lambda: len(runs_of(tmp_path / "runs")) == 2)
    play_dead(pool)
    return pool


def play_dead(pool):
    """Make ``pool`` behave as a killed driver: it stops looking after its
    maps and writing to the store, and its process seems gone."""
    pool._supervisor._round = lambda runs: False
    for run in pool._supervisor.runs():
        writer = run.sink.writer
        writer.put = writer.end = writer.heartbeat = lambda *args: None
        with open(writer.owner_path) as fp:
            owner = json.load(fp)
        owner["pid"] = subprocess.Popen(["true"]).pid  # a process that ended
        time.sleep(0.05)
        with open(writer.owner_path, "w") as fp:
            json.dump(owner, fp)


def test_a_dead_drivers_map_is_adopted_with_its_running_workers(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    f = job(tmp_path / "runs", gate=str(gate))
    scheduler = fake.FakeScheduler()
    dead = dying_driver(tmp_path, scheduler, f, 8, chunksize=2)
    try:
        with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store", scheduler=scheduler) as again:
            result = again.map_async(f, range(8), chunksize=2)
            time.sleep(0.3)
            (gate / "go").touch()
            assert result.get(timeout=20) == [x * x for x in range(8)]
            # The dead driver's two workers did it all: no new submission.
            assert len(scheduler.calls_of("submit")) == 1
    finally:
        dead.terminate()
        scheduler.shutdown()
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(8)}


def test_an_adopted_map_whose_workers_died_runs_their_chunks_again(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    f = job(tmp_path / "runs", gate=str(gate))
    scheduler = fake.FakeScheduler()
    dead = dying_driver(tmp_path, scheduler, f, 6, chunksize=1)
    try:
        for wid in scheduler.worker_ids():
            scheduler.lose(wid)
        (gate / "go").touch()
        with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store", scheduler=scheduler) as again:
            assert again.map(f, range(6)) == [x * x for x in range(6)]
    finally:
        dead.terminate()
        scheduler.shutdown()
    runs = runs_of(tmp_path / "runs")
    assert sorted(runs) == list(range(6))
    assert sum(runs.values()) == 6 + 2  # the two lost jobs ran again, nothing else


def test_a_damaged_pickle_is_a_clear_error_and_loses_nothing_else(tmp_path):
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        pool.map(job(tmp_path / "a"), range(4))
        pool.map(job(tmp_path / "b"), range(4))
    shelf_a = [s for s in shelves(tmp_path / "store")]
    pickles = []
    for shelf in shelf_a:
        pickles += [os.path.join(str(tmp_path / "store"), shelf, n)
                    for n in os.listdir(str(tmp_path / "store" / shelf)) if n.endswith(".pickle")]
    with open(sorted(pickles)[0], "wb") as fp:
        fp.write(b"not a pickle")
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        outcomes = []
        for name in ("a", "b"):
            try:
                outcomes.append(pool.map(job(tmp_path / name), range(4)))
            except errors.StoreError as err:
                assert sorted(pickles)[0] in str(err)
                outcomes.append("error")
    assert sorted(map(str, outcomes)) == sorted(["error", str([0, 1, 4, 9])])
    # As the error says: remove the file, and its results are computed again.
    os.unlink(sorted(pickles)[0])
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        assert pool.map(job(tmp_path / "a"), range(4)) == pool.map(job(tmp_path / "b"), range(4)) == [0, 1, 4, 9]
    assert sum(runs_of(tmp_path / "a").values()) + sum(runs_of(tmp_path / "b").values()) == 8 + 4


def test_a_torn_last_line_is_ignored_and_a_foreign_line_is_an_error(tmp_path):
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        pool.map(job(tmp_path / "a"), range(4))
    (shelf,) = shelves(tmp_path / "store")
    (record,) = [n for n in os.listdir(str(tmp_path / "store" / shelf)) if n.endswith(".jsonl")]
    path = str(tmp_path / "store" / shelf / record)
    with open(path, "ab") as fp:
        fp.write(b'{"stored": "half-written')
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        assert pool.map(job(tmp_path / "a"), range(4)) == [0, 1, 4, 9]
        assert sum(pool.scheduler.calls.values()) == 0
    with open(path, "ab") as fp:
        fp.write(b'", "keys": []}\nnot json\n')  # line 4 completed, line 5 foreign
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        with pytest.raises(errors.StoreError, match="line 5 of the store's record"):
            pool.map(job(tmp_path / "a"), range(4))


def test_a_folder_that_is_not_a_store_is_refused_untouched(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "thesis.tex").write_text("mine")
    with pytest.raises(errors.StoreError, match="not a pypoolparty store"):
        fake.ClusterPool(2, scheduler=fake.FakeScheduler(), cache_dir=str(tmp_path / "data"))
    assert os.listdir(str(tmp_path / "data")) == ["thesis.tex"]


def test_a_store_that_cannot_be_written_still_gives_the_results(tmp_path, monkeypatch):
    from pypoolparty.core import store

    def full_disk(*args):
        raise OSError(122, "Disk quota exceeded")

    monkeypatch.setattr(store.RecordWriter, "put", full_disk)
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        assert pool.map(job(tmp_path / "runs"), range(6)) == [x * x for x in range(6)]
        assert list(pool.imap(job(tmp_path / "runs"), range(3))) == [0, 1, 4]


def test_stored_results_reach_callbacks_apart_from_the_caller_as_in_the_stdlib(tmp_path):
    import threading

    f = job(tmp_path / "runs")
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        pool.map(f, range(4))
        threads = []
        result = pool.map_async(f, range(4), callback=lambda r: threads.append(threading.current_thread()))
        assert result.get(timeout=10) == [0, 1, 4, 9]
        assert wait_until(lambda: threads)
        assert threads[0] is not threading.current_thread()


def test_a_dead_drivers_map_is_not_adopted_by_an_imap_but_its_results_are_kept(tmp_path):
    """A map stops a chunk at its first failure, an imap does not: an imap
    takes what the dead map finished and runs the rest itself."""
    gate = tmp_path / "gate"
    gate.mkdir()
    f = job(tmp_path / "runs", gate=str(gate))
    scheduler = fake.FakeScheduler()
    dead = dying_driver(tmp_path, scheduler, f, 6, chunksize=1)
    try:
        (gate / "go").touch()
        assert wait_until(lambda: len(runs_of(tmp_path / "runs")) == 6 and scheduler.worker_ids("RUNNING"), timeout=20)
        time.sleep(0.5)  # the results are written
        with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store", scheduler=scheduler) as again:
            assert list(again.imap(f, range(6))) == [x * x for x in range(6)]
    finally:
        dead.terminate()
        scheduler.shutdown()
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(6)}
