"""
The libraries our users hand a pool to -- emcee, dynesty and scipy's
``differential_evolution`` -- run with every kind of pool and give exactly
the result they give without one (fixed seeds), and what they rely on in a
pool besides ``map``.

Each client calls ``map`` once per step with a few jobs. The runs are small:
a cluster pool that submits new jobs for every map takes seconds per map.
"""
import functools

import dynesty
import emcee
import numpy as np
import numpy.testing
import pytest
import scipy.optimize

import client_jobs as jobs
import conformance_jobs
from pool_kinds import KINDS, pool_maker, with_marks

SEED = 42


@pytest.fixture(params=with_marks(KINDS))
def make_pool(request, tmp_path, monkeypatch):
    """The reference and each of pypoolparty's pools."""
    yield from pool_maker(request, tmp_path, monkeypatch)


# ------------------------------------------------------------------- emcee
def run_emcee(pool):
    """8 walkers in 2 dimensions, 5 steps: 11 maps of 4 jobs (8 for the first)."""
    nwalkers, ndim, nsteps = 8, 2, 5
    start = np.random.default_rng(SEED).normal(size=(nwalkers, ndim))
    sampler = emcee.EnsembleSampler(nwalkers, ndim, jobs.log_density, pool=pool)
    sampler.random_state = np.random.RandomState(SEED).get_state()
    sampler.run_mcmc(start, nsteps, progress=False)
    return sampler


def test_emcee_gives_the_chain_it_gives_without_a_pool(make_pool):
    sampler = run_emcee(make_pool())
    reference = run_emcee(None)
    assert reference.acceptance_fraction.min() > 0  # every walker moved
    numpy.testing.assert_array_equal(sampler.get_chain(), reference.get_chain())
    numpy.testing.assert_array_equal(sampler.get_log_prob(), reference.get_log_prob())


# ----------------------------------------------------------------- dynesty
class InProcessPool:
    """dynesty's reference: its code path for a pool, with the builtin ``map``.

    With ``pool=None`` dynesty forces ``queue_size=1`` and hands its own
    generator (``rstate``) to each proposal, which advances it in place; a
    pool's worker advances a copy, so the draws that follow differ and no
    run with a pool can equal one without. With a pool and ``queue_size > 1``
    it seeds each proposal from a ``SeedSequence`` spawned from ``rstate``:
    where the proposals run no longer matters. This object takes dynesty
    down that path and runs the proposals here, one after the other.
    """

    def __init__(self, processes):
        self._processes = processes

    def map(self, func, iterable):
        return list(map(func, iterable))


def run_dynesty(pool):
    """10 live points, 60 iterations, 8 proposals a map: 12 maps."""
    sampler = dynesty.NestedSampler(
        jobs.log_density,
        jobs.prior_transform,
        2,
        nlive=10,
        bound="single",
        sample="rwalk",
        pool=pool,
        queue_size=8,
        rstate=np.random.default_rng(SEED),
    )
    sampler.run_nested(maxiter=60, print_progress=False)
    return sampler


@pytest.mark.filterwarnings("ignore:The sampling was stopped short")
def test_dynesty_gives_the_results_it_gives_without_a_pool(make_pool):
    sampler = run_dynesty(make_pool())
    reference = run_dynesty(InProcessPool(processes=2))
    # The run got past the first bound update: the random walks ran in the pool.
    assert type(reference.internal_sampler).__name__ == "RWalkSampler"
    ours, theirs = sampler.results, reference.results
    for key in ("samples", "samples_u", "logl", "logwt", "logz", "ncall"):
        numpy.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


# ------------------------------------------------------------------- scipy
def run_differential_evolution(workers):
    """A population of 8 in 2 dimensions, 4 generations: 5 maps of 8 jobs.

    No polishing: its L-BFGS-B would map one job at a time, 90 maps.
    """
    return scipy.optimize.differential_evolution(
        jobs.rosenbrock,
        [(-2.0, 2.0)] * 2,
        popsize=4,
        maxiter=4,
        tol=0.0,
        polish=False,
        updating="deferred",
        seed=SEED,
        workers=workers,
    )


def test_differential_evolution_gives_the_result_it_gives_without_a_pool(make_pool):
    result = run_differential_evolution(make_pool().map)
    reference = run_differential_evolution(1)
    numpy.testing.assert_array_equal(result.x, reference.x)
    assert (result.fun, result.nit, result.nfev) == (reference.fun, reference.nit, reference.nfev)


# ------------------------------------------- what clients read of a pool
def test_processes_is_the_number_given(make_pool):
    processes = make_pool(processes=3)._processes
    assert type(processes) is int and processes == 3


def test_default_processes_is_an_int_from_construction(make_pool):
    """dynesty sizes its queue from ``pool._processes`` (or ``pool.size``)."""
    pool = make_pool(processes=None)
    assert type(pool._processes) is int and pool._processes >= 1
    sampler = dynesty.NestedSampler(
        jobs.log_density,
        jobs.prior_transform,
        2,
        nlive=10,
        pool=pool,
        rstate=np.random.default_rng(SEED),
    )
    assert sampler.queue_size == pool._processes


# ------------------------------------------- what clients hand to map
ITERABLES = {
    "generator": lambda: (i for i in range(5)),
    "zip": lambda: zip(range(3), range(10, 13)),
    "numpy 1-d": lambda: np.arange(4),
    "numpy 2-d": lambda: np.arange(6.0).reshape(3, 2),
}
CALLABLES = {
    "instance with __call__": jobs.Affine(2, 1),
    "functools.partial": functools.partial(conformance_jobs.add, 10),
}


def test_map_takes_the_iterables_clients_pass(make_pool):
    pool = make_pool()
    for name, iterable in ITERABLES.items():
        assert pool.map(jobs.total, iterable()) == list(map(jobs.total, iterable())), name
    pairs = zip([1, 2, 3], [10, 20, 30])
    assert pool.starmap(conformance_jobs.add, pairs) == [11, 22, 33]


def test_map_takes_callable_objects(make_pool):
    pool = make_pool()
    for name, func in CALLABLES.items():
        assert pool.map(func, [1, 2, 3]) == list(map(func, [1, 2, 3])), name
