"""
``verbose=True``: each event of note becomes one short human line on
stderr (:mod:`pypoolparty.core.event_lines`), routine ones none; a pool's
events are printed once, not once per log they go to; the JSON-lines log
keeps every event.
"""
import json

import pytest

import pypoolparty.processes
from fake_jobs import fail_on, square
from pypoolparty.core import event_lines, event_log
from pypoolparty.core.event_lines import Lines

pytestmark = pytest.mark.timeout(90)


def line(event, label="", **fields):
    return Lines(label).line(dict(event=event, **fields))


# ------------------------------------------------------------- one event each
def test_a_map_says_its_jobs_and_chunks_after_its_label():
    assert line("map", "map-000001", num_jobs=10, num_chunks=10, scheduler="x", work_dir="/w") == (
        "pypoolparty: map-000001: 10 jobs in 10 chunks"
    )
    assert line("map", num_jobs=1, num_chunks=1) == "pypoolparty: 1 job in 1 chunk"


def test_the_pool_says_its_folder_scheduler_and_workers():
    text = line("pool", scheduler="slurm-array", pool_dir="/w/pypoolparty-1", processes=4)
    assert text == "pypoolparty: pool /w/pypoolparty-1 on slurm-array, at most 4 workers at once"


def test_submitted_names_the_workers_and_shortens_a_long_list():
    assert line("submitted", submission=0, workers=["123", "124"]) == (
        "pypoolparty: submitted 2 workers (123, 124)"
    )
    assert line("submitted", submission=0, workers=["123"]) == "pypoolparty: submitted worker 123"
    many = ["7_{:d}".format(i) for i in range(200)]
    assert line("submitted", submission=1, workers=many) == (
        "pypoolparty: submitted 200 workers (7_0, 7_1, 7_2, 7_3, ..., 7_199)"
    )


@pytest.mark.parametrize(
    "state, scheduler_state, reason, said",
    [
        ("running", "R", "", "worker 5 running"),
        ("pending", "PD", "Priority", "worker 5 pending PD (Priority)"),
        ("pending", "PENDING", "Resources", "worker 5 pending (Resources)"),
        ("held", "Eqw", "", "worker 5 held Eqw"),
        ("ended", "FAILED", "exit code 3", "worker 5 ended FAILED (exit code 3)"),
        ("unknown", "", "", "worker 5 unknown to the scheduler"),
    ],
)
def test_a_worker_state_says_the_state_and_the_schedulers_words(state, scheduler_state, reason, said):
    text = line("worker_state", worker="5", state=state, scheduler_state=scheduler_state, reason=reason)
    assert text == "pypoolparty: " + said


def test_a_command_that_went_well_says_nothing_a_slow_or_retried_one_does():
    ok = dict(argv=["squeue", "--jobs=1"], returncode=0, seconds=0.05, attempt=1)
    assert line("command", **ok) is None
    assert line("command", **dict(ok, seconds=12.34)) == "pypoolparty: squeue took 12.3 s"
    assert line("command", **dict(ok, argv=["scontrol", "show", "config"], attempt=3)) == (
        "pypoolparty: scontrol show took 0.1 s (attempt 3)"
    )


def test_a_failed_command_says_its_exit_code_error_and_whether_it_is_retried():
    fields = dict(argv=["/usr/bin/sbatch", "--array=0-1"], returncode=1, attempt=1)
    assert line("command_failed", stderr="sbatch: error: Socket timed out\n", transient=True, **fields) == (
        "pypoolparty: sbatch failed (exit code 1): sbatch: error: Socket timed out; retrying"
    )
    assert line("command_failed", stderr="", transient=False, **dict(fields, returncode=None)) == (
        "pypoolparty: sbatch failed; not retried"
    )
    assert line("command_missing", argv=["qsub", "-t", "1-2"], error="No such file: 'qsub'") == (
        "pypoolparty: qsub not found: No such file: 'qsub'"
    )


def test_chunks_done_are_told_in_tenths_of_the_map():
    lines = Lines("map-000002")
    lines.line(dict(event="map", num_jobs=40, num_chunks=20))
    said = [lines.line(dict(event="chunk_done", chunk=c, worker="1", failed=False)) for c in range(20)]
    told = [s for s in said if s is not None]
    assert told == ["pypoolparty: map-000002: {:d} of 20 chunks done".format(n) for n in range(2, 21, 2)]
    # An adopted map's log has no map event: its size is not known.
    assert Lines().line(dict(event="chunk_done", chunk=0)) is None


def test_a_lost_chunk_says_why_and_what_comes_next():
    lost = dict(chunk=5, worker="123", scheduler_state="FAILED", reason="exit code 3", max_num_resubmissions=3)
    assert line("chunk_lost", attempt=1, **lost) == (
        "pypoolparty: chunk 5 lost: worker 123 ended FAILED (exit code 3); "
        "running it again (resubmission 1 of 3)"
    )
    assert line("chunk_lost", attempt=4, **lost) == (
        "pypoolparty: chunk 5 lost: worker 123 ended FAILED (exit code 3); "
        "lost 4 times, more than max_num_resubmissions=3"
    )
    gone = dict(lost, scheduler_state="", reason="")
    del gone["max_num_resubmissions"]  # a log of an older version
    assert line("chunk_lost", attempt=1, **gone) == (
        "pypoolparty: chunk 5 lost: worker 123 ended (unknown to the scheduler); running it again"
    )


def test_a_job_that_raised_says_its_exception_and_worker():
    text = line("job_raised", "map-000001", job=7, worker="9", exception="ValueError('x')", exception_type="ValueError")
    assert text == "pypoolparty: map-000001: job 7 raised ValueError('x') on worker 9"


