"""
The core on a fake scheduler: results, the jobs' own exceptions, the work dir.

Each test drives the real pool and the real worker module; only the
scheduler is a stand-in (pypoolparty.testing.fake).
"""
import glob
import os
import threading

import pytest

from fake_jobs import (
    Gate,
    add,
    fail_on,
    failing_initializer,
    map_dirs,
    pool_dirs,
    negate,
    process_gone,
    return_lock,
    square,
    wait_until,
    worker_of,
)
from pypoolparty import errors
from pypoolparty.testing import fake

pytestmark = pytest.mark.timeout(60)


def test_map_and_starmap_return_results_in_order(tmp_path):
    with fake.pool(3, work_dir=tmp_path) as pool:
        assert pool.map(square, range(40)) == [x * x for x in range(40)]
        pairs = [(i, 10 * i) for i in range(17)]
        assert pool.starmap(add, pairs, chunksize=2) == [a + b for a, b in pairs]
        called = []
        res = pool.map_async(negate, range(5), chunksize=1, callback=called.append)
        assert res.get() == [0, -1, -2, -3, -4]
        assert called == [[0, -1, -2, -3, -4]]


def test_imap_is_in_order_and_imap_unordered_complete(tmp_path):
    with fake.pool(3, work_dir=tmp_path) as pool:
        assert list(pool.imap(square, range(25), chunksize=2)) == [x * x for x in range(25)]
        got = list(pool.imap_unordered(square, range(25), chunksize=3))
        assert sorted(got) == [x * x for x in range(25)]


def test_a_burst_of_apply_async_is_one_submission_with_own_results(tmp_path):
    with fake.pool(2, work_dir=tmp_path) as pool:
        results = [pool.apply_async(square, (i,)) for i in range(8)]
        results.append(pool.apply_async(add, (1,), {"b": 2}))
        results.append(pool.apply_async(fail_on, (3,)))
        assert [r.get() for r in results[:9]] == [i * i for i in range(8)] + [3]
        with pytest.raises(ValueError) as info:
            results[9].get()
        assert info.value.args == ("bad job", 3)
        assert pool.scheduler.calls["submit"] == 1


def test_a_job_that_raises_in_map_ends_the_map_and_cancels_the_rest(tmp_path):
    gate = Gate(tmp_path / "gate")
    # Job 0 raises once two others run; those wait until the gate opens.
    job = gate.job(fail=[0], fail_after_starts=2)
    with fake.pool(3, work_dir=tmp_path / "pools") as pool:
        fake_scheduler = pool.scheduler
        res = pool.map_async(job, range(9), chunksize=1)
        gate.wait_started(2)
        with pytest.raises(ValueError) as info:
            res.get()
        exc = info.value
        assert type(exc) is ValueError and exc.args == ("bad job", 0)
        assert isinstance(exc.__cause__, errors.RemoteTraceback)
        assert "in gated" in str(exc.__cause__) and "raise ValueError" in str(exc.__cause__)
        # The workers running the map's other jobs are cancelled; the one
        # that raised serves the pool's next map.
        running = {worker_of(fake_scheduler, pid) for _, pid in gate.marks("started")}
        assert len(running) == 2
        assert wait_until(lambda: fake_scheduler.cancelled)
        assert {w for ids in fake_scheduler.cancelled for w in ids} == running
        assert all(fake_scheduler.word(w) == "CANCELLED" for w in running)
        (raiser,) = fake_scheduler.worker_ids("RUNNING")
        assert pool.map(square, range(3), chunksize=1) == [0, 1, 4]
        assert raiser in fake_scheduler.worker_ids("RUNNING")
        (kept,) = map_dirs(tmp_path / "pools")
        assert kept in str(exc.__cause__)


