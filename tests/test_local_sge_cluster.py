"""
Tests of pypoolparty.testing.local_sge against real Grid Engine daemons.

They need root (apt-get, and the daemons start as root). On a machine
without Grid Engine the first start installs gridengine-master,
gridengine-exec and gridengine-client with apt-get.

There is one Grid Engine per machine. If one runs already that these tests
did not start, they use it and stop nothing of it; the assertions about what
was started and stopped then check that nothing was.
"""
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree

import pytest

from pypoolparty.testing import local_sge
from pypoolparty.testing.local_sge import LocalSgeCluster

from conftest import wait_until

CLI = [sys.executable, "-m", "pypoolparty.testing.local_sge"]


def run(cluster, *argv, check=True, timeout=30):
    return subprocess.run(
        argv, env=cluster.env(), capture_output=True, text=True, check=check,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )


def qsub(cluster, *args):
    """Submit; the job id (without an array's task range)."""
    out = run(cluster, "qsub", "-terse", *args).stdout.strip()
    return out.split(".")[0]


def qstat_xml(cluster):
    return ElementTree.fromstring(run(cluster, "qstat", "-u", "*", "-xml").stdout)


def job_entries(cluster, job_id):
    """(section, state, tasks) of each <job_list> of the job in qstat -xml."""
    root = qstat_xml(cluster)
    found = []
    for section in ("queue_info", "job_info"):
        for part in root.findall(section):
            for job in part.iter("job_list"):
                if job.findtext("JB_job_number") == job_id:
                    found.append((section, job.findtext("state"), job.findtext("tasks")))
    return found


def job_ids(cluster):
    return {j.findtext("JB_job_number") for j in qstat_xml(cluster).iter("job_list")}


def qdel_and_wait(cluster, job_id):
    run(cluster, "qdel", job_id, check=False)
    assert wait_until(lambda: job_id not in job_ids(cluster), timeout=15)


def sge_daemons():
    """Pids of the live sge_qmaster and sge_execd processes on the machine."""
    return {
        pid for pid in local_sge._pids()
        if local_sge._read_comm(pid) in local_sge.SGE_DAEMON_NAMES and local_sge._is_live(pid)
    }


def processes_alive(processes):
    """Those of (pid, start time) that still run (not zombies)."""
    alive = []
    for pid, start_time in processes:
        stat = local_sge._read_proc_stat(pid)
        if stat is not None and stat[1] == start_time and stat[0] not in ("Z", "X"):
            alive.append(pid)
    return alive


# ----------------------------------------------------------------------
# The command line, first: it starts and stops a Grid Engine of its own
# before the module's fixture starts one (or uses one that runs already).


def test_command_line(tmp_path):
    state_dir = str(tmp_path / "cli")
    probe = LocalSgeCluster(state_dir=state_dir)
    if os.path.isdir(probe.common_dir):
        ran_before = probe.is_running()
    else:
        ran_before = False  # not even installed yet

    def call(*args, timeout=120):
        return subprocess.run(
            [*CLI, *args, "--dir", state_dir], capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL,
        )

    stop = call("stop")
    assert stop.returncode == 0, stop.stderr  # nothing runs from here: fine
    assert call("status").returncode == (0 if ran_before else 1)

    # the output of start evaluates in a shell: comments, then the exports
    shell = subprocess.run(
        [
            "bash", "-c",
            'out="$("$@")" || exit 1; eval "$out" && printf "%s\\n" "$out" '
            '&& echo "ENV $SGE_ROOT $SGE_CELL" && qconf -sh',
            "bash", *CLI, "start", "--dir", state_dir,
        ],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )
    try:
        assert shell.returncode == 0, shell.stdout + shell.stderr
        lines = shell.stdout.splitlines()
        env_at = lines.index("ENV /var/lib/gridengine default")
        start_lines = lines[:env_at]
        exports = probe.export_lines()
        assert start_lines[-len(exports):] == exports
        assert all(line.startswith("# ") for line in start_lines[:-len(exports)])
        assert any("all.q@" in line for line in start_lines)
        assert probe.hostname in lines[env_at + 1:]  # qconf -sh answered

        assert call("env").stdout.splitlines() == exports
        status = call("status")
        assert status.returncode == 0
        assert f"all.q@{probe.hostname}" in status.stdout

        records = probe._records()
        if ran_before:
            assert records == []
        else:
            assert sorted(r.name for r in records) == ["sge_execd", "sge_qmaster"]
            assert all(r.is_alive() for r in records)
            assert {r.pid for r in records} == sge_daemons()
    finally:
        stop = call("stop")
    assert stop.returncode == 0, stop.stderr
    assert not any(r.is_alive() for r in records)
    assert probe._records() == []
    if not ran_before:
        assert "stopped sge_execd" in stop.stdout
        assert call("status").returncode == 1
        assert sge_daemons() == set()


