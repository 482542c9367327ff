"""
``pypoolparty.local.Pool(cache_dir=...)``: every call kind gives the stdlib's
outcomes with a store as without, stored jobs do not run again, a failing
job is not stored, two pools share a store, and the store is the cluster
pools' (a fake cluster pool reads what a local pool stored and the other
way round).
"""
import contextlib
import functools
import json
import multiprocessing
import os
import pickle
import re
import subprocess
import threading
import time

import pytest

from fake_jobs import Gate, counted, runs_of, wait_until
from pypoolparty import errors, local
from pypoolparty.core import keys
from pypoolparty.core.calling import CallSpec, CallStyle
from pypoolparty.core.store import Shelf
from pypoolparty.testing import fake

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 20
JOBS = list(range(10))


def job(folder, **kwargs):
    """:func:`counted` noting its runs in ``folder``."""
    os.makedirs(str(folder), exist_ok=True)
    return functools.partial(counted, folder=str(folder), **kwargs)


@contextlib.contextmanager
def stored_pool(store, processes=2):
    """A local pool on ``store`` that is left by close and join: every task
    sent ends, also those of an iteration the caller stopped early."""
    pool = local.Pool(processes, cache_dir=str(store))
    try:
        yield pool
        pool.close()
        pool.join()
    finally:
        pool.terminate()


def outcome(call):
    """What a call gives: its value, or the type and args of what it raised."""
    try:
        return ("value", call())
    except Exception as exc:
        return ("raised", type(exc).__name__, exc.args)


def iterated(iterator):
    """Each step of an imap iterator, until it stops."""
    steps = []
    while True:
        try:
            steps.append(("value", next(iterator)))
        except StopIteration:
            return steps
        except Exception as exc:
            steps.append(("raised", type(exc).__name__, exc.args))


def map_async(pool, f, jobs):
    got = []
    result = pool.map_async(f, jobs, callback=got.append, error_callback=got.append)
    return outcome(lambda: result.get(TIMEOUT)), [outcome(lambda: _raise_or(g)) for g in got]


def starmap_async(pool, f, jobs):
    got = []
    jobs = [(x,) for x in jobs]
    result = pool.starmap_async(f, jobs, callback=got.append, error_callback=got.append)
    return outcome(lambda: result.get(TIMEOUT)), [outcome(lambda: _raise_or(g)) for g in got]


def apply_async(pool, f, jobs):
    got = []
    results = [pool.apply_async(f, (x,), callback=got.append, error_callback=got.append) for x in jobs]
    outcomes = [outcome(lambda r=r: r.get(TIMEOUT)) for r in results]
    return outcomes, sorted(map(repr, got))


def unordered(steps):
    """Steps of an unordered iteration, comparable: sorted; once one raised,
    the chunks that would have come later depend on timing, so only what
    raised counts."""
    raised = sorted(s for s in steps if s[0] == "raised")
    return raised if raised else sorted(steps)


def _raise_or(value):
    if isinstance(value, BaseException):
        raise value
    return value


#: Each call kind, and the jobs (of 0..9) in the chunk of job 3.
KINDS = {
    "map": (lambda pool, f, jobs: outcome(lambda: pool.map(f, jobs)), [2, 3]),
    "map chunksize 4": (
        lambda pool, f, jobs: outcome(lambda: pool.map(f, jobs, chunksize=4)), [0, 1, 2, 3]
    ),
    "map_async": (map_async, [2, 3]),
    "starmap": (lambda pool, f, jobs: outcome(lambda: pool.starmap(f, [(x,) for x in jobs])), [2, 3]),
    "starmap_async": (starmap_async, [2, 3]),
    "imap": (lambda pool, f, jobs: iterated(pool.imap(f, jobs)), [3]),
    "imap chunksize 3": (lambda pool, f, jobs: iterated(pool.imap(f, jobs, chunksize=3)), [3, 4, 5]),
    "imap_unordered": (lambda pool, f, jobs: sorted(iterated(pool.imap_unordered(f, jobs))), [3]),
    "imap_unordered chunksize 3": (
        lambda pool, f, jobs: unordered(iterated(pool.imap_unordered(f, jobs, chunksize=3))), [3, 4, 5]
    ),
    "apply": (lambda pool, f, jobs: [outcome(lambda x=x: pool.apply(f, (x,))) for x in jobs], [3]),
    "apply_async": (apply_async, [3]),
}


