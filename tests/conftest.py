"""
Fixtures: a real SLURM cluster and a real Grid Engine for the test session.

By default the session starts its own single-node SLURM cluster (own config,
ports and directories, see ``pypoolparty.testing.local_slurm``) and stops it
at the end. With ``PYPOOLPARTY_TEST_SLURM_CONF`` set to the slurm.conf of a
running cluster (``.ci/run`` does this), the tests use that one instead.

Likewise for Grid Engine (``pypoolparty.testing.local_sge``), started on first
use; with ``PYPOOLPARTY_TEST_SGE_RUNNING=1`` the tests use the Grid Engine
that the environment's ``SGE_ROOT``/``SGE_CELL`` point to.

Every test that needs a real scheduler carries the marker ``cluster`` (and
``slurm`` or ``sge``): the ones using the fixtures below get it here, the
others in their own files. ``python -m pytest tests -m "not cluster"`` runs
the rest, without root and without starting a daemon. Where a cluster cannot
be started, its tests skip saying why -- or fail, in CI (see
``skip_policy.py``).
"""
import contextlib
import json
import os
import subprocess
import threading
import time
import uuid

import pytest

from pypoolparty.core.scheduler import SubmitRequest
from pypoolparty.testing.local_cluster import LocalClusterError
from pypoolparty.testing.local_sge import LocalSgeCluster
from pypoolparty.testing.local_slurm import LocalSlurmCluster

import skip_policy

pytest_plugins = ["pytester"]

#: Fixtures that give a test a real scheduler, by the marker they imply.
SCHEDULER_FIXTURES = {
    "slurm": ("slurm", "slurm_cluster"),
    "sge": ("sge", "sge_cluster"),
}
#: Test files of another kind that start local clusters themselves.
SCHEDULER_FILES = {
    "test_local_slurm_cluster.py": "slurm",
    "test_local_sge_cluster.py": "sge",
}


def pytest_configure(config):
    """Every run of this suite follows the skip policy."""
    skip_policy.pytest_configure(config)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Mark what needs a real scheduler, before ``-m`` selects."""
    for item in items:
        kinds = {k for k in SCHEDULER_FIXTURES if item.get_closest_marker(k)}
        names = set(getattr(item, "fixturenames", ()))
        kinds.update(k for k, fixtures in SCHEDULER_FIXTURES.items() if names & set(fixtures))
        if item.path.name in SCHEDULER_FILES:
            kinds.add(SCHEDULER_FILES[item.path.name])
        for kind in sorted(kinds):
            item.add_marker(kind)
        if kinds:
            item.add_marker("cluster")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item):
    """Terminate the pools a test left running: their idle workers would
    hold the test cluster's slots until their idle_timeout. Before the
    fixtures' teardown, while their environment still names the cluster."""
    from pypoolparty.core import pool as core_pool

    for pool in list(core_pool._live_pools):
        pool.terminate()


@contextlib.contextmanager
def local_cluster(cluster, what):
    """Start ``cluster`` (a local SLURM or Grid Engine), stop it afterwards.

    Where it cannot run here -- not root, or its packages missing and not
    installable -- the test skips saying so (fails in CI).
    """
    if os.geteuid() != 0:
        skip_policy.cluster_unavailable(what, "starting its daemons needs root")
    try:
        cluster.install()
    except LocalClusterError as err:
        skip_policy.cluster_unavailable(
            what, "its packages are missing and could not be installed ({})".format(err)
        )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


#: Options every test job gets: an explicit time limit (see clusters.md).
TEST_SBATCH_OPTIONS = {"time": "00:10:00"}


class RunningCluster:
    """A cluster the tests did not start: only its SLURM_CONF is known."""

    def __init__(self, slurm_conf):
        self.slurm_conf = slurm_conf

    def env(self):
        env = dict(os.environ)
        env["SLURM_CONF"] = self.slurm_conf
        return env


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    conf = os.environ.get("PYPOOLPARTY_TEST_SLURM_CONF")
    if conf:
        yield RunningCluster(conf)
        return
    cluster = LocalSlurmCluster(directory=str(tmp_path_factory.mktemp("slurm")))
    with local_cluster(cluster, "SLURM cluster") as running:
        yield running


class RunningSge:
    """A Grid Engine the tests did not start: the environment points to it."""

    def env(self):
        return dict(os.environ)


