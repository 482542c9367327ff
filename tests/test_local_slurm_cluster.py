"""
Tests of pypoolparty.testing.local_slurm against real SLURM daemons.

They need root (the daemons run as root, munged as munge). On a machine
without SLURM the first start installs slurm-wlm and munge with apt-get.
"""
import os
import re
import subprocess
import sys
import time

import pytest

from pypoolparty.testing import local_slurm, processes, slurm_processes
from pypoolparty.testing.daemons import DaemonRecord
from pypoolparty.testing.local_slurm import LocalSlurmCluster

from conftest import wait_until

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="a local SLURM cluster needs root"
)

MAX_ARRAY_SIZE = 77  # not SLURM's default, so the test sees ours


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalSlurmCluster(
        str(tmp_path_factory.mktemp("local_slurm")), max_array_size=MAX_ARRAY_SIZE
    )
    try:
        c.start()
        yield c
    finally:
        c.stop()


def run(cluster, *argv, check=True, timeout=30):
    return subprocess.run(
        argv, env=cluster.env(), capture_output=True, text=True, check=check, timeout=timeout
    )


def sbatch(cluster, *args):
    proc = run(cluster, "sbatch", "--parsable", "--time=5", *args)
    return proc.stdout.strip().split(";")[0]


def job_state(cluster, job_id):
    return run(cluster, "squeue", "-h", "--states=all", "-j", job_id, "-o", "%T").stdout.strip()


def active_job_ids(cluster):
    return run(cluster, "squeue", "-h", "-o", "%i").stdout.split()


def pids_with_our_conf(cluster):
    """Processes (no zombies) whose environment points at the cluster."""
    found = []
    for pid in processes.list_pids():
        if pid == os.getpid() or processes.live_start_time(pid) is None:
            continue
        env = processes.read_environ(pid)
        if cluster.slurm_conf in (env.get("SLURM_CONF"), env.get(slurm_processes.CONF_MARKER_ENV)):
            found.append(pid)
    return found


def job_processes(cluster):
    """Processes of the cluster other than slurmctld, slurmscriptd, slurmd."""
    return [
        p for p in pids_with_our_conf(cluster)
        if processes.read_comm(p) not in ("slurmctld", "slurmscriptd", "slurmd")
    ]


def test_node_is_idle(cluster):
    assert cluster.is_running()
    assert cluster.node_names == ["localhost"]
    assert cluster.node_states() == {"localhost": "idle"}
    out = run(cluster, "sinfo", "-h", "-o", "%P %a %D %t").stdout.split()
    assert out == ["debug*", "up", "1", "idle"]


def test_start_again_changes_nothing(cluster):
    pids = cluster.daemon_pids()
    assert {"slurmctld", "slurmd-localhost"} <= set(pids)
    t0 = time.monotonic()
    cluster.start()
    assert time.monotonic() - t0 < 5
    assert cluster.daemon_pids() == pids


def test_config_lives_in_its_directory(cluster):
    conf = open(cluster.slurm_conf).read()
    for line in (
        "AuthType=auth/munge",
        "SlurmUser=root",
        "ProctrackType=proctrack/linuxproc",
        "SelectType=select/cons_tres",
        "ReturnToService=1",
        f"MaxArraySize={MAX_ARRAY_SIZE}",
        f"JobCompLoc={cluster.directory}/log/jobcomp.txt",
        f"StateSaveLocation={cluster.directory}/state",
    ):
        assert line in conf.splitlines()
    for sub in ("state", "spool", "log", "run"):
        assert os.stat(os.path.join(cluster.directory, sub)).st_mode & 0o777 == 0o700
    assert cluster.env()["SLURM_CONF"] == cluster.slurm_conf
    assert cluster.env()["PATH"] == os.environ["PATH"]
    assert cluster.export_lines() == [f"export SLURM_CONF={cluster.slurm_conf}"]
    assert f"--- {cluster.slurmctld_log()} (last lines)" in cluster.log_tails()


def test_scontrol_reports_our_max_array_size(cluster):
    out = run(cluster, "scontrol", "show", "config").stdout
    assert re.search(rf"^MaxArraySize\s*=\s*{MAX_ARRAY_SIZE}$", out, re.M)
    assert re.search(rf"^ClusterName\s*=\s*{cluster.cluster_name}$", out, re.M)


def test_sbatch_output_appears(cluster, tmp_path):
    out = tmp_path / "hi.txt"
    sbatch(cluster, f"--output={out}", "--wrap", "echo hi")
    assert wait_until(lambda: out.exists() and out.read_text() == "hi\n", timeout=10)


