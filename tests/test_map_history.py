"""
A map's log read back: each event kind lands in its typed record, failures
group by cause with the largest group first, and the end is the log's.
"""
from pypoolparty.core import map_history
from pypoolparty.core.event_log import EventLog
from pypoolparty.core.map_history import MapEnd


def write_log(path, events):
    log = EventLog(str(path))
    for name, fields in events:
        log.event(name, **fields)
    log.close()


def test_a_log_read_back_into_records(tmp_path):
    path = tmp_path / "log.jsonl"
    write_log(
        path,
        [
            ("map", dict(num_jobs=6, num_chunks=3, scheduler="slurm")),
            ("submitted", dict(submission=0, workers=["11_0", "11_1"])),
            ("worker_state", dict(worker="11_0", state="running", scheduler_state="RUNNING", reason="")),
            ("command", dict(argv=["squeue", "-j", "11"], returncode=0, seconds=0.01, attempt=1)),
            ("chunk_done", dict(chunk=0, worker="11_0", host="n1", started=100.0, ended=101.5, num_jobs=2, failed=False)),
            ("chunk_lost", dict(chunk=1, worker="11_1", attempt=1, scheduler_state="NODE_FAIL", reason="")),
            ("submitted", dict(submission=1, workers=["12_0"])),
            ("chunk_done", dict(chunk=1, worker="12_0", host="n2", started=103.0, ended=104.0, num_jobs=2, failed=True)),
            ("job_raised", dict(job=3, worker="12_0", exception="ValueError('x')", exception_type="ValueError", traceback="Traceback ...\nValueError: x\n")),
            ("job_raised", dict(job=2, worker="12_0", exception="ValueError('y')", exception_type="ValueError")),
            ("failed", dict(work_dir="w", error="ValueError('x')")),
        ],
    )
    h = map_history.read(str(path))
    assert (h.num_jobs, h.num_chunks, h.scheduler) == (6, 3, "slurm")
    assert [r.chunk for r in h.runs] == [0, 1] and h.runs[0].host == "n1"
    assert h.jobs_done == 4
    assert h.workers == ["11_0", "11_1", "12_0"]
    assert [s.index for s in h.submissions] == [0, 1]
    assert h.last_states()["11_0"].scheduler_state == "RUNNING"
    assert h.calls[0].argv == ("squeue", "-j", "11")
    assert h.end is MapEnd.FAILED and h.error == "ValueError('x')" and h.ended >= h.started
    groups = h.failures_by_cause()
    assert [(g.cause, g.count) for g in groups] == [("ValueError", 2), ("lost: NODE_FAIL", 1)]
    assert "ValueError: x" in groups[0].example.traceback  # the example with a traceback
    assert groups[1].example.chunk == 1


def test_a_log_without_an_end_is_running(tmp_path):
    path = tmp_path / "log.jsonl"
    write_log(path, [("map", dict(num_jobs=1, num_chunks=1))])
    h = map_history.read(str(path))
    assert h.end is MapEnd.RUNNING and h.ended is None and h.failures_by_cause() == []
