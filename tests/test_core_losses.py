"""
The core on a fake scheduler: workers that end without a result.

Lost, held, requeued and forgotten workers, and submissions that never
produce anything: what the core releases, resubmits, cancels and raises.
"""
import os
import stat
import sys

import pytest

from fake_jobs import Gate, map_dirs, square, wait_until, worker_of
from pypoolparty import errors
from pypoolparty.testing import fake

pytestmark = pytest.mark.timeout(60)


def polls_seeing(fake_scheduler, wid, words, before=None):
    """States calls, before the call ``before``, that reported ``wid`` so."""
    out = []
    for call in list(fake_scheduler.history):
        if call is before:
            break
        if call.kind == "states" and wid in call.worker_ids:
            status = call.reply.get(wid)
            if (status.scheduler_state if status else "UNKNOWN") in words:
                out.append(call)
    return out


def second_submit(fake_scheduler):
    return fake_scheduler.calls_of("submit")[1]


def test_a_lost_workers_chunk_is_run_again_and_counted_once(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path / "pools") as pool:
        fake_scheduler = pool.scheduler
        it = pool.imap_unordered(gate.job(), range(4), chunksize=1)
        assert sorted(gate.wait_started(2)) == [0, 1]
        lost = worker_of(fake_scheduler, gate.pid_of(0))
        fake_scheduler.lose(lost)
        # Chunk 0 is released; one worker replaces the lost one and takes it.
        gate.wait_started(3)
        assert gate.started() == [0, 0, 1]
        gate.open()
        assert sorted(it) == [0, 1, 4, 9]
        first, again = fake_scheduler.submitted
        assert len(first) == 2 and len(again) == 1
        assert worker_of(fake_scheduler, gate.pid_of(0)) == again[0]
        # The loss counted only once two polls had seen the worker ended.
        seen_ended = polls_seeing(fake_scheduler, lost, ["KILLED"], second_submit(fake_scheduler))
        assert len(seen_ended) == 2
        assert [job for job, _ in gate.marks("done")] == [0, 1, 2, 3]


def test_workers_lost_at_once_are_replaced_by_one_submission(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path) as pool:
        fake_scheduler = pool.scheduler
        res = gate.start_map(pool, range(4), 2)
        for wid in fake_scheduler.worker_ids("RUNNING"):
            fake_scheduler.lose(wid)
        gate.wait_started(4)
        gate.open()
        assert res.get() == [0, 1, 4, 9]
        assert [len(ids) for ids in fake_scheduler.submitted] == [2, 2]


def test_a_lost_chunk_gets_a_free_slot_while_the_other_worker_is_busy(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path) as pool:
        fake_scheduler = pool.scheduler
        res = gate.start_map(pool, range(2), 2)
        fake_scheduler.lose(worker_of(fake_scheduler, gate.pid_of(0)))
        replaced = wait_until(lambda: fake_scheduler.calls["submit"] >= 2, timeout=2.0)
        gate.open()
        assert res.get() == [0, 1]
        assert replaced


