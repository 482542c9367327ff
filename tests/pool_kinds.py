"""
The kinds of pool that the backend-neutral suites run against: the stdlib's
``multiprocessing.Pool`` (the reference), ``pypoolparty.local.Pool``,
``pypoolparty.processes.Pool`` (the core on local processes) and the cluster
pools, each of the latter on its real scheduler.

A suite makes its pool fixture from :func:`with_marks` and :func:`pool_maker`,
as ``test_conformance.py`` and ``test_clients.py`` do.
"""
import multiprocessing

import pytest

import pypoolparty.local
import pypoolparty.processes
import pypoolparty.slurm
import pypoolparty.slurm.array
import pypoolparty.sun_grid_engine

from conftest import TEST_SBATCH_OPTIONS

KINDS = ["multiprocessing", "local", "processes", "slurm.array", "slurm", "sun_grid_engine"]
#: kind: (pool class, fixture and marker of its scheduler, options)
CLUSTER_POOLS = {
    "slurm.array": (pypoolparty.slurm.array.Pool, "slurm", {"sbatch_options": TEST_SBATCH_OPTIONS}),
    "slurm": (pypoolparty.slurm.Pool, "slurm", {"sbatch_options": TEST_SBATCH_OPTIONS}),
    "sun_grid_engine": (pypoolparty.sun_grid_engine.Pool, "sge", {}),
}
OURS = [k for k in KINDS if k != "multiprocessing"]
#: A kind with a store (``cache_dir``): what a store changes must not show.
WITH_STORE = "slurm.array+store"


def _base(kind):
    """The pool kind without its "+store"."""
    return kind[: -len("+store")] if kind.endswith("+store") else kind
#: The stdlib's pool and ours that is one.
STDLIB_KINDS = ("multiprocessing", "local")


def with_marks(kinds):
    """The kinds as parameters; those of a cluster pool need its scheduler."""
    out = []
    for kind in kinds:
        if _base(kind) in CLUSTER_POOLS:
            scheduler = CLUSTER_POOLS[_base(kind)][1]
            marks = [pytest.mark.cluster, getattr(pytest.mark, scheduler)]
        else:
            marks = []
        out.append(pytest.param(kind, marks=marks, id=kind))
    return out


def pool_maker(request, tmp_path, monkeypatch):
    """Yield a function making pools of the kind ``request.param``."""
    kind, store = _base(request.param), request.param.endswith("+store")
    if kind in CLUSTER_POOLS:
        # The fixture points the scheduler's clients at its cluster.
        request.getfixturevalue(CLUSTER_POOLS[kind][1])
    made = []

    def make(processes=2, initializer=None, initargs=(), maxtasksperchild=None, track=True, **ours):
        """A pool; ``ours`` are keywords of the cluster pools (over the defaults)."""
        args = (processes, initializer, initargs, maxtasksperchild)
        if kind == "multiprocessing":
            # Not fork: this process runs threads (pools' supervisors), and a
            # child forked while one holds a lock may hang (maxtasksperchild
            # forks new workers mid-map).
            pool = multiprocessing.get_context("forkserver").Pool(*args)
        elif kind == "local":
            # From a fork server too, for the same reason as the reference.
            pool = pypoolparty.local.Pool(*args, context=multiprocessing.get_context("forkserver"))
        elif kind == "processes":
            pool = pypoolparty.processes.Pool(*args, work_dir=str(tmp_path), **ours)
        else:
            cls, _, options = CLUSTER_POOLS[kind]
            kwargs = {"polling_interval": 1.0, **{k: dict(v) for k, v in options.items()}}
            if store:
                # One store per pool: a store shared between a test's pools
                # would (rightly) give the second the first one's results.
                kwargs["cache_dir"] = str(tmp_path / "store-{:d}".format(len(made)))
            kwargs.update(ours)
            pool = cls(*args, **kwargs)
        if track:
            made.append(pool)
        return pool

    make.kind = kind
    # A job long enough to tell "one result before the last" apart from
    # the pool's own latency: a cluster's is seconds, a local pool's is not.
    make.long = 4 if kind in CLUSTER_POOLS else 1
    yield make
    for pool in made:
        pool.terminate()
