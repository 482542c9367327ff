"""
One suite, every pool: what passes on ``multiprocessing.Pool`` (the
reference) must pass on pypoolparty's pools, the cluster pools against their
real schedulers. Cases marked ``beyond_stdlib`` are where ours go further.
"""
import gc
import multiprocessing
import threading
import time

import pytest

from pypoolparty import errors

import conformance_jobs as jobs
from conformance_jobs import CustomError
from pool_kinds import KINDS, OURS, STDLIB_KINDS, WITH_STORE, pool_maker, with_marks


@pytest.fixture(params=with_marks(KINDS + [WITH_STORE]))
def make_pool(request, tmp_path, monkeypatch):
    """The reference and each of pypoolparty's pools, one also with a store."""
    yield from pool_maker(request, tmp_path, monkeypatch)


@pytest.fixture(params=with_marks(OURS))
def beyond_stdlib(request, tmp_path, monkeypatch):
    """pypoolparty's pools only: where they go further than the stdlib's."""
    yield from pool_maker(request, tmp_path, monkeypatch)


def raising_at(index, exc):
    def gen():
        for i in range(10):
            if i == index:
                raise exc
            yield i

    return gen()


TIMEOUT = 120


# ------------------------------------------------------------------ results
def test_map_and_chunksize(make_pool):
    pool = make_pool()
    assert pool.map(jobs.square, range(10)) == [i * i for i in range(10)]
    assert pool.map(jobs.square, range(10), chunksize=3) == [i * i for i in range(10)]
    assert pool.map(jobs.square, []) == []


def test_starmap(make_pool):
    pool = make_pool()
    assert pool.starmap(jobs.add, [(1, 2), (3, 4)]) == [3, 7]
    assert pool.starmap_async(jobs.add, [(5, 6)]).get(TIMEOUT) == [11]


def test_apply_with_args_and_kwds(make_pool):
    pool = make_pool()
    assert pool.apply(jobs.add, (1, 2)) == 3
    assert pool.apply(jobs.kwargs_call, (1,), {"b": 2, "c": 3}) == 321


def test_many_apply_async(make_pool):
    pool = make_pool()
    results = [pool.apply_async(jobs.square, (i,)) for i in range(20)]
    results.append(pool.apply_async(jobs.add, (1,), {"b": 2}))
    assert [r.get(TIMEOUT) for r in results] == [i * i for i in range(20)] + [3]


def test_map_async(make_pool):
    pool = make_pool()
    result = pool.map_async(jobs.square, range(5))
    assert result.get(TIMEOUT) == [0, 1, 4, 9, 16]
    assert result.ready() and result.successful()


def test_imap_in_order(make_pool):
    pool = make_pool()
    assert list(pool.imap(jobs.square, range(10))) == [i * i for i in range(10)]
    assert list(pool.imap(jobs.square, range(10), chunksize=3)) == [i * i for i in range(10)]


def test_imap_unordered_yields_everything(make_pool):
    pool = make_pool()
    assert sorted(pool.imap_unordered(jobs.square, range(10), chunksize=2)) == [
        i * i for i in range(10)
    ]


def test_imap_yields_the_first_result_long_before_the_last(make_pool):
    pool, long = make_pool(), make_pool.long
    t0 = time.monotonic()
    iterator = pool.imap(jobs.sleep_then_return, [0, long, long], chunksize=1)
    assert iterator.next(timeout=TIMEOUT) == 0
    t_first = time.monotonic() - t0
    assert list(iterator) == [long, long]
    t_last = time.monotonic() - t0
    assert t_first < t_last - 0.6 * long


def test_imap_unordered_yields_in_the_order_jobs_finish(make_pool):
    pool, long = make_pool(), make_pool.long
    iterator = pool.imap_unordered(jobs.sleep_then_return, [long, 0], chunksize=1)
    assert list(iterator) == [0, long]


def test_imap_next_times_out(make_pool):
    pool, long = make_pool(), make_pool.long
    iterator = pool.imap(jobs.sleep_then_return, [long])
    with pytest.raises(multiprocessing.TimeoutError):
        iterator.next(timeout=0.1)
    assert iterator.next(timeout=TIMEOUT) == long
    with pytest.raises(StopIteration):
        iterator.next(timeout=1)


