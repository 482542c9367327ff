"""
The adapter of ``pypoolparty.slurm.allocation`` without a cluster: its srun
command lines, what it reads of ``scontrol -o show step`` (captured from
SLURM 22.05, tests/data) and of the allocation's environment, how it tells
pending, running and ended workers apart, and how it cancels them.
"""
import os
import socket
import subprocess
import sys

import pytest

from pypoolparty import errors
from pypoolparty.core.event_log import EventLog
from pypoolparty.core.resources import Resources
from pypoolparty.core.scheduler import SubmitRequest, WorkerState
from pypoolparty.processes.adapter import DETACHED_SCRIPT, SCRIPT_FLAGS
from pypoolparty.processes.detached import ProcessId
from pypoolparty.slurm import allocation, steps

DATA = os.path.join(os.path.dirname(__file__), "data")
ALLOCATION = {"SLURM_JOB_ID": "6", "SLURM_JOB_CPUS_PER_NODE": "2(x2)"}


def captured_steps():
    with open(os.path.join(DATA, "scontrol_show_step.txt")) as f:
        return f.read()


def adapter(srun_options=None, environ=ALLOCATION):
    return steps.StepScheduler(srun_options=srun_options, environ=dict(environ))


class Listing:
    """Stands in for scontrol and scancel: answers ``scontrol`` with
    ``stdout`` (or fails), records every command line."""

    def __init__(self, stdout="", error=None):
        self.stdout = stdout
        self.error = error
        self.calls = []

    def __call__(self, argv, log, **kwargs):
        self.calls.append(list(argv))
        if argv[0] == "scontrol" and self.error is not None:
            raise errors.SchedulerCommandError(argv, 1, self.error)
        return subprocess.CompletedProcess(argv, 0, self.stdout if argv[0] == "scontrol" else "", "")


def log():
    return EventLog.buffer()


# ----------------------------------------------------------------------
# command lines


def test_srun_starts_one_task_on_one_node_with_only_its_own_cpus():
    assert adapter().srun_argv("pypoolparty") == [
        "srun", "--jobid=6", "--ntasks=1", "--nodes=1", "--exact", "--job-name=pypoolparty",
    ]


def test_srun_options_follow_the_pools_own():
    argv = adapter({"cpus_per_task": 2, "mem-per-cpu": "1G", "overcommit": True, "x": None}).srun_argv("p")
    assert argv[-3:] == ["--cpus-per-task=2", "--mem-per-cpu=1G", "--overcommit"]


@pytest.mark.parametrize("option", ["jobid", "--ntasks", "n", "output", "error", "input"])
def test_options_the_pool_sets_itself_are_refused(option):
    with pytest.raises(ValueError, match="srun_options"):
        adapter({option: "1"})


def test_a_step_of_several_tasks_may_spread_over_nodes():
    assert steps.task_options(1) == ["--ntasks=1", "--nodes=1"]
    assert steps.task_options(3) == ["--ntasks=3", "--nodes=1-3"]


def test_the_worker_runs_under_srun_behind_the_detached_launcher(tmp_path):
    sched = adapter()
    started = []
    sched.processes.submit = lambda request, log: started.append(request) or ["id"]
    request = SubmitRequest(2, 2, ["python", "-m", "pypoolparty.core.worker", "/pool"], "pp", str(tmp_path), "/", {})
    assert sched.submit(request, log()) == ["id"]
    assert started[0].worker_argv == sched.srun_argv("pp") + ["python", "-m", "pypoolparty.core.worker", "/pool"]
    assert started[0].num_workers == 2


def test_a_call_on_mpi_ranks_is_one_step_of_that_many_tasks(tmp_path):
    base = adapter({"mem-per-cpu": "1G"})
    sched = base.with_resources(
        Resources(cores=2, threads_per_core=2, launcher_args=("--mpi=pmix",), options=(("mem_per_cpu", "2G"),))
    )
    assert sched.allocation == "6" and base.resources == Resources()
    started = []
    sched.processes.submit = lambda request, log: started.append(request) or ["id"]
    worker = ["python", "-m", "pypoolparty.core.worker", "/pool"]
    sched.submit(SubmitRequest(1, 1, worker, "pp", str(tmp_path), "/", {}), log())
    argv = started[0].worker_argv
    assert argv[:5] == ["srun", "--jobid=6", "--ntasks=2", "--nodes=1-2", "--exact"]
    assert "--cpus-per-task=2" in argv and "--mem-per-cpu=2G" in argv and "--mem-per-cpu=1G" not in argv
    # the step's own srun starts the ranks: no second launcher inside it
    assert argv[argv.index("--mpi=pmix") + 1:] == worker + ["--ranks", "2"]
    assert "--kill-on-bad-exit=1" in argv  # a dead rank ends the step
    assert sched.known_option("mem") and not sched.known_option("jobid")
    assert not sched.known_option("requeue")  # sbatch's only: a step cannot ask for it


# ----------------------------------------------------------------------
# the allocation


def test_outside_an_allocation_the_pool_says_so_before_anything_starts(monkeypatch, tmp_path):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    for make in (allocation.Pool, allocation.Executor):
        with pytest.raises(errors.PoolError, match="SLURM_JOB_ID is not set"):
            make()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "cpus_per_node,cpus_per_step,expected",
    [("2(x2)", 1, 4), ("72(x2),36", 1, 180), ("4(x2),3", 2, 5), ("1", 2, 0), ("", 1, 0), ("2(x", 1, 0)],
)
def test_steps_that_fit_in_the_allocations_cpus(cpus_per_node, cpus_per_step, expected):
    env = {"SLURM_JOB_CPUS_PER_NODE": cpus_per_node}
    assert steps.allocation_cpus(env, cpus_per_step) == expected


