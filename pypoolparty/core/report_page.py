"""
A map's report: one self-contained HTML page, written from its log.

What a person wants to see of a map that failed, or of one still running:
how far it got and how it ended, a timeline of its workers and the chunks
they ran (:mod:`.report_charts`), its throughput, its failures grouped by
cause with an example's remote traceback or the tail of the lost worker's
output, its workers, and the scheduler calls it made (:mod:`.report_tables`).

The page loads nothing: no script, no style sheet, no font, no image from
elsewhere (clusters are offline), so it can be copied anywhere and opened
in any browser. The charts are inline SVG; every text from the logs is
escaped. It reads the map's log (:mod:`.map_history`) and, in the pool's
folder, the pool's log and the workers' output; it works while the driver
runs, and after it died. A map pypoolparty ends with a failure gets its
report at once (:mod:`.map_run`); ``pypoolparty report MAP_DIR`` writes one
on request.
"""
from __future__ import annotations

import dataclasses
import datetime
import html
import importlib.util
import os
import typing

from .. import version
from . import map_history, report_charts, report_tables, work_listing
from .event_lines import duration
from .map_history import MapEnd, MapHistory
from .pooldir import PoolDir
from .workdir import LOG, WorkDir, write_atomic

STYLE = """
body { font: 14px/1.45 "DejaVu Sans", Verdana, sans-serif; color: #222;
       max-width: 1280px; margin: 1em auto; padding: 0 1em; }
h1 { font-size: 22px; margin: 0.2em 0; } h2 { font-size: 18px; margin: 1.4em 0 0.4em; }
table { border-collapse: collapse; font-size: 13px; margin: 0.4em 0; }
th, td { text-align: left; vertical-align: top; padding: 3px 9px; border-bottom: 1px solid #ddd; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.facts th { background: none; width: 11em; }
code, pre, .mono { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; }
pre { background: #f6f6f6; padding: 0.5em; margin: 0.3em 0; max-height: 22em; overflow: auto;
      white-space: pre-wrap; word-break: break-word; }
tr.failed td { background: #fde8e8; }
.outcome-failed { color: #b00000; font-weight: bold; }
.outcome-completed { color: #207020; font-weight: bold; }
.outcome-running, .outcome-cancelled { color: #805000; font-weight: bold; }
.note { color: #666; font-size: 13px; }
figure { margin: 0.5em 0; } svg.chart { width: 100%; height: auto; display: block; }
"""


def default_path(map_dir: str) -> str:
    """Where :func:`write` puts a map's report unless told otherwise."""
    return WorkDir(map_dir).report_path


def write(map_dir: str, path: typing.Optional[str] = None) -> str:
    """Write the report of the map in ``map_dir`` as one HTML file.

    Parameters
    ----------
    map_dir : str
        The map's folder (with its ``log.jsonl``), in its pool's folder.
    path : str, optional
        Where to write it; default ``<map_dir>/report.html``.

    Returns
    -------
    str
        The report's path.

    Raises
    ------
    FileNotFoundError
        If ``map_dir`` has no log.
    """
    work_dir = WorkDir(map_dir)
    history = map_history.read(work_dir.log_path, work_dir.path)
    page = render(history, PoolFacts.read(work_dir.path))
    path = os.path.abspath(path or work_dir.report_path)
    write_atomic(path, page.encode("utf-8"))
    return path


@dataclasses.dataclass
class PoolFacts:
    """What the pool's folder adds to a map's log: who drove it, and what
    its workers wrote."""

    pool_dirs: typing.List[PoolDir]
    driver: str = ""

    @classmethod
    def read(cls, map_dir: str) -> "PoolFacts":
        # An adopted map is linked into the adopting pool's folder: its
        # workers' output is in either.
        here, linked = map_dir, os.path.realpath(map_dir)
        parents = dict.fromkeys(os.path.dirname(p) for p in (here, linked))
        facts = cls([PoolDir(p) for p in parents])
        driver = work_listing.driver_of(facts.pool_dirs[0])
        if driver is not None:
            facts.driver = "{} (pid {:d})".format(driver.host, driver.pid)
        return facts

    def output_tail(self, worker: str) -> str:
        """The end of the worker's stdout and stderr, or ''."""
        for pool_dir in self.pool_dirs:
            tail = pool_dir.tail_of_worker_log(worker)
            if tail:
                return tail
        return ""


