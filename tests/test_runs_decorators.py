"""
ParallelAverage's workflow on the fake scheduler: ``@parallel`` and
``@parallel_average`` submit and return at once, later calls return what is
finished (with a warning while runs are missing), the average is numpy's
over the runs, and the actions do what they say.
"""
import os
import warnings

import numpy
import pytest

import pypoolparty
from fake_jobs import noisy_run, runs_of, wait_until
from pypoolparty import errors
from pypoolparty.runs import flights, seeding
from pypoolparty.testing import fake

pytestmark = pytest.mark.timeout(60)


class FakePool(fake.ClusterPool):
    """A pool class for pool=: each pool gets its own fake scheduler."""

    made = []

    def __init__(self, processes, **kwargs):
        super().__init__(processes, scheduler=fake.FakeScheduler(), polling_interval=0.05, **kwargs)
        FakePool.made.append(self)


@pytest.fixture(autouse=True)
def fresh_pools():
    """The decorators keep a pool per settings in the process: not across tests."""
    yield
    for pool in FakePool.made:
        pool.terminate()
        pool.scheduler.shutdown()
    FakePool.made.clear()
    for pool in flights.pools.values():
        pool.terminate()
    flights.pools.clear()
    flights.in_flight.clear()


def decorate(tmp_path, which=pypoolparty.parallel, **kwargs):
    kwargs.setdefault("seed", 7)
    return which(N_runs=8, N_tasks=2, path=str(tmp_path / "project"), pool=FakePool, **kwargs)(noisy_run)


