"""
run_command's retry policy, with small scripts standing in for the scheduler
(only to produce failures on demand; the real path is tested on SLURM).
"""
import textwrap
import time

import pytest

from pypoolparty import errors
from pypoolparty.core.commands import RetryPolicy, run_command
from pypoolparty.core.event_log import EventLog, read
from pypoolparty.slurm.adapter import SlurmArrayScheduler
from pypoolparty.sun_grid_engine.adapter import SgeArrayScheduler


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def failing_n_times(tmp_path, n, message):
    counter = tmp_path / "count"
    return script(
        tmp_path,
        "flaky",
        """\
        n=$(cat {c} 2>/dev/null || echo 0)
        echo $((n + 1)) > {c}
        if [ "$n" -lt {n} ]; then echo "{m}" >&2; exit 1; fi
        echo ok
        """.format(c=counter, n=n, m=message),
    ), counter


def test_transient_failures_are_retried_with_back_off(tmp_path):
    cmd, counter = failing_n_times(tmp_path, 3, "error: Connection refused, try again")
    sleeps = []
    log = EventLog(str(tmp_path / "log.jsonl"))
    proc = run_command(
        [cmd],
        policy=RetryPolicy(first_delay=1.0, factor=2.0, max_delay=3.0),
        log=log,
        sleep=sleeps.append,
    )
    log.close()
    assert proc.stdout.strip() == "ok"
    assert counter.read_text().strip() == "4"
    assert sleeps == [1.0, 2.0, 3.0]
    events = [e["event"] for e in read(str(tmp_path / "log.jsonl"))]
    assert events == ["command_failed"] * 3 + ["command"]


def test_permanent_failure_raises_at_once_with_stderr(tmp_path):
    cmd, counter = failing_n_times(
        tmp_path, 5, "sbatch: error: Batch job submission failed: Invalid partition name specified"
    )
    sleeps = []
    with pytest.raises(errors.SchedulerCommandError) as info:
        run_command([cmd, "--partition=x"], policy=RetryPolicy(), sleep=sleeps.append)
    assert sleeps == []
    assert counter.read_text().strip() == "1"
    assert info.value.returncode == 1
    assert "Invalid partition name specified" in str(info.value)
    assert "--partition=x" in str(info.value)
    assert not isinstance(info.value, errors.SchedulerUnavailableError)


def test_missing_command(tmp_path):
    with pytest.raises(errors.SchedulerCommandError) as info:
        run_command([str(tmp_path / "nope")], policy=RetryPolicy())
    assert info.value.returncode is None
    assert "not installed" in str(info.value)


def test_transient_failures_stop_at_the_deadline(tmp_path):
    cmd, counter = failing_n_times(tmp_path, 1000, "Socket timed out on send/recv operation")
    t0 = time.monotonic()
    with pytest.raises(errors.SchedulerUnavailableError) as info:
        run_command([cmd], policy=RetryPolicy(first_delay=0.05, max_delay=0.1, deadline=1.0))
    assert time.monotonic() - t0 < 3.0
    assert int(counter.read_text()) >= 3
    assert "Socket timed out" in str(info.value)


def test_a_hanging_command_times_out_and_counts_as_transient(tmp_path):
    cmd = script(tmp_path, "hang", "sleep 10\n")
    t0 = time.monotonic()
    with pytest.raises(errors.SchedulerUnavailableError, match="timed out"):
        run_command([cmd], policy=RetryPolicy(timeout=0.3, first_delay=0.05, deadline=0.8))
    assert time.monotonic() - t0 < 5.0


def test_should_stop_ends_retries(tmp_path):
    cmd, counter = failing_n_times(tmp_path, 1000, "Socket timed out")
    with pytest.raises(errors.SchedulerUnavailableError):
        run_command([cmd], policy=RetryPolicy(first_delay=0.01), should_stop=lambda: True)
    assert counter.read_text().strip() == "1"


@pytest.mark.parametrize(
    "adapter, message",
    [
        (SlurmArrayScheduler, "squeue: error: Unable to contact slurm controller (connect failure)"),
        (SgeArrayScheduler, "error: commlib error: can't contact qmaster"),
    ],
)
def test_each_adapter_retries_its_schedulers_transient_phrases(tmp_path, adapter, message):
    cmd, counter = failing_n_times(tmp_path, 2, message)
    scheduler = adapter(policy=RetryPolicy(first_delay=0.01, max_delay=0.01))
    log = EventLog(str(tmp_path / "log.jsonl"))
    proc = scheduler.run([cmd], log)
    log.close()
    assert proc.stdout.strip() == "ok"
    assert counter.read_text().strip() == "3"
    # The core alone does not know these phrases: one failure ends it.
    counter.write_text("0")
    with pytest.raises(errors.SchedulerCommandError) as info:
        run_command([cmd], policy=RetryPolicy(first_delay=0.01))
    assert not isinstance(info.value, errors.SchedulerUnavailableError)
    assert counter.read_text().strip() == "1"


def test_single_try_makes_one_attempt(tmp_path):
    cmd, counter = failing_n_times(tmp_path, 5, "error: Connection refused")
    scheduler = SlurmArrayScheduler(policy=RetryPolicy(first_delay=0.01))
    with pytest.raises(errors.SchedulerUnavailableError):
        scheduler.run([cmd], EventLog(), single_try=True)
    assert counter.read_text().strip() == "1"