def render(history: MapHistory, pool: PoolFacts) -> str:
    """The page of ``history``."""
    name = os.path.basename(history.path)
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<title>{:s}</title>".format(html.escape("pypoolparty report: " + name)),
        "<style>{:s}</style></head><body>".format(STYLE),
        "<h1>pypoolparty map report: {:s}</h1>".format(report_tables.mono(name)),
        _summary(history, pool),
        _charts(history),
        report_tables.failures(history, pool.output_tail),
        report_tables.losses(history),
        report_tables.workers(history),
        report_tables.scheduler_calls(history),
        "<p class=\"note\">Written by pypoolparty {:s} at {:s} from {:s}.</p>".format(
            html.escape(version.__version__),
            html.escape(clock(datetime.datetime.now().timestamp())),
            html.escape(os.path.join(history.path, LOG)),
        ),
        "</body></html>\n",
    ]
    return "\n".join(parts)


def clock(epoch: float) -> str:
    """A moment in local time, to the second."""
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _outcome(h: MapHistory) -> str:
    if h.end is MapEnd.RUNNING:
        return (
            "running, or its driver died: no end in the log yet (last event {:s}, {:s} after "
            "the start)".format(clock(h.last_event), duration(h.last_event - h.started))
        )
    return "{:s} at {:s}, after {:s}".format(
        h.end.value, clock(h.ended), duration(h.ended - h.started)
    )


def _summary(h: MapHistory, pool: PoolFacts) -> str:
    esc = html.escape
    at_once = "" if h.processes is None else " (at most {} at once)".format(h.processes)
    rows = [
        ("Outcome", '<span class="outcome-{:s}">{:s}</span>'.format(h.end.value, esc(_outcome(h)))),
        ("Jobs done", "{:d} of {:d} ({:d} chunks)".format(h.jobs_done, h.num_jobs, h.num_chunks)),
        ("Map", report_tables.mono(h.path)),
        ("Scheduler", esc(h.scheduler)),
        ("Function", "<br>".join(report_tables.mono(f) for f in h.funcs)),
        ("Started", esc(clock(h.started)) if h.started else "unknown: the log has no map event"),
        (
            "Workers",
            esc("{:d} in {:d} submissions{:s}".format(len(h.workers), len(h.submissions), at_once)),
        ),
        (
            "Failures",
            "jobs that raised: {:d}; chunks lost: {:d}".format(len(h.failures), len(h.losses)),
        ),
        (
            "Scheduler calls",
            "{:d} ({:d} failed)".format(len(h.calls), sum(1 for c in h.calls if c.failed)),
        ),
        ("Driver", esc(pool.driver)),
    ]
    if h.error:
        rows.append(("Error", "<pre>{:s}</pre>".format(esc(h.error))))
    body = "".join("<tr><th>{:s}</th><td>{:s}</td></tr>".format(k, v) for k, v in rows if v)
    return '<table class="facts" id="summary">{:s}</table>'.format(body)


#: What the timeline shows, under it.
TIMELINE_CAPTION = (
    "One row per worker, one bar per chunk it ran (from the worker's clock); the marks show "
    "when the driver submitted workers and noticed lost chunks."
)


def _charts(h: MapHistory) -> str:
    if importlib.util.find_spec("matplotlib") is None:
        return (
            '<h2>Timeline</h2><p class="note" id="timeline">The charts need matplotlib, '
            "which is not installed here (pip install matplotlib).</p>"
        )
    plan = report_charts.plan_timeline(h)
    caption = [TIMELINE_CAPTION]
    if plan.hidden:
        caption.append(
            "Showing {:d} of {:d} workers (those with a lost or failed chunk first).".format(
                len(plan.rows), len(plan.rows) + plan.hidden
            )
        )
    if plan.merged_below:
        caption.append("Bars less than {:.3g} s apart are drawn as one.".format(plan.merged_below))
    return "\n".join(
        [
            "<h2>Timeline</h2>",
            '<figure id="timeline">{:s}<figcaption class="note">{:s}</figcaption></figure>'.format(
                report_charts.timeline_svg(h, plan), html.escape(" ".join(caption))
            ),
            "<h2>Throughput</h2>",
            '<figure id="throughput">{:s}</figure>'.format(report_charts.throughput_svg(h, plan)),
        ]
    )
