"""
The core on a fake scheduler: scheduler commands that fail.

The fake's commands go through run_command like the real adapters', so a
transient failure is retried by the same policy and a permanent one raises
at once; the map then fails with the command's error and its workers are
cancelled.
"""
import time

import pytest

from fake_jobs import Gate, square, wait_until
from pypoolparty import errors
from pypoolparty.core.commands import RetryPolicy
from pypoolparty.testing import fake

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("command", ["submit", "states"])
def test_transient_failures_are_retried_and_the_map_completes(tmp_path, command):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path) as pool:
        fake_scheduler = pool.scheduler
        fake_scheduler.fail_next(command, times=3, transient=True)
        res = pool.map_async(gate.job(), range(4), chunksize=1)
        assert wait_until(lambda: fake_scheduler.failures_left(command) == 0)
        gate.open()
        assert res.get() == [0, 1, 4, 9]
        assert all(c.error is None for c in fake_scheduler.history)


def test_transient_failures_past_the_deadline_raise_unavailable(tmp_path):
    policy = RetryPolicy(first_delay=0.01, max_delay=0.05, deadline=0.3)
    scheduler = fake.FakeScheduler(policy=policy)
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path, scheduler=scheduler) as pool:
        res = gate.start_map(pool, range(4), 2)
        scheduler.fail_next("states", times=1000, transient=True)
        with pytest.raises(errors.SchedulerUnavailableError, match="fake controller is busy"):
            res.get(timeout=10)
        assert scheduler.worker_ids("PENDING", "RUNNING") == []


def test_a_permanent_submit_failure_raises_at_once_with_its_message(tmp_path):
    with fake.pool(2, work_dir=tmp_path) as pool:
        message = "fake-submit: no such partition"
        pool.scheduler.fail_next("submit", transient=False, message=message)
        started = time.monotonic()
        res = pool.map_async(square, range(4))
        with pytest.raises(errors.SchedulerCommandError) as info:
            res.get(timeout=10)
        assert time.monotonic() - started < 2.0
        assert message in str(info.value)
        assert not isinstance(info.value, errors.SchedulerUnavailableError)
        assert pool.scheduler.submitted == []
        # The pool goes on with the next map.
        assert pool.map(square, [4]) == [16]


def test_a_permanent_states_failure_fails_the_map_and_cancels_it(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path) as pool:
        fake_scheduler = pool.scheduler
        res = gate.start_map(pool, range(4), 2)
        fake_scheduler.fail_next("states", transient=False)
        with pytest.raises(errors.SchedulerCommandError, match="request refused"):
            res.get(timeout=10)
        (ids,) = fake_scheduler.submitted
        assert fake_scheduler.cancelled == [ids]
        assert [fake_scheduler.word(w) for w in ids] == ["CANCELLED", "CANCELLED"]


def test_a_failing_resubmission_fails_the_map_and_cancels_the_rest(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path) as pool:
        fake_scheduler = pool.scheduler
        res = gate.start_map(pool, range(4), 2)
        lost, kept = fake_scheduler.worker_ids("RUNNING")
        fake_scheduler.fail_next("submit", transient=False)
        fake_scheduler.lose(lost)
        with pytest.raises(errors.SchedulerCommandError):
            res.get(timeout=10)
        assert fake_scheduler.calls["submit"] == 2
        assert fake_scheduler.word(kept) == "CANCELLED"


def test_an_unexpected_error_in_a_round_fails_every_map_instead_of_hanging(tmp_path, monkeypatch):
    gate = Gate(tmp_path / "gate")
    with fake.pool(4, work_dir=tmp_path) as pool:
        fake_scheduler = pool.scheduler
        maps = [pool.map_async(gate.job(), [i], chunksize=1) for i in range(2)]
        gate.wait_started(2)

        def broken_states(worker_ids, log):
            raise ZeroDivisionError("a bug in an adapter")

        monkeypatch.setattr(fake_scheduler, "states", broken_states)
        for res in maps:
            with pytest.raises(ZeroDivisionError):
                res.get(timeout=10)
        assert fake_scheduler.worker_ids("PENDING", "RUNNING") == []


def test_a_failing_cancel_is_reported_and_the_results_still_end(tmp_path, caplog):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path) as pool:
        res = gate.start_map(pool, range(4), 2)
        pool.scheduler.fail_next("cancel", transient=False)
        pool.terminate()
        with pytest.raises(errors.CancelledError):
            res.get(timeout=10)
    assert any(
        r.name == "pypoolparty" and "could not cancel workers" in r.getMessage()
        for r in caplog.records
    )