def test_a_chunk_lost_more_than_max_num_resubmissions_times_raises(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(1, work_dir=tmp_path / "pools", max_num_resubmissions=2) as pool:
        fake_scheduler = pool.scheduler
        res = pool.map_async(gate.job(), [7, 8], chunksize=1)
        for attempt in range(1, 4):
            gate.wait_started(attempt)
            fake_scheduler.lose(worker_of(fake_scheduler, gate.pid_of(7)))
        with pytest.raises(errors.JobsLostError) as info:
            res.get()
        exc = info.value
        assert exc.job_indices == [0]  # the lost job; job 1 never ran
        assert "job 0 (chunk 0)" in str(exc) and "job 1" not in str(exc)
        assert str(exc).count("without a result") == 3
        assert "The test killed them" in str(exc)  # the scheduler's hint
        assert "job 7 waits for the gate" in str(exc)  # the worker's output
        assert "exit code -9" in str(exc)  # the scheduler's description
        assert fake_scheduler.calls["submit"] == 3
        assert os.path.isdir(exc.work_dir) and map_dirs(tmp_path / "pools") == [exc.work_dir]
        assert fake_scheduler.worker_ids("PENDING", "RUNNING") == []


def test_submissions_that_never_produce_a_result_raise_instead_of_hanging(tmp_path):
    # One process: one worker per submission, each judged before the next.
    with fake.pool(
        1, work_dir=tmp_path / "pools", python_path="/bin/false", max_num_resubmissions=2
    ) as pool:
        res = pool.map_async(square, range(5))
        with pytest.raises(errors.JobsLostError) as info:
            res.get(timeout=20)
        exc = info.value
        assert "3 submissions of workers in a row" in str(exc)
        assert exc.job_indices == [0, 1, 2, 3, 4]
        assert pool.scheduler.calls["submit"] == 3
        assert os.path.isdir(exc.work_dir)


def test_a_productive_submission_resets_the_count_of_unproductive_ones(tmp_path):
    """Unproductive, productive (then lost), unproductive, productive: done.

    With max_num_resubmissions=1 two unproductive submissions in a row
    raise; here they are not in a row.
    """
    gate = Gate(tmp_path / "gate")
    fail_next = tmp_path / "fail-next"
    python = tmp_path / "python"
    python.write_text(
        '#!/bin/sh\nif [ -e "{f}" ]; then rm "{f}"; exit 3; fi\nexec "{p}" "$@"\n'.format(
            f=fail_next, p=sys.executable
        )
    )
    python.chmod(stat.S_IRWXU)
    fail_next.touch()
    with fake.pool(
        1, work_dir=tmp_path / "pools", python_path=str(python), max_num_resubmissions=1
    ) as pool:
        fake_scheduler = pool.scheduler
        res = pool.map_async(gate.job(which=[1]), [0, 1], chunksize=1)
        gate.wait_started(1)
        fail_next.touch()
        fake_scheduler.lose(worker_of(fake_scheduler, gate.pid_of(1)))
        gate.open()
        assert res.get() == [0, 1]
        pool.close()
        pool.join()

        def words():
            return [fake_scheduler.word(ids[0]) for ids in fake_scheduler.submitted]

        expected = ["FAILED", "KILLED", "FAILED", "COMPLETED"]
        assert wait_until(lambda: words() == expected), words()


def test_a_held_worker_is_cancelled_after_two_polls_and_replaced(tmp_path):
    with fake.pool(1, work_dir=tmp_path) as pool:
        fake_scheduler = pool.scheduler
        fake_scheduler.hold(1)
        assert pool.map_async(square, range(3)).get(timeout=10) == [0, 1, 4]
        (held,), (replacement,) = fake_scheduler.submitted
        (cancel,) = fake_scheduler.calls_of("cancel")[:1]
        assert cancel.worker_ids == [held]
        assert len(polls_seeing(fake_scheduler, held, ["HELD"], cancel)) == 2
        assert fake_scheduler.word(held) == "CANCELLED"
        pool.close()
        pool.join()
        assert fake_scheduler.word(replacement) == "COMPLETED"


def test_workers_held_every_time_end_in_an_error_naming_the_hold(tmp_path):
    with fake.pool(1, work_dir=tmp_path, max_num_resubmissions=1) as pool:
        fake_scheduler = pool.scheduler
        fake_scheduler.hold(10)
        res = pool.map_async(square, range(3))
        with pytest.raises(errors.JobsLostError) as info:
            res.get(timeout=20)
        assert "2 submissions of workers in a row" in str(info.value)
        assert "held in HELD (held by the test), cancelled by pypoolparty" in str(info.value)
        assert "The test held them" in str(info.value)
        assert fake_scheduler.cancelled == fake_scheduler.submitted
        assert len(fake_scheduler.submitted) == 2


def test_a_requeued_worker_runs_its_own_claimed_chunk_again(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(1, work_dir=tmp_path) as pool:
        fake_scheduler = pool.scheduler
        it = pool.imap_unordered(gate.job(which=[0]), range(3), chunksize=1)
        gate.wait_started(1)
        (wid,) = fake_scheduler.worker_ids()
        fake_scheduler.requeue(wid)
        assert gate.wait_started(2) == [0, 0]
        gate.open()
        assert sorted(it) == [0, 1, 4]
        assert fake_scheduler.calls["submit"] == 1
        first_run, second_run = fake_scheduler.pids(wid)
        assert gate.marks("done") == [(0, second_run)]


def test_a_worker_the_scheduler_forgets_counts_as_ended_after_two_polls(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(1, work_dir=tmp_path) as pool:
        fake_scheduler = pool.scheduler
        res = pool.map_async(gate.job(), [3])
        gate.wait_started(1)
        (wid,) = fake_scheduler.worker_ids()
        fake_scheduler.forget(wid)
        fake_scheduler.lose(wid)
        gate.wait_started(2)
        gate.open()
        assert res.get() == [9]
        unknown = polls_seeing(fake_scheduler, wid, ["UNKNOWN"])
        assert len(unknown) == 2
        assert unknown[-1].time < second_submit(fake_scheduler).time