# ------------------------------------------------------------ AsyncResult
def test_async_result_get_wait_ready_successful(make_pool):
    pool, long = make_pool(), make_pool.long
    result = pool.apply_async(jobs.sleep_then_return, (long,))
    with pytest.raises(multiprocessing.TimeoutError):
        result.get(timeout=0.1)
    assert result.wait(0.1) is None
    assert not result.ready()
    with pytest.raises(ValueError):
        result.successful()
    assert result.get(TIMEOUT) == long
    assert result.ready()
    assert result.successful()


def test_failed_async_result(make_pool):
    pool = make_pool()
    result = pool.apply_async(jobs.fail_on_two, (2,))
    with pytest.raises(ValueError):
        result.get(TIMEOUT)
    assert result.ready()
    assert not result.successful()


def test_callback_once_from_a_pool_thread(make_pool):
    pool = make_pool()
    calls = []
    done = threading.Event()

    def callback(value):
        calls.append((value, threading.current_thread() is threading.main_thread()))
        done.set()

    result = pool.map_async(jobs.square, [1, 2], callback=callback)
    assert result.get(TIMEOUT) == [1, 4]
    assert done.wait(5)
    time.sleep(0.2)
    assert calls == [([1, 4], False)]


def test_error_callback_once(make_pool):
    pool = make_pool()
    calls = []
    done = threading.Event()

    def error_callback(exc):
        calls.append(exc)
        done.set()

    result = pool.apply_async(jobs.fail_on_two, (2,), error_callback=error_callback)
    with pytest.raises(ValueError):
        result.get(TIMEOUT)
    assert done.wait(5)
    time.sleep(0.2)
    assert len(calls) == 1 and isinstance(calls[0], ValueError)


# ------------------------------------------------------------- exceptions
def test_job_exception_keeps_type_args_and_remote_traceback(make_pool):
    pool = make_pool()
    with pytest.raises(ValueError) as info:
        pool.map(jobs.fail_on_two, range(5))
    assert info.value.args == ("two", 2)
    assert isinstance(info.value.__cause__, multiprocessing.pool.RemoteTraceback)
    assert "fail_on_two" in str(info.value.__cause__)
    with pytest.raises(CustomError) as info:
        pool.apply(jobs.raise_custom, (7,))
    assert info.value.args == ("custom", 7)


def test_imap_raises_at_the_failed_job_and_goes_on(make_pool):
    pool = make_pool()
    iterator = pool.imap(jobs.fail_on_two, range(5))
    seen = []
    while True:
        try:
            seen.append(iterator.next(timeout=TIMEOUT))
        except StopIteration:
            break
        except ValueError as exc:
            seen.append(exc.args)
    assert seen == [0, 1, ("two", 2), 3, 4]


@pytest.mark.parametrize("index", [0, 4])
def test_exception_of_the_iterable_propagates_unwrapped(make_pool, index):
    pool = make_pool()
    err = KeyError("from the iterable")
    with pytest.raises(KeyError) as info:
        pool.map(jobs.square, raising_at(index, err), chunksize=3)
    assert info.value is err
    assert info.value.__cause__ is None


@pytest.mark.parametrize("chunksize", [1, 3])
def test_exception_of_the_iterable_in_imap(make_pool, chunksize):
    pool = make_pool()
    err = KeyError("from the iterable")
    iterator = pool.imap(jobs.square, raising_at(4, err), chunksize=chunksize)
    seen = []
    with pytest.raises(KeyError) as info:
        for value in iterator:
            seen.append(value)
    assert info.value.args == err.args
    if chunksize > 1 and make_pool.kind in STDLIB_KINDS:
        # The stdlib drops the jobs of the chunk the exception broke ...
        assert seen == [0, 1, 4]
    else:
        # ... the cluster pools run every job read before it
        # (docs/from_multiprocessing.rst).
        assert seen == [0, 1, 4, 9]


def test_unpicklable_job_is_an_error_not_a_hang(make_pool):
    pool = make_pool()
    lock = threading.Lock()
    with pytest.raises(TypeError):
        pool.map(jobs.square, [1, lock])
    result = pool.map_async(jobs.square, [lock])
    with pytest.raises(TypeError):
        result.get(TIMEOUT)


def test_unpicklable_result_is_an_error_not_a_hang(make_pool):
    pool = make_pool()
    with pytest.raises(multiprocessing.pool.MaybeEncodingError):
        pool.map(jobs.unpicklable_result, [1, 2])
    result = pool.apply_async(jobs.unpicklable_result, (1,))
    with pytest.raises(multiprocessing.pool.MaybeEncodingError):
        result.get(TIMEOUT)