def test_array_of_20_trivial_tasks_runs(cluster, tmp_path):
    # How fast they start is measured by benchmarks/map_overhead.py.
    sbatch(cluster, "--array=0-19", f"--output={tmp_path}/%a.out", "--wrap", "echo $SLURM_ARRAY_TASK_ID")
    assert wait_until(lambda: not active_job_ids(cluster), timeout=60)
    for i in range(20):
        assert (tmp_path / f"{i}.out").read_text() == f"{i}\n"


def test_two_clusters_side_by_side(cluster, tmp_path):
    second = LocalSlurmCluster(
        str(tmp_path / "second"), num_nodes=2, cpus_per_node=3,
        extra_config={"MaxJobCount": "1234"},
    )
    try:
        second.start()
        assert second.node_names == ["n1", "n2"]
        assert second.node_states() == {"n1": "idle", "n2": "idle"}
        assert cluster.node_states() == {"localhost": "idle"}
        config = run(second, "scontrol", "show", "config").stdout
        assert re.search(r"^MaxJobCount\s*=\s*1234$", config, re.M)
        port = re.search(r"^SlurmctldPort\s*=\s*(\d+)$", config, re.M).group(1)
        assert f"SlurmctldPort={port}\n" not in open(cluster.slurm_conf).read()
        cpus = run(second, "sinfo", "-h", "-N", "-o", "%N %c").stdout.split()
        assert cpus == ["n1", "3", "n2", "3"]

        out = tmp_path / "nodes.txt"
        sbatch(second, "-N2", f"--output={out}", "--wrap", "echo $SLURM_JOB_NODELIST")
        assert wait_until(lambda: out.exists() and out.read_text() == "n[1-2]\n", timeout=10)

        # a job that is still running when the cluster stops, and ignores
        # SIGTERM (slurmd alone would wait KillWait=30 s before SIGKILL)
        job_id = sbatch(second, "--output=/dev/null", "--wrap", "trap '' TERM; sleep 300 & sleep 301")
        assert wait_until(lambda: job_state(second, job_id) == "RUNNING", timeout=10)
        # slurmstepd, the batch shell and two sleeps
        assert wait_until(lambda: len(job_processes(second)) >= 4, timeout=5)
        records = second.records.all()
        assert {r.name for r in records} >= {"slurmctld", "slurmd-n1", "slurmd-n2"}
    finally:
        t0 = time.monotonic()
        second.stop()
        took = time.monotonic() - t0
    assert took < 10
    assert not second.is_running()
    assert not any(r.is_alive() for r in records)
    assert second.daemon_pids() == {}
    assert pids_with_our_conf(second) == []
    assert cluster.node_states() == {"localhost": "idle"}


def test_stock_cluster_runs_a_job(cluster, tmp_path, tmp_path_factory):
    """SLURM's default scheduling parameters, as users' clusters have them."""
    stock = LocalSlurmCluster(str(tmp_path_factory.mktemp("stock")), stock=True)
    try:
        stock.start()
        config = run(stock, "scontrol", "show", "config").stdout
        assert re.search(r"^SchedulerParameters\s*=\s*\(null\)$", config, re.M)
        assert re.search(r"^Epilog\s*=\s*\(null\)$", config, re.M)
        out = tmp_path / "stock.txt"
        sbatch(stock, f"--output={out}", "--wrap", "echo stock")
        assert wait_until(lambda: out.exists() and out.read_text() == "stock\n", timeout=30)
    finally:
        stock.stop()
    assert stock.daemon_pids() == {}
    # the tuned cluster of this module is what its directory runs
    tuned_config = run(cluster, "scontrol", "show", "config").stdout
    assert re.search(r"^SchedulerParameters\s*=\s*batch_sched_delay=0$", tuned_config, re.M)
    with pytest.raises(local_slurm.LocalSlurmClusterError, match="tuned scheduling runs"):
        LocalSlurmCluster(cluster.directory, max_array_size=MAX_ARRAY_SIZE, stock=True).start()


def test_fail_set_down_and_resume_node(tmp_path):
    c = LocalSlurmCluster(str(tmp_path / "nodes"), num_nodes=2, cpus_per_node=1)
    try:
        c.start()
        job_id = sbatch(c, "-w", "n2", "--no-requeue", "--output=/dev/null", "--wrap", "sleep 300")
        assert wait_until(lambda: job_state(c, job_id) == "RUNNING", timeout=10)

        def comms():
            return [processes.read_comm(p) for p in job_processes(c)]

        assert wait_until(lambda: "sleep" in comms(), timeout=5)
        slurmd_n2 = c.records.load("slurmd-n2")

        c.fail_node("n2")
        assert not slurmd_n2.is_alive()
        assert c.records.load("slurmd-n1").is_alive()
        assert comms() == []  # no slurmstepd, no sleep

        c.set_node_down("n2", reason="test")
        assert wait_until(lambda: c.node_states()["n2"].startswith("down"), timeout=5)
        assert c.node_states()["n1"] == "idle"
        assert job_state(c, job_id) == "NODE_FAIL"

        c.resume_node("n2", timeout=20)
        assert c.records.load("slurmd-n2").is_alive()
        assert c.node_states() == {"n1": "idle", "n2": "idle"}

        # a node set down by hand while its slurmd runs comes back too
        c.set_node_down("n1")
        assert wait_until(lambda: c.node_states()["n1"] == "down", timeout=5)
        c.resume_node("n1", timeout=10)
        assert c.node_states()["n1"] == "idle"
        with pytest.raises(ValueError):
            c.fail_node("n3")
    finally:
        c.stop()
    assert c.daemon_pids() == {}