@pytest.fixture
def stdlib_pool():
    pool = multiprocessing.Pool(2)
    yield pool
    pool.terminate()


@pytest.mark.parametrize("kind", KINDS)
def test_each_call_kind_gives_the_stdlibs_outcome_and_stored_jobs_do_not_run(kind, tmp_path, stdlib_pool):
    call, _ = KINDS[kind]
    expected = call(stdlib_pool, job(tmp_path / "stdlib"), JOBS)
    assert "raised" not in repr(expected)
    with local.Pool(2) as pool:
        assert call(pool, job(tmp_path / "plain"), JOBS) == expected
    f = job(tmp_path / "runs")
    with stored_pool(tmp_path / "store") as pool:
        assert call(pool, f, JOBS) == expected
    assert runs_of(tmp_path / "runs") == {x: 1 for x in JOBS}
    with stored_pool(tmp_path / "store") as pool:
        started = time.monotonic()
        assert call(pool, f, JOBS) == expected
        assert time.monotonic() - started < 2.0
    assert runs_of(tmp_path / "runs") == {x: 1 for x in JOBS}
    # Partly stored: only the new jobs run.
    more = list(range(15))
    with stored_pool(tmp_path / "store") as pool:
        assert call(pool, f, more) == call(stdlib_pool, job(tmp_path / "stdlib"), more)
    assert runs_of(tmp_path / "runs") == {x: 1 for x in more}


@pytest.mark.parametrize("kind", KINDS)
def test_a_failing_job_gives_the_stdlibs_outcome_is_not_stored_and_runs_again(kind, tmp_path, stdlib_pool):
    call, chunk_of_3 = KINDS[kind]
    expected = call(stdlib_pool, job(tmp_path / "stdlib", bad=(3,)), JOBS)
    assert "raised" in repr(expected)
    with local.Pool(2) as pool:
        assert call(pool, job(tmp_path / "plain", bad=(3,)), JOBS) == expected
    f = job(tmp_path / "runs", bad=(3,))
    for _ in range(2):
        with stored_pool(tmp_path / "store") as pool:
            assert call(pool, f, JOBS) == expected
    # Only the failed chunk ran again (up to its failing job, as a chunk
    # does): the other jobs were stored.
    expected_runs = {x: 1 for x in JOBS if x not in chunk_of_3}
    expected_runs.update({x: 2 for x in chunk_of_3 if x <= 3})
    assert runs_of(tmp_path / "runs") == expected_runs


def raising_at(index):
    for i in range(10):
        if i == index:
            raise KeyError("the iterable broke", i)
        yield i


@pytest.mark.parametrize("chunksize", [1, 3])
@pytest.mark.parametrize("method", ["imap", "imap_unordered"])
def test_an_iterable_that_raises_ends_the_call_as_in_the_stdlibs(method, chunksize, tmp_path, stdlib_pool):
    def call(pool, f):
        steps = iterated(getattr(pool, method)(f, raising_at(5), chunksize=chunksize))
        return steps if method == "imap" else unordered(steps)

    expected = call(stdlib_pool, job(tmp_path / "stdlib"))
    assert ("raised", "KeyError", ("the iterable broke", 5)) in expected
    f = job(tmp_path / "runs")
    for _ in range(2):
        with stored_pool(tmp_path / "store") as pool:
            assert call(pool, f) == expected
    # A chunk the error cut short is not run, as in the stdlib.
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(5 - 5 % chunksize)}
    with local.Pool(2, cache_dir=str(tmp_path / "store")) as pool:
        with pytest.raises(KeyError):
            pool.map(f, raising_at(5))


def test_jobs_that_are_no_calls_fail_as_in_the_stdlib(tmp_path, stdlib_pool):
    def calls(pool):
        """The outcomes, and what reached the error callbacks."""
        seen = []
        outcomes = [
            outcome(lambda: pool.starmap_async(pow, [(2, 3), 5], error_callback=seen.append).get(TIMEOUT)),
            outcome(lambda: pool.apply_async(pow, 5, error_callback=seen.append).get(TIMEOUT)),
            outcome(lambda: pool.apply_async(pow, (2, 3), 5, error_callback=seen.append).get(TIMEOUT)),
        ]
        outcomes.append([type(exc).__name__ for exc in seen])
        return [re.sub(" at 0x[0-9a-f]+", "", repr(o)) for o in outcomes]

    assert calls(stdlib_pool)[3] == repr(["TypeError"] * 3)
    with local.Pool(2) as pool:
        expected = calls(pool)  # the same, but for how func is named
    with local.Pool(2, cache_dir=str(tmp_path / "store")) as pool:
        assert calls(pool) == expected