def test_imap_delivers_a_jobs_exception_at_its_place_and_goes_on(tmp_path):
    with fake.pool(2, work_dir=tmp_path) as pool:
        it = pool.imap(fail_on, range(7), chunksize=1)
        got = []
        for _ in range(7):
            try:
                got.append(next(it))
            except ValueError as exc:
                got.append(exc.args)
        with pytest.raises(StopIteration):
            next(it)
        assert got == [0, 1, 4, ("bad job", 3), 16, 25, 36]


def test_a_value_that_cannot_be_pickled_is_a_maybe_encoding_error(tmp_path):
    with fake.pool(1, work_dir=tmp_path) as pool:
        res = pool.map_async(return_lock, [1])
        with pytest.raises(errors.MaybeEncodingError):
            res.get()


def test_an_unreadable_result_file_fails_the_map_and_cancels(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(1, work_dir=tmp_path / "pools") as pool:
        res = gate.start_map(pool, [0, 1], 1)
        (map_dir,) = map_dirs(tmp_path / "pools")
        with open(os.path.join(map_dir, "results", "0.pickle"), "wb") as f:
            f.write(b"not a pickle")
        with pytest.raises(errors.MaybeEncodingError):
            res.get()
        (wid,) = pool.scheduler.worker_ids()
        assert pool.scheduler.word(wid) == "CANCELLED"


def test_an_initializer_that_raises_fails_the_jobs_not_the_pool(tmp_path):
    with fake.pool(1, work_dir=tmp_path, initializer=failing_initializer) as pool:
        res = pool.map_async(square, [1, 2])
        with pytest.raises(RuntimeError, match="initializer failed on purpose"):
            res.get()
        assert pool.scheduler.calls["submit"] == 1


def test_a_callback_that_raises_is_reported_and_the_pool_goes_on(tmp_path, caplog):
    with fake.pool(1, work_dir=tmp_path) as pool:

        def bad_callback(value):
            raise KeyError("in the callback")

        res = pool.map_async(square, [2], callback=bad_callback)
        assert res.get() == [4]
        assert pool.map(square, [3]) == [9]
    (record,) = [r for r in caplog.records if "exception in a result callback" in r.getMessage()]
    assert record.name == "pypoolparty" and record.exc_info[0] is KeyError


def test_the_work_dir_is_removed_after_success_and_kept_after_failure(tmp_path):
    with fake.pool(2, work_dir=tmp_path / "a") as pool:
        assert pool.map(square, range(6)) == [x * x for x in range(6)]
        assert map_dirs(tmp_path / "a") == []
        with pytest.raises(ValueError):
            pool.map_async(fail_on, range(6)).get()
        (kept,) = map_dirs(tmp_path / "a")
        assert os.path.exists(os.path.join(kept, "log.jsonl"))
    with fake.pool(2, work_dir=tmp_path / "b", keep_work_dir=True) as pool:
        pool.map(square, range(6))
        assert len(map_dirs(tmp_path / "b")) == 1


def test_worker_logs_are_where_the_request_says(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(1, work_dir=tmp_path / "pools", keep_work_dir=True) as pool:
        res = pool.map_async(gate.job(), [5])
        gate.wait_started(1)
        gate.open()
        assert res.get() == [25]
        (pool_dir,) = pool_dirs(tmp_path / "pools")
        (log,) = glob.glob(os.path.join(pool_dir, "workers", "*.log"))
        with open(log) as f:
            assert "job 5 waits for the gate" in f.read()


def test_the_fake_leaves_no_process_behind(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path) as pool:
        pool.map_async(gate.job(), range(4), chunksize=1)
        gate.wait_started(2)
        fake_scheduler = pool.scheduler
        pids = [p for w in fake_scheduler.worker_ids() for p in fake_scheduler.pids(w)]
        assert len(pids) == 2
    assert all(process_gone(pid) for pid in pids)
    assert fake_scheduler.worker_ids(*fake.ALIVE) == []
    assert not any(t.name == "pypoolparty-fake-scheduler" for t in threading.enumerate())