def test_cancel_leaves_and_holds_say_which_workers_and_why():
    assert line("cancel", workers=["1", "2"], why="its map ended") == (
        "pypoolparty: cancelling 2 workers (1, 2): its map ended"
    )
    assert line("worker_leaves", worker="1", why="idle") == "pypoolparty: worker 1 leaves: idle"
    assert line("held_cancelled", worker="3", scheduler_state="Eqw", reason="") == (
        "pypoolparty: worker 3 held Eqw: cancelled, another takes its place"
    )


def test_the_end_of_a_map_says_how_long_it_ran_and_why_it_ended():
    assert line("completed", "map-000001", num_jobs=10, seconds=4.213) == "pypoolparty: map-000001: done in 4.2 s"
    assert line("completed", num_jobs=10) == "pypoolparty: done"
    error = "JobsLostError('pypoolparty: 2 jobs lost.\\n\\nworker 1 ended FAILED')"
    assert line("failed", work_dir="/w", error="JobsLostError('lost\nin detail')", seconds=61.0) == (
        "pypoolparty: failed after 61.0 s: JobsLostError('lost ..."
    )
    assert line("failed", work_dir="/w", error=error) == (
        "pypoolparty: failed: JobsLostError('pypoolparty: 2 jobs lost. ..."
    )
    assert line("cancelled", work_dir="/w", reason="KeyboardInterrupt", seconds=2.0) == (
        "pypoolparty: cancelled after 2.0 s: KeyboardInterrupt"
    )
    assert line("work_dir_kept", path="/w/map-1") == "pypoolparty: kept its folder /w/map-1"


def test_a_long_error_is_cut():
    text = line("failed", error="x" * 1000)
    assert text.endswith(" ...") and len(text) < 400


def test_adoptions_and_unproductive_submissions():
    assert line("workers_adopted", workers=["8"]) == "pypoolparty: watching a dead driver's worker 8"
    assert line("adopted", pool_dir="/p", workers=["8", "9"]) == (
        "pypoolparty: adopted from a dead driver, with its 2 workers (8, 9)"
    )
    assert line("submission_unproductive", submission=2, in_a_row=3) == (
        "pypoolparty: submission 2 ended without any result (3 in a row)"
    )


def test_other_events_print_their_fields():
    assert line("cancel_failed", workers=["1", "2"], error="scancel: error") == (
        "pypoolparty: cancel failed: workers=1, 2, error=scancel: error"
    )
    assert line("default_processes", cpus=8, replayed=True) == "pypoolparty: default processes: cpus=8"
    assert line("max_array_size", value=1001) == "pypoolparty: max array size: 1001"


def test_a_map_logs_lines_carry_its_label_the_pools_none():
    assert event_lines.label_of("/w/pypoolparty-20240101-x/map-000012-ab12cd/log.jsonl") == "map-000012"
    assert event_lines.label_of("/w/pypoolparty-20240101-x/log.jsonl") == ""
    assert event_lines.label_of(None) == ""


# ---------------------------------------------------------------- a real run
def stderr_lines(capsys):
    return [s for s in capsys.readouterr().err.splitlines() if s.strip()]


def test_a_verbose_map_prints_human_lines_once_each_and_logs_json(tmp_path, capsys):
    with pypoolparty.processes.Pool(2, work_dir=str(tmp_path), verbose=True, keep_work_dir=True) as pool:
        assert pool.map(square, range(6), chunksize=1) == [x * x for x in range(6)]
        log_path = pool._pool_dir.path
    lines = stderr_lines(capsys)
    assert lines and all(s.startswith("pypoolparty: ") for s in lines), lines
    assert not any(s.lstrip().startswith("{") for s in lines), lines
    assert "pypoolparty: map-000001: 6 jobs in 6 chunks" in lines
    submitted = [s for s in lines if "submitted 2 workers (" in s]
    assert len(submitted) == 1, lines  # the pool's log and the map's have it; printed once
    assert submitted[0].startswith("pypoolparty: submitted ")  # the pool's line: no map label
    assert any(s.startswith("pypoolparty: map-000001: done in ") for s in lines), lines
    assert "pypoolparty: map-000001: 6 of 6 chunks done" in lines
    # The files keep the JSON events as before.
    maps = [p for p in (tmp_path / log_path).iterdir() if p.name.startswith("map-")]
    events = [e["event"] for e in event_log.read(str(maps[0] / "log.jsonl"))]
    assert events[0] == "map" and "completed" in events and events.count("chunk_done") == 6
    with open(maps[0] / "log.jsonl") as f:
        assert all(json.loads(json.loads(row)["m"]) for row in f)


def test_a_verbose_map_that_fails_says_which_job_raised_and_how_it_ended(tmp_path, capsys):
    with pypoolparty.processes.Pool(2, work_dir=str(tmp_path), verbose=True) as pool:
        with pytest.raises(ValueError):
            pool.map(fail_on, range(6), chunksize=1)
    lines = stderr_lines(capsys)
    assert "pypoolparty: map-000001: job 3 raised ValueError('bad job', 3) on worker " in "\n".join(lines)
    failed = [s for s in lines if s.startswith("pypoolparty: map-000001: failed after ")]
    assert len(failed) == 1 and failed[0].endswith("ValueError('bad job', 3)"), lines


def test_a_quiet_pool_prints_nothing(tmp_path, capsys):
    with pypoolparty.processes.Pool(2, work_dir=str(tmp_path)) as pool:
        assert pool.map(square, range(4)) == [0, 1, 4, 9]
    assert capsys.readouterr().err == ""