def test_get_and_next_time_out_as_the_stdlibs(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    f = job(tmp_path / "runs", gate=str(gate))
    with local.Pool(2, cache_dir=str(tmp_path / "store")) as pool:
        result = pool.map_async(f, range(4))
        with pytest.raises(multiprocessing.TimeoutError):
            result.get(timeout=0.05)
        assert not result.ready()
        it = pool.imap(f, range(4, 8))
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(timeout=0.05)
        (gate / "go").touch()
        assert result.get(TIMEOUT) == [0, 1, 4, 9]
        assert result.successful()
        assert list(it) == [16, 25, 36, 49]
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(8)}


def test_a_closed_pool_refuses_calls_and_join_waits_for_what_runs(tmp_path):
    f = job(tmp_path / "runs")
    pool = local.Pool(2, cache_dir=str(tmp_path / "store"))
    result = pool.map_async(f, range(6))
    pool.close()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.map(f, range(3))
    pool.join()
    assert result.get(0) == [x * x for x in range(6)]
    with local.Pool(2, cache_dir=str(tmp_path / "store")) as again:
        assert again.map(f, range(6)) == [x * x for x in range(6)]
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(6)}


def store_files(store):
    """The files of each shelf of a store folder, by kind."""
    out = []
    for shelf in os.listdir(str(store)):
        folder = os.path.join(str(store), shelf)
        if os.path.isdir(folder):
            out += os.listdir(folder)
    return {
        kind: sorted(n for n in out if kind in n) for kind in (".pickle", ".jsonl", ".owner-")
    }


def test_results_are_stored_in_few_batches_and_before_the_caller_sees_the_last(tmp_path):
    f = job(tmp_path / "runs")
    with local.Pool(2, cache_dir=str(tmp_path / "store")) as pool:
        started = time.monotonic()
        assert pool.map(f, range(200), chunksize=1) == [x * x for x in range(200)]
        seconds = time.monotonic() - started
        # Stored when map returned (not only when the pool ends) ...
        files = store_files(tmp_path / "store")
        assert len(files[".jsonl"]) == 1 and files[".owner-"] == []
        # ... in one batch a second at most, not one a chunk.
        assert 1 <= len(files[".pickle"]) <= 2 + seconds
        with local.Pool(2, cache_dir=str(tmp_path / "store")) as other:
            assert other.map(f, range(200)) == [x * x for x in range(200)]
        # A burst of apply_async calls shares its records too.
        results = [pool.apply_async(f, (x,)) for x in range(200, 300)]
        assert [r.get(TIMEOUT) for r in results] == [x * x for x in range(200, 300)]
        assert len(store_files(tmp_path / "store")[".jsonl"]) <= 1 + 2
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(300)}


def test_results_are_stored_within_about_a_second_while_the_call_runs(tmp_path):
    gate = Gate(tmp_path / "gate")
    f = gate.job(which=[2])
    with local.Pool(2, cache_dir=str(tmp_path / "store")) as pool:
        waiting = pool.apply_async(f, (2,))
        gate.wait_started(1)
        assert pool.apply_async(f, (1,)).get(TIMEOUT) == 1
        # Job 2 still runs; job 1 is stored meanwhile, a second later at most.
        assert wait_until(lambda: len(store_files(tmp_path / "store")[".pickle"]) == 1, timeout=5)
        assert not waiting.ready()
        with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as cluster:
            assert cluster.apply_async(f, (1,)).get(TIMEOUT) == 1
            assert sum(cluster.scheduler.calls.values()) == 0
        gate.open()
        assert waiting.get(TIMEOUT) == 4
        # The burst's record ends a second after its last result.
        assert wait_until(lambda: store_files(tmp_path / "store")[".owner-"] == [], timeout=5)
        assert len(store_files(tmp_path / "store")[".pickle"]) == 2


