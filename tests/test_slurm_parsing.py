"""
The SLURM parsers, on output captured from the real commands (tests/data).
"""
import os

from pypoolparty.core.scheduler import WorkerState
from pypoolparty.slurm import parsing
from pypoolparty.slurm.adapter import check_options, format_options

import pytest

DATA = os.path.join(os.path.dirname(__file__), "data")


def read(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


def test_sbatch_parsable():
    assert parsing.parse_sbatch_parsable(read("sbatch_parsable.txt")) == "79"
    assert parsing.parse_sbatch_parsable("4711;cluster_a\n") == "4711"
    with pytest.raises(ValueError):
        parsing.parse_sbatch_parsable("Submitted batch job\n")


def test_squeue_array_tasks_each_on_a_line():
    states = parsing.parse_squeue(read("squeue_array_throttled.txt"))
    assert sorted(states) == ["79_{:d}".format(i) for i in range(6)]
    assert states["79_0"].state is WorkerState.RUNNING
    assert states["79_5"].state is WorkerState.PENDING
    assert states["79_5"].reason == "JobArrayTaskLimit"
    assert states["79_0"].reason == ""


def test_squeue_collapsed_pending_tasks_are_expanded():
    states = parsing.parse_squeue(read("squeue_array_collapsed.txt"))
    assert sorted(states) == ["79_{:d}".format(i) for i in range(6)]
    assert states["79_3"].state is WorkerState.PENDING


def test_squeue_held_and_ended():
    states = parsing.parse_squeue(read("squeue_pending_held.txt"))
    assert states["83"].state is WorkerState.HELD
    assert states["84"].state is WorkerState.PENDING
    assert states["79_1"].state is WorkerState.ENDED
    states = parsing.parse_squeue(read("squeue_mixed_states.txt"))
    assert states["84"].state is WorkerState.ENDED
    assert states["84"].scheduler_state == "FAILED"
    assert states["84"].reason == "NonZeroExitCode"
    assert all(s.state is WorkerState.ENDED for s in states.values())


@pytest.mark.parametrize(
    "state,reason,expected",
    [
        ("TIMEOUT", "", WorkerState.ENDED),
        ("OUT_OF_MEMORY", "", WorkerState.ENDED),
        ("NODE_FAIL", "", WorkerState.ENDED),
        ("COMPLETING", "", WorkerState.RUNNING),
        ("REQUEUE_HOLD", "", WorkerState.HELD),
        ("PENDING", "launch failed requeued held", WorkerState.HELD),
        ("PENDING", "JobHeldAdmin", WorkerState.HELD),
        ("PENDING", "Priority", WorkerState.PENDING),
        ("SOME_FUTURE_STATE", "", WorkerState.RUNNING),
    ],
)
def test_worker_state(state, reason, expected):
    assert parsing.worker_state(state, reason) is expected


def test_expand_job_id():
    assert parsing.expand_job_id("7_[1-3,5%2]") == ["7_1", "7_2", "7_3", "7_5"]
    assert parsing.expand_job_id("7_[0-6:3]") == ["7_0", "7_3", "7_6"]
    assert parsing.expand_job_id("7_4") == ["7_4"]
    assert parsing.expand_job_id("8") == ["8"]


def test_scontrol_show_config():
    config = parsing.parse_config(read("scontrol_show_config.txt"))
    assert config["MaxArraySize"] == "1001"
    assert config["SelectType"] == "select/cons_tres"


def test_sinfo_cpus():
    assert parsing.parse_sinfo_cpus(read("sinfo_cpus.txt")) == 2
    assert parsing.parse_sinfo_cpus("0/2/0/2\n4/4/0/8\n") == 10


def test_format_options():
    argv = format_options(
        {"time": "0:10:00", "exclusive": True, "cpus_per_task": 4, "p": "debug", "x": None, "hold": False}
    )
    assert argv == ["--time=0:10:00", "--exclusive", "--cpus-per-task=4", "-p", "debug"]


def test_options_the_pool_sets_are_refused():
    for key in ("array", "wrap", "--output", "error", "parsable"):
        with pytest.raises(ValueError, match="set by the pool"):
            check_options({key: "x"})


def test_scontrol_show_job_description():
    text = (
        "JobId=12 ArrayJobId=11 ArrayTaskId=1 JobName=pypoolparty\n"
        "   JobState=TIMEOUT Reason=TimeLimit Dependency=(null)\n"
        "   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0\n"
        "   RunTime=00:01:12 TimeLimit=00:01:00 TimeMin=N/A\n"
        "   NodeList=n2\n"
    )
    assert parsing.describe_job(text) == (
        "JobState=TIMEOUT Reason=TimeLimit ExitCode=0:0 NodeList=n2 "
        "RunTime=00:01:12 TimeLimit=00:01:00"
    )


def test_sacct_description():
    # sacct --noheader --parsable2 --format=State,ExitCode,NodeList,Elapsed
    # (no accounting daemon runs here: the format is sacct's documented one)
    text = "OUT_OF_MEMORY|0:125|n3|00:00:04\nOUT_OF_MEMORY|0:125|n3|00:00:04\n"
    assert parsing.describe_sacct(text) == (
        "State=OUT_OF_MEMORY ExitCode=0:125 NodeList=n3 Elapsed=00:00:04"
    )
    assert parsing.describe_sacct("") == ""


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("10", 600.0),
        ("10:30", 630.0),
        ("01:00:00", 3600.0),
        ("2-0", 172800.0),
        ("1-02:03", 93780.0),
        ("1-02:03:04", 93784.0),
        (90, 5400.0),
        ("UNLIMITED", None),
        ("soon", None),
    ],
)
def test_time_limit_of_sbatch_time(text, seconds):
    assert parsing.time_limit_seconds(text) == seconds


def test_the_adapter_tells_the_time_limit_from_sbatch_options():
    from pypoolparty.slurm.adapter import SlurmArrayScheduler

    assert SlurmArrayScheduler(sbatch_options={"time": "0:30:00"}).time_limit() == 1800.0
    assert SlurmArrayScheduler(sbatch_options={"t": 5}).time_limit() == 300.0
    assert SlurmArrayScheduler(sbatch_options={}).time_limit() is None
