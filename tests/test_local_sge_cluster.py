"""
Tests of pypoolparty.testing.local_sge against real Grid Engine daemons.

They need root (apt-get, and the daemons start as root). On a machine
without Grid Engine the first start installs gridengine-master,
gridengine-exec and gridengine-client with apt-get.

There is one Grid Engine cell per machine, shared by everyone on it: run
this file under ``flock /tmp/pypoolparty-sge.lock``. It asserts the same
whether or not a cell runs when it begins, and leaves the machine as it
found it:

* the module's cell is the one that runs, or else one the module starts
  (and stops at its end);
* the tests of the running cell check that it takes jobs, that starting
  it again changes nothing, that another state directory uses it as it is
  (its start starts nothing, its stop stops and deletes nothing) and what
  the command line says of it;
* ``test_stop_and_start_for_real`` stops the running cell through the state
  directory that started it, checks that nothing of it is left, starts and
  stops cells of its own from nothing (from Python and from the command
  line), and at the end starts the cell it stopped again, from the same
  state directory and with the same slots.
"""
import os
import subprocess
import sys
import time
from xml.etree import ElementTree

import pytest

from pypoolparty.testing import daemons, local_sge, processes, sge_config
from pypoolparty.testing.local_sge import LocalSgeCluster

from conftest import wait_until