def test_terminate_keeps_what_came_and_ends_the_records(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    quick = job(tmp_path / "runs")
    gated = job(tmp_path / "gated", gate=str(gate))
    pool = local.Pool(2, cache_dir=str(tmp_path / "store"))
    try:
        assert list(pool.imap(quick, range(3))) == [0, 1, 4]
        pool.map_async(gated, range(4), chunksize=1)
        assert wait_until(lambda: len(runs_of(tmp_path / "gated")) == 2)
    finally:
        pool.terminate()
    assert store_files(tmp_path / "store")[".owner-"] == []
    (gate / "go").touch()
    # The record of the cancelled map ended: a cluster pool (in this very
    # process, so its owner would seem alive) does not wait for it.
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as cluster:
        assert cluster.map(gated, range(4)) == [0, 1, 4, 9]
        assert cluster.map(quick, range(3)) == [0, 1, 4]
        assert len(cluster.scheduler.calls_of("submit")) == 1
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(3)}


def keys_of(f, jobs):
    ((_, _, wanted),) = keys.call_keys(CallSpec(funcs=(f,), style=CallStyle.ONE), jobs)
    return {key: jobs[positions[0]] for key, positions in wanted.items()}


def every_stored_value(store, job_of):
    """(job, value) for each value of each batch of each record, read from
    the files, duplicates included."""
    out = []
    for shelf in os.listdir(str(store)):
        folder = os.path.join(str(store), shelf)
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if not name.endswith(".jsonl"):
                continue
            with open(os.path.join(folder, name)) as fp:
                for line in fp:
                    entry = json.loads(line)
                    if "stored" in entry:
                        with open(os.path.join(folder, entry["stored"]), "rb") as pf:
                            values = pickle.load(pf)
                        assert len(values) == len(entry["keys"])
                        out += [(job_of[k], v) for k, v in zip(entry["keys"], values)]
    return out


def test_two_pools_on_one_store_at_once_store_every_value_right(tmp_path):
    slow = functools.partial(counted_slowly, job(tmp_path / "runs"))
    jobs = list(range(60))
    job_of = keys_of(slow, jobs)
    wrong = []
    stop = threading.Event()

    def read_while_they_write():
        """A third driver reading the store all along sees no torn entry."""
        while not stop.is_set():
            for name in os.listdir(str(tmp_path / "store")):
                if os.path.isdir(str(tmp_path / "store" / name)):
                    shelf = Shelf(str(tmp_path / "store" / name))
                    try:
                        shelf.scan()
                        values = shelf.values(list(shelf.stored))
                    except errors.StoreError as exc:
                        wrong.append(exc)
                        return
                    wrong.extend((k, v) for k, v in values.items() if v != job_of[k] ** 2)
            time.sleep(0.01)

    a = local.Pool(2, cache_dir=str(tmp_path / "store"))
    b = local.Pool(2, cache_dir=str(tmp_path / "store"))
    reader = threading.Thread(target=read_while_they_write)
    reader.start()
    started = time.monotonic()
    try:
        first = a.map_async(slow, jobs, chunksize=1)
        second = b.map_async(slow, list(reversed(jobs)), chunksize=1)
        assert first.get(TIMEOUT) == [x * x for x in jobs]
        assert second.get(TIMEOUT) == [x * x for x in reversed(jobs)]
        seconds = time.monotonic() - started
    finally:
        stop.set()
        reader.join()
        a.terminate()
        b.terminate()
    assert wrong == []
    runs = runs_of(tmp_path / "runs")
    assert sorted(runs) == jobs and max(runs.values()) <= 2
    assert sum(runs.values()) > len(jobs)  # they did run at the same time
    stored = every_stored_value(tmp_path / "store", job_of)
    assert sorted(set(x for x, _ in stored)) == jobs
    assert [(x, v) for x, v in stored if v != x * x] == []
    assert len(store_files(tmp_path / "store")[".pickle"]) <= 2 * (2 + seconds)  # batches, not jobs
    with local.Pool(2, cache_dir=str(tmp_path / "store")) as pool:
        assert pool.map(slow, jobs) == [x * x for x in jobs]
    assert runs_of(tmp_path / "runs") == runs


def counted_slowly(f, x):
    time.sleep(0.05)
    return f(x)


