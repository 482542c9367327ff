"""
The kinds of pool that the backend-neutral suites run against: the stdlib's
``multiprocessing.Pool`` (the reference), ``pypoolparty.local.Pool`` and the
cluster pools, each of the latter on its real scheduler.

A suite makes its pool fixture from :func:`with_marks` and :func:`pool_maker`,
as ``test_conformance.py`` and ``test_clients.py`` do.
"""
import multiprocessing

import pytest

import pypoolparty.local
import pypoolparty.slurm
import pypoolparty.slurm.array
import pypoolparty.sun_grid_engine

from conftest import TEST_SBATCH_OPTIONS

KINDS = ["multiprocessing", "local", "slurm.array", "slurm", "sun_grid_engine"]
#: kind: (pool class, fixture and marker of its scheduler, options)
CLUSTER_POOLS = {
    "slurm.array": (pypoolparty.slurm.array.Pool, "slurm", {"sbatch_options": TEST_SBATCH_OPTIONS}),
    "slurm": (pypoolparty.slurm.Pool, "slurm", {"sbatch_options": TEST_SBATCH_OPTIONS}),
    "sun_grid_engine": (pypoolparty.sun_grid_engine.Pool, "sge", {}),
}
OURS = [k for k in KINDS if k != "multiprocessing"]
#: The stdlib's pool and ours that is one.
STDLIB_KINDS = ("multiprocessing", "local")


def with_marks(kinds):
    """The kinds as parameters; those of a cluster pool need its scheduler."""
    out = []
    for kind in kinds:
        if kind in CLUSTER_POOLS:
            scheduler = CLUSTER_POOLS[kind][1]
            marks = [pytest.mark.cluster, getattr(pytest.mark, scheduler)]
        else:
            marks = []
        out.append(pytest.param(kind, marks=marks, id=kind))
    return out


def pool_maker(request, tmp_path, monkeypatch):
    """Yield a function making pools of the kind ``request.param``."""
    kind = request.param
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
            pool = pypoolparty.local.Pool(*args)
        else:
            cls, _, options = CLUSTER_POOLS[kind]
            kwargs = {"polling_interval": 1.0, **{k: dict(v) for k, v in options.items()}}
            kwargs.update(ours)
            pool = cls(*args, **kwargs)
        if track:
            made.append(pool)
        return pool

    make.kind = kind
    # A job long enough to tell "one result before the last" apart from
    # the pool's own latency: a cluster's is seconds, the stdlib's is not.
    make.long = 1 if kind in STDLIB_KINDS else 4
    yield make
    for pool in made:
        pool.terminate()