def quietly(call, *args, **kwargs):
    """The call's result and its warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call(*args, **kwargs)
    return out, [str(w.message) for w in caught if issubclass(w.category, errors.RunsNotReadyWarning)]


def complete(call, *args, **kwargs):
    """Call until no run is missing."""
    box = {}

    def done():
        box["out"], missing = quietly(call, *args, **kwargs)
        return not missing

    assert wait_until(done, timeout=30)
    return box["out"]


def local_runs(x, folder, seed=7, num_runs=8):
    """The runs computed here, one by one, with the same seeds."""
    return [
        seeding.run_function(noisy_run, i, s, (x, folder))
        for i, s in enumerate(seeding.run_seeds(seed, num_runs))
    ]


def test_the_first_call_submits_and_returns_at_once_later_calls_the_runs(tmp_path):
    f = decorate(tmp_path)
    folder = str(tmp_path / "marks")
    os.mkdir(folder)
    gate = tmp_path / "gate"
    gate.mkdir()
    first, missing = quietly(f, 1.0, folder, gate=str(gate))
    assert list(first) == [] and missing == ["pypoolparty: 8 / 8 runs of noisy_run are not ready yet"]
    assert wait_until(lambda: len(runs_of(folder)) == 2)
    (gate / "go").touch()
    runs = complete(f, 1.0, folder, gate=str(gate))
    assert runs.indices == list(range(8)) and runs.num_runs == 8
    expected = local_runs(1.0, folder)
    for got, want in zip(runs, expected):
        assert got["value"] == want["value"]
        numpy.testing.assert_array_equal(got["vector"], want["vector"])
    assert len({r["value"] for r in runs}) == 8  # each run its own randomness
    assert runs_of(folder) == {i: 2 for i in range(8)}  # once remote, once in local_runs


def test_partial_results_come_with_a_warning_and_the_average_is_numpys(tmp_path):
    folder = str(tmp_path / "marks")
    os.mkdir(folder)
    gate = tmp_path / "gate"
    gate.mkdir()
    runs_f = decorate(tmp_path)
    average_f = decorate(tmp_path, pypoolparty.parallel_average)
    quietly(average_f, 2.0, folder, gate=str(gate))
    none_yet, missing = quietly(average_f, 2.0, folder, gate=str(gate))
    assert none_yet is None and "8 / 8 runs" in missing[0]
    (gate / "go").touch()
    averaged = complete(average_f, 2.0, folder, gate=str(gate))
    runs = runs_f.dont_submit(2.0, folder, gate=str(gate))  # the same entry: the same runs
    values = numpy.array([r["value"] for r in runs])
    vectors = numpy.array([r["vector"] for r in runs])
    assert averaged.num_runs == 8
    assert float(averaged["value"]) == pytest.approx(values.mean(), rel=1e-12)
    assert float(averaged["value"].variance) == pytest.approx(values.var(ddof=1), rel=1e-12)
    assert float(averaged["value"].standard_deviation) == pytest.approx(values.std(ddof=1), rel=1e-12)
    assert float(averaged["value"].estimated_error) == pytest.approx(values.std(ddof=1) / numpy.sqrt(8), rel=1e-12)
    numpy.testing.assert_allclose(averaged["vector"].mean, vectors.mean(axis=0), rtol=1e-12)
    assert runs_of(folder) == {i: 1 for i in range(8)}


def test_dont_submit_reads_only_and_knows_no_new_arguments(tmp_path):
    folder = str(tmp_path / "marks")
    os.mkdir(folder)
    f = decorate(tmp_path)
    with pytest.raises(errors.EntryNotFoundError, match="never called with these arguments"):
        f.dont_submit(3.0, folder)
    assert FakePool.made == []  # no pool, no scheduler
    complete(f, 3.0, folder)
    assert len(pypoolparty.runs.listing(str(tmp_path / "project"))) == 1
    by_function = pypoolparty.dont_submit(f)(3.0, folder)
    assert [r["value"] for r in by_function] == [r["value"] for r in f.dont_submit(3.0, folder)]


def test_more_runs_later_reuse_the_first_ones_and_do_submit_makes_new_ones(tmp_path):
    folder = str(tmp_path / "marks")
    os.mkdir(folder)
    eight = complete(decorate(tmp_path), 4.0, folder)
    sixteen_f = pypoolparty.parallel(N_runs=16, N_tasks=2, path=str(tmp_path / "project"), pool=FakePool, seed=7)(noisy_run)
    sixteen = complete(sixteen_f, 4.0, folder)
    assert [r["value"] for r in sixteen[:8]] == [r["value"] for r in eight]
    assert runs_of(folder) == {i: 1 for i in range(16)}
    sixteen_f.do_submit(4.0, folder)
    again = complete(sixteen_f, 4.0, folder)
    assert [r["value"] for r in again] == [r["value"] for r in sixteen]  # same seed, same runs
    assert runs_of(folder) == {i: 2 for i in range(16)}  # but computed anew


def test_re_submit_runs_only_the_failed_runs(tmp_path):
    folder = str(tmp_path / "marks")
    os.mkdir(folder)
    flag = tmp_path / "failing"
    flag.touch()
    f = decorate(tmp_path)
    f(5.0, folder, fail_while=str(flag))

    def failures_reported():
        _, missing = quietly(f, 5.0, folder, fail_while=str(flag))
        return missing and "3 failed" in missing[0]

    assert wait_until(failures_reported, timeout=30)
    flag.unlink()
    _, missing = quietly(f, 5.0, folder, fail_while=str(flag))
    assert "3 failed" in missing[0]  # a plain call does not run them again
    f.re_submit(5.0, folder, fail_while=str(flag))
    runs = complete(f, 5.0, folder, fail_while=str(flag))
    assert len(runs) == 8
    assert runs_of(folder) == {i: 2 if i % 3 == 0 else 1 for i in range(8)}


def test_cancel_job_cancels_the_runs_in_flight(tmp_path):
    folder = str(tmp_path / "marks")
    os.mkdir(folder)
    gate = tmp_path / "gate"
    gate.mkdir()
    f = decorate(tmp_path)
    f(6.0, folder, gate=str(gate))
    assert wait_until(lambda: len(runs_of(folder)) == 2)
    (pool,) = FakePool.made
    f.cancel_job(6.0, folder, gate=str(gate))
    assert wait_until(lambda: pool.scheduler.worker_ids("RUNNING", "PENDING") == [], timeout=10)
    _, missing = quietly(f.dont_submit, 6.0, folder, gate=str(gate))
    assert "none of them runs now" in missing[0]


def test_the_json_encoding_stores_readable_results(tmp_path):
    folder = str(tmp_path / "marks")
    os.mkdir(folder)
    runs = complete(decorate(tmp_path, encoding="json"), 8.0, folder)
    assert isinstance(runs[0]["vector"], numpy.ndarray)
    store = tmp_path / "project" / "pypoolparty-parallel" / "store"
    batches = [n for d in os.listdir(str(store)) if os.path.isdir(str(store / d)) for n in os.listdir(str(store / d))]
    assert any(n.endswith(".json") and "-g" in n for n in batches)
    assert not any(n.endswith(".pickle") for n in batches)


def test_a_look_before_raising_n_runs_does_not_hide_the_new_runs(tmp_path):
    folder = str(tmp_path / "marks")
    os.mkdir(folder)
    complete(decorate(tmp_path), 9.0, folder)
    more = pypoolparty.parallel(N_runs=12, N_tasks=2, path=str(tmp_path / "project"), pool=FakePool, seed=7)(noisy_run)
    _, missing = quietly(more.dont_submit, 9.0, folder)
    assert "4 / 12 runs" in missing[0]
    assert len(complete(more, 9.0, folder)) == 12
    assert runs_of(folder) == {i: 1 for i in range(12)}


def test_on_the_local_machine_the_runs_are_detached_processes(tmp_path):
    folder = str(tmp_path / "marks")
    os.mkdir(folder)
    f = pypoolparty.parallel_average(N_runs=4, N_tasks=2, path=str(tmp_path / "project"), seed=7, pool="local")(
        noisy_run
    )
    averaged = complete(f, 1.0, folder)
    values = numpy.array([r["value"] for r in local_runs(1.0, folder, num_runs=4)])
    assert float(averaged["value"]) == pytest.approx(values.mean(), rel=1e-12)
    (pool,) = flights.pools.values()
    assert type(pool).__module__ == "pypoolparty.processes.pool"
