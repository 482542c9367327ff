"""
The report page of a map (``pypoolparty.core.report_page``).

A real map on detached local processes loses a worker (its job ends it with
``os._exit`` once) and then has a job that raises: the map fails, its error
names the report, and the report shows the timeline (a row per worker, the
loss, the submissions, the failed chunk), the failures by cause with the
remote traceback and the lost worker's output, and loads nothing from
elsewhere. On the fake scheduler: the scheduler calls, failed ones marked.
Maps that complete, are cancelled, or whose failures do not end them
(imap) get no report; a report that cannot be written hides no error; a
page for a big map stays small.
"""
import html
import os
import re
import time

import pytest

import pypoolparty.processes
from fake_jobs import Gate, map_dirs, wait_until
from pypoolparty.core import event_log, map_history, report_charts, report_page, workdir
from pypoolparty.testing import fake
from pypoolparty.testing.failing_jobs import lose_then_raise_in

pytestmark = pytest.mark.timeout(120)

#: Text of the exception the failing job raises: it must arrive escaped.
BAD = "bad <job> & five"


class FailedMap:
    """A processes-pool map that lost a worker, then failed; its report."""

    def __init__(self, tmp):
        folder = tmp / "marks"
        folder.mkdir()
        pool = pypoolparty.processes.Pool(2, work_dir=str(tmp / "work"))
        try:
            with pytest.raises(ValueError) as info:
                pool.map(lose_then_raise_in(str(folder), message=BAD), range(8), chunksize=1)
        finally:
            pool.terminate()
        self.error = info.value
        (self.map_dir,) = map_dirs(tmp / "work")
        self.history = map_history.read(os.path.join(self.map_dir, "log.jsonl"))
        self.report = os.path.join(self.map_dir, workdir.REPORT)
        with open(self.report, encoding="utf-8") as f:
            self.page = f.read()


@pytest.fixture(scope="module")
def failed(tmp_path_factory):
    return FailedMap(tmp_path_factory.mktemp("report"))


def element(page, tag, element_id):
    """The HTML of the element ``<tag id="element_id">`` (not nested in its like)."""
    pattern = r'<{0}\b[^>]*\bid="{1}"[^>]*>.*?</{0}>'.format(tag, re.escape(element_id))
    m = re.search(pattern, page, re.S)
    assert m, "no <{:s} id={:s}> in the page".format(tag, element_id)
    return m.group(0)


def text_of(fragment):
    """The text of an HTML fragment, tags left out, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def marks(svg, gid):
    """How many marks (markers) the SVG group ``gid`` draws."""
    m = re.search(r'<g id="{:s}">(.*?)</g>\s*</g>'.format(re.escape(gid)), svg, re.S)
    return 0 if m is None else m.group(1).count("<use ")


def row_labels(svg):
    """The timeline's row labels, top to bottom."""
    ticks = re.findall(r'<g id="timeline-ytick_\d+">.*?<text[^>]*>(.*?)</text>', svg, re.S)
    return [html.unescape(t) for t in ticks]


def test_a_failed_map_names_its_report_which_exists(failed):
    cause = str(failed.error.__cause__)
    assert "report: " + failed.report in cause
    assert os.path.isfile(failed.report)
    events = [e["event"] for e in event_log.read(os.path.join(failed.map_dir, "log.jsonl"))]
    assert "report_written" in events and "report_failed" not in events


def test_the_timeline_has_a_row_per_worker_and_marks_the_loss_and_the_submissions(failed):
    h = failed.history
    assert len(h.losses) == 1 and len(h.workers) >= 3  # two, and one for the lost chunk
    svg = element(failed.page, "figure", "timeline")
    assert "<svg" in svg
    hosts = {r.worker: r.host for r in h.runs}
    for i, worker in enumerate(h.workers):  # its chunks' bars on its row
        bars = re.search(r'<g id="timeline-row-{:d}">(.*?)</g>'.format(i), svg, re.S)
        assert (bars is not None and "<path" in bars.group(1)) == (worker in hosts)
    assert row_labels(svg) == [report_charts.label(w, hosts.get(w, "")) for w in h.workers]
    assert marks(svg, "timeline-losses") == 1
    later = sum(len(s.workers) for s in h.submissions[1:])
    assert marks(svg, "timeline-submissions") == 2
    assert marks(svg, "timeline-later-submissions") == later >= 1
    assert 'id="timeline-failed"' in svg
    assert element(failed.page, "figure", "throughput").count("<svg") == 1