def test_default_processes_counts_the_cpus_of_every_node_per_step():
    # The driver's node has 2 CPUs and 4 tasks were asked for; the allocation has 8 CPUs.
    env = {"SLURM_JOB_ID": "6", "SLURM_JOB_CPUS_PER_NODE": "4(x2)", "SLURM_CPUS_ON_NODE": "2", "SLURM_NTASKS": "4"}
    assert adapter(environ=env).default_processes(log()) == 8
    assert adapter({"cpus-per-task": 2}, environ=env).default_processes(log()) == 4
    assert adapter({"c": 3}, environ=env).default_processes(log()) == 2


def test_name_and_time_limit():
    sched = adapter({"time": "0:10:00"})
    assert sched.name == "slurm.steps@6"
    assert sched.time_limit() == 600.0
    assert adapter().time_limit() is None


# ----------------------------------------------------------------------
# states


def test_steps_are_read_with_their_srun_and_without_batch_step():
    listed = steps.parse_steps(captured_steps())
    assert [s.step_id for s in listed] == ["6.0", "6.1", "6.2", "6.3", "6.TDB"]
    assert listed[1] == steps.Step("6.1", "RUNNING", "n2", "vm", 3555)
    assert listed[4].state == "PENDING"


def live_ids(count):
    """Ids of processes that run (sleepers of this test), and their pids."""
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(count)]
    return procs, [str(ProcessId.of(p.pid)) for p in procs]


@pytest.fixture
def sleepers():
    made = []

    def start(count):
        procs, ids = live_ids(count)
        made.extend(procs)
        return procs, ids

    yield start
    for p in made:
        p.kill()
        p.wait()


def listing_of(pids_by_step):
    """The captured listing with its srun pids replaced by ours."""
    text = captured_steps().replace("SrunHost:Pid=vm:", "SrunHost:Pid={:s}:".format(socket.gethostname()))
    for old, new in pids_by_step.items():
        text = text.replace(":{:d}\n".format(old), ":{:d}\n".format(new))
    return text


def test_running_pending_starting_and_ended_workers(sleepers):
    procs, ids = sleepers(3)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended_id = str(ProcessId.of(ended.pid))
    ended.wait()
    sched = adapter()
    # srun 3551 made step 6.0 (running), 3556 waits for a CPU (pending).
    sched.run = Listing(listing_of({3551: procs[0].pid, 3556: procs[1].pid}))
    states = sched.states(ids + [ended_id, "not-an-id"], log())
    assert states[ids[0]].state is WorkerState.RUNNING
    assert states[ids[0]].reason == "step 6.0 on n1"
    assert states[ids[1]].state is WorkerState.PENDING
    assert states[ids[1]].scheduler_state == "PENDING"
    assert states[ids[2]].state is WorkerState.PENDING
    assert states[ids[2]].scheduler_state == "STARTING"
    assert states[ended_id].state is WorkerState.ENDED
    assert "not-an-id" not in states
    assert sched.describe(ids[0], log()).endswith(", step 6.0 on n1")


def test_a_running_step_is_not_looked_up_again(sleepers):
    procs, ids = sleepers(1)
    sched = adapter()
    sched.run = Listing(listing_of({3551: procs[0].pid}))
    assert sched.states(ids, log())[ids[0]].state is WorkerState.RUNNING
    assert sched.states(ids, log())[ids[0]].state is WorkerState.RUNNING
    assert len(sched.run.calls) == 1


def test_an_allocation_without_steps_leaves_its_sruns_pending(sleepers):
    _, ids = sleepers(1)
    sched = adapter()
    sched.run = Listing(error="Job step 6. not found")
    buffer = log()
    assert sched.states(ids, buffer)[ids[0]].state is WorkerState.PENDING
    assert [name for name, _, _ in buffer._buffer] == []  # no warning: nothing is wrong


# ----------------------------------------------------------------------
# cancel


def test_cancel_scancels_the_steps_then_ends_the_sruns(sleepers):
    procs, ids = sleepers(2)
    sched = adapter()
    sched.processes.grace = 2.0
    sched.run = Listing(listing_of({3552: procs[0].pid, 3556: procs[1].pid}))
    sched.cancel(ids, log())
    # One look-up (the steps were not known yet), one scancel of the running step only.
    assert sched.run.calls[1:] == [["scancel", "6.2"]]
    assert [p.wait(timeout=10) for p in procs] == [-15, -15]
    states = sched.states(ids, log())
    assert {s.scheduler_state for s in states.values()} == {"CANCELLED"}


def test_the_reaper_gets_scancel_of_known_steps_and_the_srun_signals(sleepers):
    procs, ids = sleepers(2)
    sched = adapter()
    assert sched.cancel_commands(ids) == [[sys.executable] + SCRIPT_FLAGS + [DETACHED_SCRIPT, "cancel"] + sorted(ids)]
    sched.run = Listing(listing_of({3557: procs[0].pid}))
    sched.states(ids, log())
    assert sched.cancel_commands(ids)[0] == ["scancel", "6.3"]
    assert sched.cancel_commands([]) == []
