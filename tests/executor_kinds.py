"""
The kinds of executor that the fast executor suites run against: the
stdlib's ``ProcessPoolExecutor`` (the reference), the core on the fake
scheduler, ``pypoolparty.processes.Executor`` and ``pypoolparty.local.Executor``.

A suite makes its fixture with :func:`executor_fixture`; the fixture's value
makes executors (``make(max_workers=2)``) and shuts them down at the end.
"""
import concurrent.futures

import pytest

import pypoolparty.local
import pypoolparty.processes
from pypoolparty.core.executor import ClusterExecutor
from pypoolparty.testing import fake

KINDS = ["fake", "processes", "local", "stdlib"]
#: The kinds that take futures as arguments.
OURS = [k for k in KINDS if k != "stdlib"]


def make_executor(kind: str, work_dir, max_workers: int = 2, **options):
    """An executor of ``kind`` (the fake scheduler polls every 50 ms);
    ``options`` go to the core's pools (fake and processes) only."""
    if kind == "stdlib":
        return concurrent.futures.ProcessPoolExecutor(max_workers)
    if kind == "local":
        return pypoolparty.local.Executor(max_workers)
    if kind == "processes":
        return pypoolparty.processes.Executor(max_workers, work_dir=str(work_dir), **options)
    options.setdefault("polling_interval", 0.05)
    pool = fake.ClusterPool(max_workers, scheduler=fake.FakeScheduler(), work_dir=str(work_dir), **options)
    return ClusterExecutor(pool)


def executor_fixture(kinds):
    """A fixture over ``kinds``: its value makes executors of the kind
    (``make.kind`` names it) and shuts them down after the test."""

    @pytest.fixture(params=kinds)
    def executor(request, tmp_path):
        made = []

        def make(max_workers=2, **options):
            ex = make_executor(request.param, tmp_path / "w{:d}".format(len(made)), max_workers, **options)
            made.append(ex)
            return ex

        make.kind = request.param
        yield make
        for ex in made:
            ex.shutdown(wait=True, cancel_futures=True)
            pool = getattr(ex, "_pool", None)
            if pool is not None and hasattr(pool.scheduler, "shutdown"):
                pool.scheduler.shutdown()

    return executor
