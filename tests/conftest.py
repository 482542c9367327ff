"""
Fixtures: a real SLURM cluster for the whole test session.

By default the session starts its own single-node cluster (own config, ports
and directories, see ``pypoolparty.testing.local_slurm``) and stops it at the
end. With ``PYPOOLPARTY_TEST_SLURM_CONF`` set to the slurm.conf of a running
cluster (``.ci/run`` does this), the tests use that one instead.

Likewise for Grid Engine (``pypoolparty.testing.local_sge``), started on first
use; with ``PYPOOLPARTY_TEST_SGE_RUNNING=1`` the tests use the Grid Engine
that the environment's ``SGE_ROOT``/``SGE_CELL`` point to.
"""
import os
import subprocess
import time
import uuid

import pytest

from pypoolparty.testing.local_sge import LocalSgeCluster
from pypoolparty.testing.local_slurm import LocalSlurmCluster

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
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


class RunningSge:
    """A Grid Engine the tests did not start: the environment points to it."""

    def env(self):
        return dict(os.environ)


@pytest.fixture(scope="session")
def sge_cluster():
    if os.environ.get("PYPOOLPARTY_TEST_SGE_RUNNING"):
        yield RunningSge()
        return
    cluster = LocalSgeCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


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
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.slurm_conf)
    monkeypatch.chdir(tmp_path)
    return slurm_cluster


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


def driver_script(tmp_path, name):
    """A user's script: a map of six 300 s jobs, two at a time, named ``name``."""
    script = tmp_path / "driver.py"
    script.write_text(
        "import time\n"
        "import pypoolparty.slurm.array\n"
        "pool = pypoolparty.slurm.array.Pool(\n"
        "    processes=2, job_name={name!r},\n"
        "    sbatch_options={{'time': '00:10:00'}}, polling_interval=1.0,\n"
        ")\n"
        "pool.map(time.sleep, [300] * 6, chunksize=1)\n".format(name=name)
    )
    return script