# ------------------------------------------------- the cluster pools' store
def test_a_store_filled_by_a_local_pool_serves_a_cluster_pool(tmp_path):
    f = job(tmp_path / "runs")
    with local.Pool(2, cache_dir=str(tmp_path / "store")) as pool:
        assert pool.map(f, range(8)) == [x * x for x in range(8)]
        assert pool.starmap(f, [(x,) for x in range(8, 10)]) == [64, 81]
        assert pool.apply(f, (10,)) == 100
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        assert pool.map(f, range(11)) == [x * x for x in range(11)]
        assert list(pool.imap(f, range(11), chunksize=2)) == [x * x for x in range(11)]
        assert sum(pool.scheduler.calls.values()) == 0
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(11)}


def test_a_store_filled_by_a_cluster_pool_serves_a_local_pool(tmp_path):
    f = job(tmp_path / "runs")
    with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as pool:
        assert pool.map(f, range(8)) == [x * x for x in range(8)]
        assert pool.apply_async(f, (8,)).get(TIMEOUT) == 64
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(9)}
    with local.Pool(2, cache_dir=str(tmp_path / "store")) as pool:
        assert pool.map(f, range(10)) == [x * x for x in range(10)]
        assert sorted(pool.imap_unordered(f, range(9))) == [x * x for x in range(9)]
        assert pool.starmap(f, [(x,) for x in range(10)]) == [x * x for x in range(10)]
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(10)}


def test_a_cluster_pool_follows_a_live_local_pools_call(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    f = job(tmp_path / "runs", gate=str(gate))
    with local.Pool(2, cache_dir=str(tmp_path / "store")) as pool:
        running = pool.map_async(f, range(6), chunksize=1)
        assert wait_until(lambda: len(runs_of(tmp_path / "runs")) == 2)
        with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as cluster:
            following = cluster.map_async(f, range(6))
            time.sleep(0.3)
            (gate / "go").touch()
            assert running.get(TIMEOUT) == [x * x for x in range(6)]
            assert following.get(TIMEOUT) == [x * x for x in range(6)]
            assert cluster.scheduler.calls_of("submit") == []
    assert runs_of(tmp_path / "runs") == {x: 1 for x in range(6)}


def play_dead(pool):
    """Make a local pool's records look like those of a killed driver: it
    stores nothing more and its process seems gone."""
    for record in list(pool._stored.records._open):
        record.writer.put = record.writer.end = lambda *args: None
        record.writer.heartbeat = lambda: None
        with open(record.writer.owner_path) as fp:
            owner = json.load(fp)
        owner["pid"] = subprocess.Popen(["true"]).pid  # a process that ended
        time.sleep(0.05)
        with open(record.writer.owner_path, "w") as fp:
            json.dump(owner, fp)


def test_a_dead_local_drivers_record_is_run_anew_by_a_cluster_pool(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    f = job(tmp_path / "runs", gate=str(gate))
    dead = local.Pool(2, cache_dir=str(tmp_path / "store"))
    try:
        dead.map_async(f, range(6), chunksize=1)
        assert wait_until(lambda: len(runs_of(tmp_path / "runs")) == 2)
        play_dead(dead)
        (gate / "go").touch()
        with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as cluster:
            assert cluster.map(f, range(6)) == [x * x for x in range(6)]
            assert len(cluster.scheduler.calls_of("submit")) >= 1
        with fake.pool(2, work_dir=tmp_path / "w", cache_dir=tmp_path / "store") as cluster:
            assert cluster.map(f, range(6)) == [x * x for x in range(6)]
            assert sum(cluster.scheduler.calls.values()) == 0
    finally:
        dead.terminate()
    runs = runs_of(tmp_path / "runs")
    assert sorted(runs) == list(range(6))


def test_a_folder_that_is_not_a_store_is_refused_untouched(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "thesis.tex").write_text("mine")
    with pytest.raises(errors.StoreError, match="not a pypoolparty store"):
        local.Pool(1, cache_dir=str(tmp_path / "data"))
    assert os.listdir(str(tmp_path / "data")) == ["thesis.tex"]


def test_without_a_store_the_calls_are_the_stdlibs_alone():
    def keepers():
        return {t.ident for t in threading.enumerate() if t.name == "pypoolparty-local-store"}

    before = keepers()
    with local.Pool(1) as pool:
        assert pool.map_async(abs, [-1]).get(TIMEOUT) == [1]
        assert list(pool.imap(abs, [-1])) == [1]
        assert pool.apply_async(abs, (-1,)).get(TIMEOUT) == 1
        assert pool._stored is None
        assert keepers() <= before