def test_failures_are_grouped_with_the_traceback_and_the_lost_workers_output(failed):
    table = text_of(element(failed.page, "table", "failures"))
    assert "ValueError" in table
    assert "raise ValueError(message, x)" in table  # the remote traceback's line
    assert "lost: FAILED" in table and "exit code 3" in table
    assert "job 1 ends its worker on purpose" in table  # the lost worker's output
    losses = text_of(element(failed.page, "table", "losses"))
    assert failed.history.losses[0].worker in losses
    summary = text_of(element(failed.page, "table", "summary"))
    assert "failed at" in summary and "processes@" in summary
    assert "This map made no scheduler calls" in text_of(failed.page)


def test_the_page_loads_nothing_from_elsewhere(failed):
    page = failed.page
    for word in ("http:", "https:", "file:", "<script", "<link", "<img", "<iframe", "@import"):
        assert word not in page.lower(), word
    references = re.findall(r'\b(?:src|href|srcset|action|data)\s*=\s*"([^"]*)"', page)
    assert references and all(r.startswith("#") for r in references)
    assert all(u.startswith("url(#") for u in re.findall(r"url\([^)]*\)", page))
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "an id used twice"


def test_text_from_the_logs_is_escaped(failed):
    assert "<job>" not in failed.page
    assert html.escape(BAD) in failed.page


def test_scheduler_calls_are_listed_and_failed_ones_marked(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path / "work") as pool:
        res = pool.map_async(gate.job(which=[0, 1, 2], fail=[3]), range(4), chunksize=1)
        gate.wait_started(2)
        pool.scheduler.fail_next("states", times=2, transient=True)
        assert wait_until(lambda: pool.scheduler.failures_left("states") == 0)
        gate.open()
        with pytest.raises(ValueError):
            res.get(timeout=30)
    (map_dir,) = map_dirs(tmp_path / "work")
    with open(report_page.default_path(map_dir), encoding="utf-8") as f:
        page = f.read()
    calls = element(page, "table", "scheduler-calls")
    failed_rows = re.findall(r'<tr class="failed">(.*?)</tr>', calls, re.S)
    assert len(failed_rows) == 2
    assert all("fake-states" in r and "retried" in r and "busy" in r for r in failed_rows)
    by_program = text_of(element(page, "table", "scheduler-calls-by-program"))
    assert "fake-submit" in by_program and "fake-states" in by_program


def test_a_running_map_gets_the_report_of_what_is_there_and_a_completed_one_none(tmp_path):
    gate = Gate(tmp_path / "gate")
    with pypoolparty.processes.Pool(2, work_dir=str(tmp_path / "work"), keep_work_dir=True) as pool:
        res = pool.map_async(gate.job(which=[3]), range(6), chunksize=1)
        gate.wait_started(1)
        (map_dir,) = map_dirs(tmp_path / "work")
        path = report_page.write(map_dir, str(tmp_path / "now.html"))
        with open(path, encoding="utf-8") as f:
            page = f.read()
        gate.open()
        assert res.get(timeout=30) == [x * x for x in range(6)]
    assert "running, or its driver died" in text_of(element(page, "table", "summary"))
    assert len(row_labels(element(page, "figure", "timeline"))) >= 1
    assert not os.path.exists(report_page.default_path(map_dir))