@pytest.fixture(scope="session")
def sge_cluster():
    if os.environ.get("PYPOOLPARTY_TEST_SGE_RUNNING"):
        yield RunningSge()
        return
    with local_cluster(LocalSgeCluster(), "Grid Engine") as running:
        yield running


@pytest.fixture
def sge(sge_cluster, monkeypatch, tmp_path):
    """Point this test's Grid Engine clients at the cell; cwd in tmp_path."""
    for key, value in sge_cluster.env().items():
        if key.startswith("SGE_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return sge_cluster


@pytest.fixture
def slurm(slurm_cluster, monkeypatch, tmp_path):
    """Point this test's SLURM clients at the cluster; cwd in tmp_path."""
    return use_slurm(slurm_cluster, monkeypatch, tmp_path)


def use_slurm(cluster, monkeypatch, tmp_path):
    """This test's SLURM clients (the pools' too) talk to ``cluster``; cwd in tmp_path."""
    monkeypatch.setenv("SLURM_CONF", cluster.slurm_conf)
    monkeypatch.chdir(tmp_path)
    return cluster


@pytest.fixture
def mpi(monkeypatch):
    """Open MPI's ``mpirun`` and mpi4py for calls on several MPI ranks; Open
    MPI told that it may run as root (it refuses by default)."""
    import importlib.util
    import shutil

    if shutil.which("mpirun") is None:
        skip_policy.cluster_unavailable(
            "Open MPI", "mpirun is not installed (Debian: openmpi-bin, which "
            "'python -m pypoolparty.testing.local_slurm install' installs)"
        )
    if importlib.util.find_spec("mpi4py") is None:
        skip_policy.cluster_unavailable("mpi4py", "it is not installed (pip install mpi4py)")
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")


def unique_name(prefix="ppt"):
    return "{:s}-{:s}".format(prefix, uuid.uuid4().hex[:8])


def squeue_names(name, env=None):
    """Ids of the not yet ended jobs with this job name."""
    proc = subprocess.run(
        ["squeue", "--noheader", "--array", "--name=" + name, "--format=%i %T"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        check=True,
    )
    return [line.split() for line in proc.stdout.splitlines() if line.strip()]


def wait_until(predicate, timeout, interval=0.2):
    """Poll ``predicate`` until it is true; return whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def noted_run(folder, seconds, x):
    """A job: sleep, then note in ``folder`` when it ran and in which job."""
    start = time.time()
    time.sleep(seconds)
    job = os.environ.get("SLURM_JOB_ID") or os.environ.get("JOB_ID")
    with open(os.path.join(folder, "{:d}-{:s}".format(x, uuid.uuid4().hex)), "w") as f:
        json.dump({"start": start, "end": time.time(), "job": job}, f)
    return x


def most_at_once(folder):
    """The most jobs that ran at the same time, from the notes of :func:`noted_run`."""
    edges = []
    for entry in os.listdir(folder):
        with open(os.path.join(folder, entry)) as f:
            run = json.load(f)
        edges += [(run["start"], 1), (run["end"], -1)]
    now = most = 0
    for _, step in sorted(edges):  # an end sorts before a start at the same time
        now += step
        most = max(most, now)
    return most


class Sampler:
    """Calls ``count`` every 0.2 s in a thread of its own; :meth:`stop` gives the most."""

    def __init__(self, count):
        self.count = count
        self.counts = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.counts.append(self.count())
            self._stop.wait(0.2)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return max(self.counts)


def sleeping_workers(name, log_dir, num_workers, max_running):
    """A request to the adapters for workers that only sleep 2 s (and write a log)."""
    return SubmitRequest(
        num_workers=num_workers,
        max_running=max_running,
        worker_argv=["/bin/sh", "-c", "sleep 2", "worker"],  # then: --worker-id ID
        name=name,
        log_dir=str(log_dir),
        cwd=str(log_dir),
        env={},
    )


def claimant(work_dir, chunk=0, timeout=60):
    """The worker that claimed ``chunk`` of the one map of the pool in ``work_dir``, once one did."""
    def claim():
        from fake_jobs import map_dirs

        return [os.path.join(m, "claims", str(chunk)) for m in map_dirs(work_dir)][:1]

    assert wait_until(lambda: any(os.path.exists(c) for c in claim()), timeout=timeout)
    with open(claim()[0]) as f:
        return f.read().strip()
