"""
What a local cluster's stop waits for and signals, tried on ordinary
processes this test starts (no daemons, no root): when a recorded daemon
has ended (pypoolparty.testing.daemons) and what is left in the session it
led.
"""
import dataclasses
import subprocess
import sys
import time

import pytest

from pypoolparty.testing import daemons, processes
from pypoolparty.testing.daemons import DaemonRecord

# A stand-in for sge_execd: once told to, it forks a child that carries on
# (as a child forked to exec a shepherd does), prints the child's pid and
# exits.
FORKS_THEN_EXITS = """
import os, sys, time
print("ready", flush=True)
sys.stdin.readline()
child = os.fork()
if child == 0:
    time.sleep(120)
    os._exit(0)
print(child, flush=True)
"""


@pytest.fixture
def started():
    """Starts processes in sessions of their own; kills what is left of
    them, and the (pid, start time) pairs added to ``left``, at the end."""
    procs, left = [], []

    def start(argv, **kwargs):
        proc = subprocess.Popen(
            argv, start_new_session=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, **kwargs,
        )
        procs.append(proc)
        return proc

    start.left = left
    yield start
    processes.kill_all(left)
    for proc in procs:
        with proc:  # closes its pipes and waits
            proc.kill()


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def record_of(proc):
    """The record a local cluster keeps, once the process has exec'd."""
    wait_for(lambda: processes.read_cmdline(proc.pid) == proc.args)
    return DaemonRecord(
        name="daemon", pid=proc.pid, start_time=processes.live_start_time(proc.pid),
        argv=proc.args,
    )


def test_a_child_forked_after_the_daemon_was_listed_is_left_in_its_session(started):
    bystander = started(["sleep", "120"])  # in a session of its own
    daemon = started([sys.executable, "-c", FORKS_THEN_EXITS])
    assert daemon.stdout.readline() == "ready\n"
    record = record_of(daemon)
    assert processes.read_session(daemon.pid) == daemon.pid
    listed = processes.descendants([daemon.pid])  # what stop() lists first
    assert listed == set()

    daemon.stdin.write("fork\n")
    daemon.stdin.flush()
    child = int(daemon.stdout.readline())
    child_start = processes.live_start_time(child)
    started.left.append((child, child_start))
    daemon.wait(timeout=30)
    assert record.has_ended()

    # no one's descendant now, but still running, in the daemon's session
    assert processes.is_same(child, child_start)
    assert child not in listed
    assert processes.read_session(child) == daemon.pid
    leftovers = daemons.session_leftovers([record])
    assert leftovers == [(child, child_start)]  # not the bystander, not us
    # a process that started before the daemon is not of its session
    younger = dataclasses.replace(record, start_time=child_start + 1)
    assert daemons.session_leftovers([younger]) == []

    processes.kill_all(leftovers)
    assert not processes.is_same(child, child_start)
    assert bystander.poll() is None


def test_a_session_whose_leader_pid_is_another_process_is_left_alone(started):
    leader = started(["sh", "-c", "sleep 120 & wait"])
    wait_for(lambda: processes.descendants([leader.pid]))
    (sleeper,) = processes.descendants([leader.pid])
    members = processes.with_start_times([leader.pid, sleeper])
    record = record_of(leader)

    # a daemon that still runs (or still exits) is in its own session
    assert daemons.session_leftovers([record]) == members
    # the same pid with another start time or program: someone else's session
    reused = dataclasses.replace(record, start_time=record.start_time - 1)
    assert daemons.session_leftovers([reused]) == []
    other_program = dataclasses.replace(record, argv=["sge_execd"])
    assert other_program.is_other_process() and other_program.has_ended()
    assert daemons.session_leftovers([other_program]) == []


def test_wait_gone_waits_for_a_daemon_that_is_still_exiting(started, monkeypatch):
    daemon = started(["sleep", "120"])
    record = record_of(daemon)
    # While a daemon exits, /proc/<pid>/cmdline reads empty some time before
    # the process is a zombie (seen with sge_qmaster right after its stop).
    read_cmdline = processes.read_cmdline
    monkeypatch.setattr(
        processes, "read_cmdline", lambda pid: [] if pid == daemon.pid else read_cmdline(pid)
    )
    assert not record.is_alive()
    assert not record.has_ended()
    assert not daemons.wait_gone([record], time.monotonic() + 0.3)

    daemon.kill()
    assert daemons.wait_gone([record], time.monotonic() + 10)
    assert record.has_ended()
    assert processes.read_proc_stat(daemon.pid) is None  # reaped