# -------------------------------------------------------------- lifecycle
def test_closed_pool_refuses_work(make_pool):
    pool = make_pool()
    pool.close()
    calls = [
        lambda: pool.map(jobs.square, [1]),
        lambda: pool.starmap(jobs.add, [(1, 2)]),
        lambda: pool.map_async(jobs.square, [1]),
        lambda: pool.apply_async(jobs.square, (1,)),
        lambda: pool.apply(jobs.square, (1,)),
        lambda: pool.imap(jobs.square, [1]),
        lambda: pool.imap_unordered(jobs.square, [1]),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="Pool not running"):
            call()
    pool.join()


def test_terminated_pool_cannot_be_entered(make_pool):
    pool = make_pool()
    pool.terminate()
    with pytest.raises(ValueError):
        pool.__enter__()
    with pytest.raises(ValueError):
        pool.map(jobs.square, [1])


def test_context_manager_exit_terminates(make_pool):
    with make_pool() as pool:
        assert pool.map(jobs.square, [3]) == [9]
    with pytest.raises(ValueError):
        pool.map(jobs.square, [1])


def test_join_while_running_raises(make_pool):
    pool = make_pool()
    with pytest.raises(ValueError):
        pool.join()


def test_close_then_join_waits_for_the_work(make_pool):
    pool = make_pool()
    result = pool.map_async(jobs.sleep_then_return, [1, 1])
    applied = pool.apply_async(jobs.square, (4,))
    pool.close()
    pool.join()
    assert result.ready() and result.get(0) == [1, 1]
    assert applied.ready() and applied.get(0) == 16


def test_garbage_collected_running_pool_warns(make_pool):
    pool = make_pool(track=False)
    pool.map(jobs.square, [1])
    with pytest.warns(ResourceWarning):
        del pool
        gc.collect()


def test_several_maps_in_flight(make_pool):
    pool = make_pool()
    slow = pool.map_async(jobs.sleep_then_return, [1, 1, 1])
    fast = pool.map_async(jobs.square, range(10))
    applied = pool.apply_async(jobs.add, (2, 3))
    assert fast.get(TIMEOUT) == [i * i for i in range(10)]
    assert slow.get(TIMEOUT) == [1, 1, 1]
    assert applied.get(TIMEOUT) == 5


def test_initializer_runs_once_in_each_worker_before_its_jobs(make_pool):
    pool = make_pool(initializer=jobs.initialize, initargs=("tag",))
    for seen in pool.map(jobs.initialized, range(8), chunksize=1):
        assert len(seen) == 1
        assert seen[0][0] == "tag"


def test_maxtasksperchild(make_pool):
    """A new worker process after that many tasks (chunks of a map)."""
    with pytest.raises(ValueError):
        make_pool(maxtasksperchild=0)
    pool = make_pool(processes=1, maxtasksperchild=1)
    pids = pool.map(jobs.pid_of, range(4), chunksize=1)
    assert len(set(pids)) == 4
    pool = make_pool(processes=1, maxtasksperchild=2)
    pids = pool.map(jobs.pid_of, range(8), chunksize=2)
    assert len(set(pids)) == 2


def test_invalid_arguments(make_pool):
    with pytest.raises(ValueError):
        make_pool(processes=0)
    with pytest.raises(TypeError):
        make_pool(initializer=3)
    pool = make_pool()
    with pytest.raises(ValueError):
        pool.imap(jobs.square, [1], chunksize=0)


# ----------------------------------------------------- beyond the stdlib
def test_lambdas_and_closures(beyond_stdlib):
    pool = beyond_stdlib()
    offset = 5
    assert pool.map(lambda x: x + offset, [1, 2]) == [6, 7]
    assert pool.apply_async(lambda: offset).get(TIMEOUT) == 5
    assert list(pool.imap(lambda x: -x, [1, 2])) == [-1, -2]
    assert pool.starmap(lambda a, b: a - b, [(3, 1)]) == [2]


def test_lambda_initializer(beyond_stdlib):
    pool = beyond_stdlib(initializer=lambda tag: jobs.initialize(tag), initargs=("lam",))
    assert all(len(s) == 1 for s in pool.map(jobs.initialized, range(4)))


def test_unpicklable_func_is_an_error(beyond_stdlib):
    pool = beyond_stdlib()
    lock = threading.Lock()
    with pytest.raises(errors.NotPicklableError):
        pool.map(lambda x: lock, [1])
    result = pool.apply_async(lambda: lock)
    with pytest.raises(errors.NotPicklableError):
        result.get(TIMEOUT)