def test_no_report_for_a_cancelled_map_nor_for_imap_failures(tmp_path):
    gate = Gate(tmp_path / "gate")
    with pypoolparty.processes.Pool(2, work_dir=str(tmp_path / "work"), keep_work_dir=True) as pool:
        results = pool.imap(gate.job(which=[], fail=[1]), range(3))
        got = []
        for _ in range(3):
            try:
                got.append(next(results))
            except ValueError:
                got.append("raised")
        assert got == [0, "raised", 4]
        res = pool.map_async(gate.job(), range(4), chunksize=1)
        gate.wait_started(1)
        pool.terminate()
        with pytest.raises(Exception):
            res.get(timeout=30)
    dirs = map_dirs(tmp_path / "work")
    ends = [map_history.read(os.path.join(d, "log.jsonl")).end for d in dirs]
    assert ends == [map_history.MapEnd.COMPLETED, map_history.MapEnd.CANCELLED]
    for map_dir in dirs:
        assert not os.path.exists(report_page.default_path(map_dir))


def test_a_report_that_cannot_be_written_hides_no_error(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("no room for the report")

    monkeypatch.setattr(report_page, "write", broken)
    with pypoolparty.processes.Pool(2, work_dir=str(tmp_path / "work")) as pool:
        with pytest.raises(ValueError, match="bad job"):
            pool.map(Gate(tmp_path / "gate").job(which=[], fail=[2]), range(4))
    (map_dir,) = map_dirs(tmp_path / "work")
    events = event_log.read(os.path.join(map_dir, "log.jsonl"))
    failed = [e for e in events if e["event"] == "report_failed"]
    assert len(failed) == 1 and "no room for the report" in failed[0]["error"]


def test_a_big_map_makes_a_small_page(tmp_path):
    """300 workers, 6000 chunks, 40 losses, 3000 polls: a page of bounded
    size that says what it left out."""
    map_dir = tmp_path / "map-000001-big"
    map_dir.mkdir()
    log = event_log.EventLog(str(map_dir / "log.jsonl"))
    now = time.time()
    workers = ["{:d}_{:d}".format(4242, i) for i in range(300)]
    log.event("map", num_jobs=60000, num_chunks=6000, scheduler="slurm", processes=300)
    log.event("submitted", submission=0, workers=workers)
    for chunk in range(6000):
        w = workers[chunk % 300]
        t = now + chunk // 300
        log.event("chunk_done", chunk=chunk, worker=w, host="node7", started=t, ended=t + 0.9,
                  num_jobs=10, failed=chunk % 997 == 0)
    for i in range(40):
        log.warning(
            "chunk_lost", chunk=i, worker=workers[-1 - i], attempt=1,
            scheduler_state="NODE_FAIL", reason="",
        )
    for i in range(3000):
        log.event("command", argv=["squeue", "--jobs=4242"], returncode=0, seconds=0.05, attempt=1)
    log.close()
    path = report_page.write(str(map_dir))
    size = os.path.getsize(path)
    with open(path, encoding="utf-8") as f:
        page = f.read()
    assert size < 1_500_000
    assert len(row_labels(element(page, "figure", "timeline"))) == report_charts.MAX_ROWS
    assert "Showing {:d} of 300 workers".format(report_charts.MAX_ROWS) in page
    assert "calls that worked left out" in page
    # Every worker with a loss or a failed chunk has its row.
    shown = set(row_labels(element(page, "figure", "timeline")))
    lost = {workers[-1 - i] for i in range(40)}
    troubled = lost | {workers[c % 300] for c in range(0, 6000, 997)}
    assert {report_charts.label(w, "node7") for w in troubled} <= shown
    # Where bars are too many, neighbours merge until they fit.
    plan = report_charts.plan_timeline(map_history.read(str(map_dir / "log.jsonl")), max_bars=300)
    assert 0 < plan.num_bars <= 300 and plan.merged_below > 0


def test_bars_closer_than_the_gap_merge():
    spans = [(0, 1), (1.05, 2), (5, 6)]
    assert report_charts.merge(spans, gap=0.1, min_width=0) == [(0, 2), (5, 6)]
    assert report_charts.merge(spans, gap=0.0, min_width=0) == spans
    assert report_charts.merge([(3, 3)], gap=0.1, min_width=0.5) == [(3, 3.5)]