# ----------------------------------------------------------------------
# One Grid Engine for the rest of the module


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory):
    c = LocalSgeCluster(slots=2, state_dir=str(tmp_path_factory.mktemp("sge_state")))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def cluster(module_cluster):
    """The module's Grid Engine, started again if a test stopped it."""
    if not module_cluster.is_running():
        module_cluster.start()
    return module_cluster


def test_exec_host_and_queue_are_usable(cluster):
    host = cluster.hostname
    assert cluster.is_running()
    assert cluster.queue_state() == ""
    assert cluster.queue_instance == f"all.q@{host}"

    qhost = ElementTree.fromstring(run(cluster, "qhost", "-xml", "-h", host).stdout)
    values = {
        v.get("name"): v.text
        for h in qhost.iter("host") if h.get("name") == host
        for v in h.iter("hostvalue")
    }
    assert values["load_avg"] not in (None, "-")
    assert int(values["num_proc"]) == os.cpu_count()

    assert host in run(cluster, "qconf", "-sel").stdout.split()
    assert host in run(cluster, "qconf", "-ss").stdout.split()
    assert host in run(cluster, "qconf", "-shgrp", "@allhosts").stdout.split()
    if cluster.started_here():
        queue = run(cluster, "qconf", "-sq", "all.q").stdout
        assert local_sge._attribute(queue, "slots") == "2"
        assert local_sge._attribute(queue, "load_thresholds") == "NONE"
        assert "@allhosts" in local_sge._attribute(queue, "hostlist").split()
        sconf = run(cluster, "qconf", "-ssconf").stdout
        for key, value in local_sge.SCHEDULER_SETTINGS.items():
            assert local_sge._attribute(sconf, key) == value
        conf = run(cluster, "qconf", "-sconf", "global").stdout
        assert local_sge._attribute(conf, "min_uid") == "0"
        assert local_sge._attribute(conf, "min_gid") == "0"


def test_start_again_changes_nothing(cluster):
    pids = cluster.daemon_pids()
    if cluster.started_here():
        assert set(pids) == {"sge_qmaster", "sge_execd"}
    t0 = time.monotonic()
    cluster.start()
    assert time.monotonic() - t0 < 10
    assert cluster.daemon_pids() == pids


def test_another_state_dir_uses_the_running_one(cluster, tmp_path):
    other = LocalSgeCluster(state_dir=str(tmp_path / "other"))
    pids = cluster.daemon_pids()
    other.start(timeout=20)
    assert other.is_running()
    assert other.daemon_pids() == {}
    assert not other.started_here()
    other.stop()
    assert cluster.is_running()
    assert cluster.daemon_pids() == pids


def test_env(cluster):
    env = cluster.env()
    assert env["SGE_ROOT"] == "/var/lib/gridengine"
    assert env["SGE_CELL"] == "default"
    assert env["PATH"] == os.environ["PATH"]


def test_binary_job_writes_its_output(cluster, tmp_path):
    out = tmp_path / "hi.txt"
    qsub(cluster, "-b", "y", "-S", "/bin/sh", "-o", str(out), "-j", "y", "echo", "hi")
    assert wait_until(lambda: out.exists() and out.read_text() == "hi\n", timeout=10)


def test_array_runs_all_tasks(cluster, tmp_path):
    script = tmp_path / "task.sh"
    script.write_text(f'echo "$JOB_ID $SGE_TASK_ID" > {tmp_path}/task.$SGE_TASK_ID\n')
    job_id = qsub(
        cluster, "-t", "1-4", "-S", "/bin/sh", "-j", "y",
        "-o", f"{tmp_path}/$JOB_ID.$TASK_ID.log", str(script),
    )
    assert wait_until(lambda: not job_entries(cluster, job_id), timeout=20)
    for task in range(1, 5):
        assert (tmp_path / f"task.{task}").read_text() == f"{job_id} {task}\n"
        assert (tmp_path / f"{job_id}.{task}.log").read_text() == ""