CLI = [sys.executable, "-m", "pypoolparty.testing.local_sge"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a local Grid Engine needs root")


def run(cluster, *argv, check=True, timeout=30):
    return subprocess.run(
        argv, env=cluster.env(), capture_output=True, text=True, check=check,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )


def cli(state_dir, *args, timeout=120):
    return subprocess.run(
        [*CLI, *args, "--dir", state_dir], capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )


def eval_start(state_dir):
    """``eval "$(... start)"`` in bash, then ``qconf -sh`` with what it exported."""
    return subprocess.run(
        [
            "bash", "-c",
            'out="$("$@")" || exit 1; eval "$out" && printf "%s\\n" "$out" '
            '&& echo "ENV $SGE_ROOT $SGE_CELL" && qconf -sh',
            "bash", *CLI, "start", "--dir", state_dir,
        ],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )


def qsub(cluster, *args):
    """Submit; the job id (without an array's task range)."""
    return run(cluster, "qsub", "-terse", *args).stdout.strip().split(".")[0]


def qsub_sleep(cluster, seconds):
    return qsub(
        cluster, "-b", "y", "-S", "/bin/sh", "-o", "/dev/null", "-j", "y", "sleep", str(seconds)
    )


def qstat_xml(cluster):
    return ElementTree.fromstring(run(cluster, "qstat", "-u", "*", "-xml").stdout)


def job_entries(cluster, job_id):
    """(section, state, tasks) of each <job_list> of the job in qstat -xml."""
    found = []
    for section in ("queue_info", "job_info"):
        for part in qstat_xml(cluster).findall(section):
            for job in part.iter("job_list"):
                if job.findtext("JB_job_number") == job_id:
                    found.append((section, job.findtext("state"), job.findtext("tasks")))
    return found


def wait_running(cluster, job_id):
    assert wait_until(lambda: [e[1] for e in job_entries(cluster, job_id)] == ["r"], timeout=15)


def qdel_and_wait(cluster, job_id):
    run(cluster, "qdel", job_id, check=False)
    assert wait_until(lambda: job_id not in cluster.job_ids(), timeout=15)


def sge_daemons():
    """Pids of the live sge_qmaster and sge_execd processes on the machine."""
    return set(processes.live_pids_named(local_sge.SGE_DAEMON_NAMES))


def queue_slots(cluster):
    """slots_total of all.q on this host, as qstat -f -xml says."""
    root = ElementTree.fromstring(run(cluster, "qstat", "-f", "-xml", "-q", "all.q").stdout)
    for queue in root.iter("Queue-List"):
        if queue.findtext("name") == cluster.queue_instance:
            return int(queue.findtext("slots_total"))
    raise AssertionError(f"no {cluster.queue_instance} in qstat -f -xml")


def a_job_runs(cluster, tmp_path):
    out = tmp_path / f"hi-{time.monotonic_ns()}.txt"
    qsub(cluster, "-b", "y", "-S", "/bin/sh", "-o", str(out), "-j", "y", "echo", "hi")
    return wait_until(lambda: out.exists() and out.read_text() == "hi\n", timeout=15)


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    """The running cell, or one this module starts (and stops at its end)."""
    c = LocalSgeCluster(slots=2, state_dir=str(tmp_path_factory.mktemp("sge_state")))
    c.start()
    try:
        yield c
    finally:
        c.stop()  # stops only what was started from its state directory


# ----------------------------------------------------------------------
# the running cell, whoever started it


def test_exec_host_and_queue_are_usable(cell):
    host = cell.hostname
    assert cell.is_running()
    assert cell.queue_state() == ""
    assert cell.queue_instance == f"all.q@{host}"

    qhost = ElementTree.fromstring(run(cell, "qhost", "-xml", "-h", host).stdout)
    values = {
        v.get("name"): v.text
        for h in qhost.iter("host") if h.get("name") == host
        for v in h.iter("hostvalue")
    }
    assert values["load_avg"] not in (None, "-")
    assert int(values["num_proc"]) == os.cpu_count()

    # what every start of a cell configures
    assert host in run(cell, "qconf", "-sel").stdout.split()
    assert host in run(cell, "qconf", "-ss").stdout.split()
    assert host in run(cell, "qconf", "-shgrp", "@allhosts").stdout.split()
    queue = run(cell, "qconf", "-sq", "all.q").stdout
    assert sge_config.attribute(queue, "load_thresholds") == "NONE"
    assert "@allhosts" in sge_config.attribute(queue, "hostlist").split()
    sconf = run(cell, "qconf", "-ssconf").stdout
    for key, value in sge_config.SCHEDULER_SETTINGS.items():
        assert sge_config.attribute(sconf, key) == value
    conf = run(cell, "qconf", "-sconf", "global").stdout
    assert sge_config.attribute(conf, "min_uid") == "0"
    assert sge_config.attribute(conf, "min_gid") == "0"


def test_one_qmaster_and_one_execd_run_and_start_again_changes_nothing(cell):
    machine = sge_daemons()
    assert sorted(processes.read_comm(p) for p in machine) == ["sge_execd", "sge_qmaster"]
    pids = cell.daemon_pids()
    assert set(pids.values()) <= machine
    t0 = time.monotonic()
    cell.start()
    assert time.monotonic() - t0 < 10
    assert cell.daemon_pids() == pids
    assert sge_daemons() == machine


def test_another_state_dir_uses_the_running_one_as_it_is(cell, tmp_path):
    other = LocalSgeCluster(state_dir=str(tmp_path / "other"))
    machine = sge_daemons()
    other.start(timeout=20)
    assert other.is_running()
    assert other.daemon_pids() == {}
    assert not other.started_here()
    assert other.records.all() == []
    assert sge_daemons() == machine
    assert a_job_runs(other, tmp_path)

    job_id = qsub_sleep(other, 300)
    try:
        wait_running(other, job_id)
        other.stop()  # not its cell: stops nothing, deletes no job
        assert sge_daemons() == machine
        assert [e[1] for e in job_entries(cell, job_id)] == ["r"]
        assert cell.is_running()
    finally:
        qdel_and_wait(cell, job_id)


def test_command_line_on_the_running_cell(cell, tmp_path):
    state_dir = str(tmp_path / "cli")
    machine = sge_daemons()

    status = cli(state_dir, "status")
    assert status.returncode == 0, status.stderr
    assert f"all.q@{cell.hostname}" in status.stdout
    assert cli(state_dir, "env").stdout.splitlines() == cell.export_lines()

    shell = eval_start(state_dir)
    assert shell.returncode == 0, shell.stdout + shell.stderr
    lines = shell.stdout.splitlines()
    env_at = lines.index("ENV /var/lib/gridengine default")
    comments, exports = lines[:env_at - 2], lines[env_at - 2:env_at]
    assert exports == cell.export_lines()
    assert all(line.startswith("# ") for line in comments)
    assert any(f"all.q@{cell.hostname}" in line for line in comments)
    assert "# Grid Engine runs, started by someone else: used as it is" in comments[-1]
    assert cell.hostname in lines[env_at + 1:]  # qconf -sh answered
    assert LocalSgeCluster(state_dir=state_dir).records.all() == []
    assert sge_daemons() == machine

    stop = cli(state_dir, "stop")
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout == f"# nothing started from {state_dir} runs\n"
    assert sge_daemons() == machine
    assert cli(state_dir, "status").returncode == 0


def test_env(cell):
    env = cell.env()
    assert env["SGE_ROOT"] == "/var/lib/gridengine"
    assert env["SGE_CELL"] == "default"
    assert env["PATH"] == os.environ["PATH"]
    assert cell.export_lines() == [
        "export SGE_ROOT=/var/lib/gridengine", "export SGE_CELL=default",
    ]


def test_binary_job_writes_its_output(cell, tmp_path):
    assert a_job_runs(cell, tmp_path)


def test_array_runs_all_tasks(cell, tmp_path):
    script = tmp_path / "task.sh"
    script.write_text(f'echo "$JOB_ID $SGE_TASK_ID" > {tmp_path}/task.$SGE_TASK_ID\n')
    job_id = qsub(
        cell, "-t", "1-4", "-S", "/bin/sh", "-j", "y",
        "-o", f"{tmp_path}/$JOB_ID.$TASK_ID.log", str(script),
    )
    assert wait_until(lambda: not job_entries(cell, job_id), timeout=20)
    for task in range(1, 5):
        assert (tmp_path / f"task.{task}").read_text() == f"{job_id} {task}\n"
        assert (tmp_path / f"{job_id}.{task}.log").read_text() == ""


def test_qstat_xml_shows_running_and_pending_tasks(cell):
    slots = queue_slots(cell)
    job_id = qsub(
        cell, "-b", "y", "-S", "/bin/sh", "-t", f"1-{slots + 3}", "-o", "/dev/null",
        "-j", "y", "sleep", "60",
    )
    try:
        def some_running_three_pending():
            # a task may show "t" (being transferred) for a moment
            return sorted(job_entries(cell, job_id)) == sorted([
                ("job_info", "qw", f"{slots + 1}-{slots + 3}:1"),
                *(("queue_info", "r", str(task)) for task in range(1, slots + 1)),
            ])

        assert wait_until(some_running_three_pending, timeout=15)
        root = qstat_xml(cell)
        assert "sleep" in {j.findtext("JB_name") for j in root.iter("job_list")}
        queues = {j.findtext("queue_name") for j in root.find("queue_info").iter("job_list")}
        assert cell.queue_instance in queues
    finally:
        qdel_and_wait(cell, job_id)


def test_job_with_missing_working_directory_ends_in_eqw(cell):
    job_id = qsub(
        cell, "-b", "y", "-S", "/bin/sh", "-wd", "/nonexistent", "-o", "/dev/null",
        "-j", "y", "true",
    )
    try:
        assert wait_until(
            lambda: job_entries(cell, job_id) == [("job_info", "Eqw", None)], timeout=15
        )
        detail = run(cell, "qstat", "-j", job_id).stdout
        reasons = [line for line in detail.splitlines() if line.startswith("error reason")]
        assert reasons and "/nonexistent" in reasons[0]
        time.sleep(1.5)  # it stays so
        assert job_entries(cell, job_id) == [("job_info", "Eqw", None)]
    finally:
        qdel_and_wait(cell, job_id)
    gone = run(cell, "qstat", "-j", job_id, check=False)
    assert gone.returncode == 1
    assert "do not exist" in gone.stdout + gone.stderr


# ----------------------------------------------------------------------
# stop and start for real


def owner_of_the_running_cell(cell):
    """The state directory that started the running cell: the module's, or
    the default one (tests/conftest.py, .ci/run, the command line)."""
    for candidate in (cell, LocalSgeCluster()):
        if candidate.started_here():
            return candidate
    pytest.skip(
        "the running Grid Engine was started from a state directory this test "
        "does not know, so it cannot stop it to test stop and start"
    )


def execd_descendants(execd_pid):
    """(pid, start time) of the shepherds and job processes of an execd."""
    return processes.with_start_times(processes.descendants([execd_pid]))


def comms(found):
    return {processes.read_comm(pid) for pid, _ in found}


def assert_nothing_runs(cluster):
    assert sge_daemons() == set()
    assert not cluster.is_running()
    assert cluster.daemon_pids() == {}
    assert cluster.records.all() == []


def test_stop_and_start_for_real(cell, tmp_path):
    owner = owner_of_the_running_cell(cell)
    slots = queue_slots(cell)
    records = owner.records.alive()
    assert {r.pid for r in records} == sge_daemons()
    execd = owner.records.load("sge_execd")
    job_id = qsub_sleep(cell, 300)
    wait_running(cell, job_id)
    assert wait_until(
        lambda: {"sge_shepherd", "sleep"} <= comms(execd_descendants(execd.pid)), timeout=10
    )
    jobs = execd_descendants(execd.pid)
    try:
        t0 = time.monotonic()
        owner.stop()
        assert time.monotonic() - t0 < 40  # qmaster: ~10 s; SIGKILL after 30 s
        assert all(r.has_ended() for r in records)
        assert [p for p, t in jobs if processes.is_same(p, t)] == []
        assert daemons.session_leftovers(records) == []  # nothing execd forked late
        assert_nothing_runs(owner)

        own = LocalSgeCluster(slots=3, state_dir=str(tmp_path / "own"))
        try:
            own.start()
            assert own.started_here()
            assert sorted(own.daemon_pids()) == ["sge_execd", "sge_qmaster"]
            assert set(own.daemon_pids().values()) == sge_daemons()
            assert queue_slots(own) == 3
            assert own.job_ids() == []  # stop deleted the job
            assert a_job_runs(own, tmp_path)
        finally:
            own_records = own.records.alive()
            own.stop()
        assert daemons.session_leftovers(own_records) == []
        assert_nothing_runs(own)

        state_dir = str(tmp_path / "cli")
        try:
            status = cli(state_dir, "status")
            assert (status.returncode, status.stdout) == (1, f"not running ({state_dir})\n")
            shell = eval_start(state_dir)
            assert shell.returncode == 0, shell.stdout + shell.stderr
            assert f"# Grid Engine started from {state_dir}: sge_execd (" in shell.stdout
            assert cell.hostname in shell.stdout.splitlines()  # qconf -sh answered
            assert cli(state_dir, "status").returncode == 0
        finally:
            stop = cli(state_dir, "stop")
        assert stop.returncode == 0, stop.stderr
        assert stop.stdout.startswith("# stopped sge_execd (")
        assert "sge_qmaster (" in stop.stdout
        assert cli(state_dir, "status").returncode == 1
        assert_nothing_runs(LocalSgeCluster(state_dir=state_dir))
    finally:
        again = LocalSgeCluster(slots=slots, state_dir=owner.state_dir)
        again.start()
    assert again.started_here()
    assert owner.started_here()
    assert queue_slots(cell) == slots
    assert cell.is_running()