def test_a_start_that_fails_stops_what_it_started(cluster, tmp_path_factory):
    broken = LocalSlurmCluster(
        str(tmp_path_factory.mktemp("broken")),
        extra_config={"SelectType": "select/no_such_plugin"},
    )
    with pytest.raises(local_slurm.LocalSlurmClusterError, match="slurmctld"):
        broken.start(timeout=20)
    assert broken.daemon_pids() == {}
    assert pids_with_our_conf(broken) == []
    assert cluster.node_states() == {"localhost": "idle"}  # munged still serves it


def test_stop_signals_no_process_whose_record_does_not_match(tmp_path):
    """A recorded pid now used by another program, or started at another
    time, is not the daemon: stop leaves it alone and forgets the record."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        c = LocalSlurmCluster(str(tmp_path / "stale"))
        start_time = processes.read_proc_stat(sleeper.pid)[1]
        c.records.save(DaemonRecord("slurmctld", sleeper.pid, start_time, ["slurmctld", "-D"]))
        c.records.save(DaemonRecord("slurmd-localhost", sleeper.pid, start_time + 1, sleeper.args))
        c.records.save(DaemonRecord("munged", sleeper.pid, start_time, ["munged"]))
        assert not c.is_running()
        assert c.daemon_pids() == {}
        c.stop(timeout=2)
        assert sleeper.poll() is None
        assert c.records.all() == []
    finally:
        sleeper.kill()
        sleeper.wait()


def test_too_long_directory_is_refused(tmp_path):
    c = LocalSlurmCluster(str(tmp_path / ("x" * 100)))
    with pytest.raises(local_slurm.LocalSlurmClusterError, match="too long"):
        c.start()
    assert not c.is_running()


def test_command_line(cluster, tmp_path):
    directory = str(tmp_path / "cli")
    cli = [sys.executable, "-m", "pypoolparty.testing.local_slurm"]

    def call(*args):
        return subprocess.run(
            [*cli, *args, "--dir", directory], capture_output=True, text=True, timeout=90
        )

    status = call("status")
    assert status.returncode == 1
    assert status.stdout == f"not running ({directory})\n"
    stop = call("stop")
    assert stop.returncode == 0, stop.stderr  # nothing runs: fine
    assert stop.stdout == f"# nothing started from {directory} runs\n"
    install = call("install")  # installed already: nothing to do
    assert install.returncode == 0, install.stderr
    assert install.stdout.startswith("# SLURM (slurmctld, ")
    start = call("start")
    try:
        assert start.returncode == 0, start.stderr
        export = f"export SLURM_CONF={directory}/slurm.conf"
        *comments, last = start.stdout.splitlines()
        assert last == export
        assert all(line.startswith("# ") for line in comments)
        assert any("debug*" in line and "idle" in line for line in comments)
        assert f"# SLURM started from {directory}: slurmctld (" in start.stdout
        assert call("env").stdout.strip() == export
        status = call("status")
        assert status.returncode == 0
        assert "idle" in status.stdout and "debug*" in status.stdout
        records = LocalSlurmCluster(directory).records.all()
        assert {r.name for r in records} >= {"slurmctld", "slurmd-localhost"}
        assert all(r.is_alive() for r in records)
        assert cluster.node_states() == {"localhost": "idle"}
    finally:
        stop = call("stop")
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.startswith("# stopped slurmctld (")
    assert not any(r.is_alive() for r in records)
    assert call("status").returncode == 1
    assert cluster.node_states() == {"localhost": "idle"}  # the other one still answers


def test_default_directory(monkeypatch, tmp_path):
    monkeypatch.setenv(local_slurm.DEFAULT_DIRECTORY_ENV, str(tmp_path))
    assert local_slurm.default_directory() == str(tmp_path)
    monkeypatch.delenv(local_slurm.DEFAULT_DIRECTORY_ENV)
    assert local_slurm.default_directory() == os.path.expanduser("~/.pypoolparty/local_slurm")