def queue_slots(cluster):
    """slots_total of all.q on this host, as qstat -f -xml says."""
    root = ElementTree.fromstring(run(cluster, "qstat", "-f", "-xml", "-q", "all.q").stdout)
    for queue in root.iter("Queue-List"):
        if queue.findtext("name") == cluster.queue_instance:
            return int(queue.findtext("slots_total"))
    raise AssertionError(f"no {cluster.queue_instance} in qstat -f -xml")


def test_qstat_xml_shows_running_and_pending_tasks(cluster):
    slots = queue_slots(cluster)  # 2 if the fixture configured it
    job_id = qsub(
        cluster, "-b", "y", "-S", "/bin/sh", "-t", f"1-{slots + 3}", "-o", "/dev/null",
        "-j", "y", "sleep", "60",
    )
    try:
        def some_running_three_pending():
            # a task may show "t" (being transferred) for a moment
            return sorted(job_entries(cluster, job_id)) == sorted([
                ("job_info", "qw", f"{slots + 1}-{slots + 3}:1"),
                *(("queue_info", "r", str(task)) for task in range(1, slots + 1)),
            ])

        assert wait_until(some_running_three_pending, timeout=15)
        root = qstat_xml(cluster)  # it parses
        names = {j.findtext("JB_name") for j in root.iter("job_list")}
        assert "sleep" in names
        queues = {j.findtext("queue_name") for j in root.find("queue_info").iter("job_list")}
        assert cluster.queue_instance in queues
    finally:
        qdel_and_wait(cluster, job_id)


def test_job_with_missing_working_directory_ends_in_eqw(cluster):
    job_id = qsub(
        cluster, "-b", "y", "-S", "/bin/sh", "-wd", "/nonexistent", "-o", "/dev/null",
        "-j", "y", "true",
    )
    try:
        assert wait_until(
            lambda: job_entries(cluster, job_id) == [("job_info", "Eqw", None)], timeout=15
        )
        detail = run(cluster, "qstat", "-j", job_id).stdout
        reasons = [line for line in detail.splitlines() if line.startswith("error reason")]
        assert reasons and "/nonexistent" in reasons[0]
        time.sleep(1.5)  # it stays so
        assert job_entries(cluster, job_id) == [("job_info", "Eqw", None)]
    finally:
        qdel_and_wait(cluster, job_id)
    gone = run(cluster, "qstat", "-j", job_id, check=False)
    assert gone.returncode == 1
    assert "do not exist" in gone.stdout + gone.stderr


def test_stop_stops_what_it_started(cluster):
    job_id = qsub(
        cluster, "-b", "y", "-S", "/bin/sh", "-o", "/dev/null", "-j", "y",
        "sleep", "300",
    )
    assert wait_until(
        lambda: [e[1] for e in job_entries(cluster, job_id)] == ["r"], timeout=15
    )
    records = [r for r in cluster._records() if r.is_alive()]
    started_here = cluster.started_here()
    execd = [r for r in records if r.name == "sge_execd"]
    jobs = []
    if started_here:
        assert {r.name for r in records} == {"sge_qmaster", "sge_execd"}

        def shepherd_and_sleep():
            jobs[:] = local_sge._descendants(execd[0].pid)
            comms = {local_sge._read_comm(p) for p, _ in jobs}
            return {"sge_shepherd", "sleep"} <= comms

        assert wait_until(shepherd_and_sleep, timeout=10)
    before = sge_daemons()

    t0 = time.monotonic()
    cluster.stop()
    took = time.monotonic() - t0
    if not started_here:  # it deleted no job: clean up
        qdel_and_wait(cluster, job_id)
    assert took < 40  # qmaster: ~10 s; SIGKILL after 30 s

    assert not any(r.is_alive() for r in records)
    assert processes_alive(jobs) == []
    assert cluster.daemon_pids() == {}
    assert cluster._records() == []
    if started_here:
        assert not cluster.is_running()
        assert sge_daemons() == before - {r.pid for r in records}
    else:  # someone else's: untouched
        assert cluster.is_running()
        assert sge_daemons() == before

    # The fixture starts it again for any test after this one (stopping
    # takes ~10 s, so the module's teardown has nothing left to do).
