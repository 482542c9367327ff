"""
The report page's charts: a map's timeline and throughput as inline SVG.

Drawn with matplotlib's object API (:class:`matplotlib.figure.Figure`, no
pyplot, no GUI backend), imported when a chart is drawn, so that the pool
never pays for it. Each chart is cut to what a page can carry: at most
:data:`MAX_ROWS` workers (those with losses or failed chunks first), and
bars closer than a fraction of a pixel merged, with fewer than
:data:`MAX_BARS` in all. :class:`TimelinePlan` says what was left out, for
the page to tell.

Every ``id`` in a chart's SVG starts with the chart's name (``timeline-``,
``throughput-``), so that two charts on one page share none; the timeline's
parts are ``timeline-row-<i>`` (the bars of the i-th row from the top),
``timeline-failed`` (failed chunks), ``timeline-losses``,
``timeline-submissions``, ``timeline-later-submissions`` and
``timeline-end``.
"""
from __future__ import annotations

import dataclasses
import io
import math
import re
import typing

from .map_history import MapEnd, MapHistory

#: Rows (workers) a timeline shows at most.
MAX_ROWS = 50
#: Bars a timeline draws at most; closer ones are merged until it fits.
MAX_BARS = 4000
#: Inches: the charts' width, a timeline row's height, a label character.
WIDTH = 11.0
ROW_HEIGHT = 0.2
CHAR_WIDTH = 0.062

OK_COLOUR = "#4c72b0"
FAILED_COLOUR = "#d62728"
ALIVE_COLOUR = "#c7c7c7"
SUBMITTED_COLOUR = "#7f7f7f"
LATER_SUBMITTED_COLOUR = "#ff9f1c"
LOSS_COLOUR = "#000000"
END_COLOURS = {
    MapEnd.COMPLETED: "#2ca02c",
    MapEnd.FAILED: FAILED_COLOUR,
    MapEnd.CANCELLED: "#7f7f7f",
    MapEnd.RUNNING: "#7f7f7f",
}

Span = typing.Tuple[float, float]


@dataclasses.dataclass
class TimelinePlan:
    """What the timeline draws, in seconds since the map started."""

    rows: typing.List[str]
    """Workers drawn, top to bottom."""
    hidden: int
    """Workers left out (more than :data:`MAX_ROWS`)."""
    span: Span
    """The time axis' range."""
    ok: typing.Dict[str, typing.List[Span]]
    failed: typing.Dict[str, typing.List[Span]]
    alive: typing.Dict[str, Span]
    """From a worker's submission to its end, as the scheduler's polls saw it."""
    losses: typing.List[typing.Tuple[float, str]]
    submissions: typing.List[typing.Tuple[float, str, bool]]
    """(time, worker, whether it was the map's first submission)."""
    merged_below: float
    """Bars less than this many seconds apart were merged (0: none)."""
    labels: typing.List[str]

    @property
    def num_bars(self) -> int:
        return sum(len(v) for v in self.ok.values()) + sum(len(v) for v in self.failed.values())


def pick_rows(history: MapHistory, max_rows: int) -> typing.List[str]:
    """The workers to draw: all if they fit, else those with a loss or a
    failed chunk first, the others in order of appearance; in order of
    appearance."""
    workers = history.workers
    if len(workers) <= max_rows:
        return workers
    troubled = {x.worker for x in history.losses} | {r.worker for r in history.runs if r.failed}
    first = [w for w in workers if w in troubled][:max_rows]
    others = [w for w in workers if w not in troubled][: max_rows - len(first)]
    chosen = set(first) | set(others)
    return [w for w in workers if w in chosen]


def merge(spans: typing.Iterable[Span], gap: float, min_width: float) -> typing.List[Span]:
    """Spans at least ``min_width`` wide; those that overlap or are less
    than ``gap`` apart merged."""
    out: typing.List[typing.List[float]] = []
    for t0, t1 in sorted(spans):
        t1 = max(t1, t0 + min_width)
        if out and t0 - out[-1][1] < gap:
            out[-1][1] = max(out[-1][1], t1)
        else:
            out.append([t0, t1])
    return [(a, b) for a, b in out]


def label(worker: str, host: str, width: int = 30) -> str:
    """A row's label: the worker's id and host, long ones cut in the middle."""
    text = worker + (" @" + host if host and host not in worker else "")
    if len(text) <= width:
        return text
    half = (width - 1) // 2
    return text[:half] + "\u2026" + text[-half:]


def plan_timeline(
    history: MapHistory, max_rows: int = MAX_ROWS, max_bars: int = MAX_BARS
) -> TimelinePlan:
    """Choose the rows and bars of ``history``'s timeline."""
    t0 = history.started
    rows = pick_rows(history, max_rows)
    shown = set(rows)
    ends = [r.ended - t0 for r in history.runs] + [history.last_event - t0]
    starts = [r.started - t0 for r in history.runs] + [0.0]
    lo, hi = min(starts), max(ends)
    width = max(hi - lo, 0.1) * 1.02
    span = (lo, lo + width)
    hosts = {r.worker: r.host for r in history.runs}
    ok: typing.Dict[str, typing.List[Span]] = {w: [] for w in rows}
    failed: typing.Dict[str, typing.List[Span]] = {w: [] for w in rows}
    for run in history.runs:
        if run.worker in shown:
            (failed if run.failed else ok)[run.worker].append((run.started - t0, run.ended - t0))
    gap = 0.0
    while True:
        merged_ok = {w: merge(s, gap, width / 1500.0) for w, s in ok.items()}
        merged_failed = {w: merge(s, gap, width / 150.0) for w, s in failed.items()}
        count = sum(map(len, merged_ok.values())) + sum(map(len, merged_failed.values()))
        if count <= max_bars:
            break
        gap = gap * 4.0 if gap else width / 4000.0
    submitted: typing.Dict[str, float] = {}
    submissions = []
    for i, sub in enumerate(history.submissions):
        for w in sub.workers:
            submitted.setdefault(w, sub.time - t0)
            if w in shown:
                submissions.append((sub.time - t0, w, i == 0))
    ended = {
        s.worker: s.time - t0 for s in history.states if s.state == "ended" and s.worker in shown
    }
    alive = {
        w: (submitted[w], ended.get(w, span[1])) for w in rows if w in submitted
    }
    return TimelinePlan(
        rows=rows,
        hidden=len(history.workers) - len(rows),
        span=span,
        ok=merged_ok,
        failed=merged_failed,
        alive=alive,
        losses=[(loss.time - t0, loss.worker) for loss in history.losses if loss.worker in shown],
        submissions=submissions,
        merged_below=gap,
        labels=[label(w, hosts.get(w, "")) for w in rows],
    )


# ---------------------------------------------------------------- drawing
def _figure(height: float, label_chars: int, top: float):
    """A figure of the charts' width whose axes start and end where every
    chart's do; ``top`` inches above them (for a legend)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, height))
    fig.subplots_adjust(
        left=(0.25 + CHAR_WIDTH * max(label_chars, 12)) / WIDTH,
        right=1.0 - 0.85 / WIDTH,
        top=1.0 - top / height,
        bottom=0.5 / height,
    )
    return fig


def _svg(fig, name: str) -> str:
    """The figure as an SVG element for an HTML page: no XML prolog, no
    namespace URLs (an HTML parser needs none), every id prefixed with
    ``name``, the size left to the page."""
    import matplotlib

    out = io.StringIO()
    # Text as text (searchable, small), not as glyph paths: only savefig
    # reads this setting, and only while this block runs.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        no_metadata = dict.fromkeys(("Creator", "Date", "Format", "Type"))
        fig.savefig(out, format="svg", metadata=no_metadata)
    svg = out.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg, count=2)
    svg = re.sub(r'(\bid="|url\(#|href="#)', r"\g<1>" + name + "-", svg)
    root = '<svg id="{:s}-svg" class="chart"'.format(name)
    return re.sub(r'<svg width="[^"]*" height="[^"]*"', root, svg, count=1)


def _box(a: float, b: float, row: int) -> typing.List[Span]:
    """The corners of a bar from ``a`` to ``b`` on ``row``."""
    return [(a, row - 0.35), (a, row + 0.35), (b, row + 0.35), (b, row - 0.35)]


def _draw_rows(ax, plan: TimelinePlan) -> None:
    """Each row's line from submission to end and its bars; the failed
    chunks' bars in one collection over all rows."""
    from matplotlib.collections import PolyCollection

    bar_style = dict(edgecolors="white", lw=0.3)
    for i, w in enumerate(plan.rows):
        if w in plan.alive:
            alive = dict(color=ALIVE_COLOUR, lw=1.0, zorder=1, gid="alive-{:d}".format(i))
            ax.plot(plan.alive[w], [i, i], **alive)
        boxes = [_box(a, b, i) for a, b in plan.ok[w]]
        row = dict(facecolors=OK_COLOUR, zorder=2, gid="row-{:d}".format(i), **bar_style)
        ax.add_collection(PolyCollection(boxes, **row))
    failed = [_box(a, b, i) for i, w in enumerate(plan.rows) for a, b in plan.failed[w]]
    if failed:
        ax.add_collection(
            PolyCollection(failed, facecolors=FAILED_COLOUR, zorder=3, gid="failed", **bar_style)
        )


def _draw_marks(ax, plan: TimelinePlan) -> None:
    """Triangles where workers were submitted, crosses where chunks were lost."""
    row_of = {w: i for i, w in enumerate(plan.rows)}
    for first, colour, gid in (
        (True, SUBMITTED_COLOUR, "submissions"),
        (False, LATER_SUBMITTED_COLOUR, "later-submissions"),
    ):
        points = [(t, row_of[w]) for t, w, is_first in plan.submissions if is_first is first]
        if points:
            ax.plot(*zip(*points), ">", color=colour, ms=5, ls="none", zorder=4, gid=gid)
    if plan.losses:
        ax.plot(
            [t for t, _ in plan.losses], [row_of[w] for _, w in plan.losses], "X",
            color=LOSS_COLOUR, mec="white", mew=0.6, ms=8, ls="none", zorder=5, gid="losses",
        )


def _legend(ax, end_label: str, end_colour: str) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    def mark(marker, colour, text):
        return Line2D([], [], marker=marker, color=colour, ls="none", label=text)

    handles = [
        Patch(color=OK_COLOUR, label="chunk run"),
        Patch(color=FAILED_COLOUR, label="chunk with a failed job"),
        Line2D([], [], color=ALIVE_COLOUR, label="worker submitted \u2192 ended"),
        mark(">", SUBMITTED_COLOUR, "first submission"),
        mark(">", LATER_SUBMITTED_COLOUR, "later submission"),
        mark("X", LOSS_COLOUR, "chunk lost"),
    ]
    if end_label:
        handles.append(Line2D([], [], color=end_colour, ls="--", label=end_label))
    ax.legend(
        handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=len(handles),
        frameon=False, fontsize=7, handlelength=1.5, columnspacing=1.2, borderaxespad=0.2,
    )


def timeline_svg(history: MapHistory, plan: TimelinePlan) -> str:
    """The timeline: a row per worker, a bar per chunk it ran, marks for
    losses and submissions, a line at the map's end."""
    n = max(len(plan.rows), 1)
    label_chars = max((len(s) for s in plan.labels), default=0)
    fig = _figure(1.2 + ROW_HEIGHT * n, label_chars, top=0.45)
    ax = fig.add_subplot()
    _draw_rows(ax, plan)
    _draw_marks(ax, plan)
    _legend(ax, _draw_end(ax, history), END_COLOURS[history.end])
    ax.set_yticks(
        range(len(plan.rows)), labels=plan.labels, parse_math=False, fontsize=7, family="monospace"
    )
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlim(*plan.span)
    ax.set_xlabel("seconds since the map started (the workers' clocks)", fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", color="#eeeeee", lw=0.6)
    ax.set_axisbelow(True)
    return _svg(fig, "timeline")


def _draw_end(ax, history: MapHistory) -> str:
    """A dashed line where the map ended; its legend label (or '')."""
    if history.ended is None:
        return ""
    t = history.ended - history.started
    ax.axvline(t, color=END_COLOURS[history.end], ls="--", lw=1.0, zorder=6, gid="end")
    return "{:s} at {:.1f} s".format(history.end.value, t)


def bin_width(span: float, bins: int = 60) -> float:
    """A round bin width (1, 2 or 5 times a power of ten) for about ``bins`` bins."""
    raw = max(span / bins, 1e-3)
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw)


def throughput_svg(history: MapHistory, plan: TimelinePlan) -> str:
    """Jobs finished per second in time bins (bars) and in all (a line),
    on the timeline's time axis."""
    import numpy

    fig = _figure(2.4, max((len(s) for s in plan.labels), default=0), top=0.15)
    ax = fig.add_subplot()
    lo, hi = plan.span
    width = bin_width(hi - lo)
    edges = numpy.arange(math.floor(lo / width) * width, hi + width, width)
    ended = numpy.array([r.ended - history.started for r in history.runs])
    jobs = numpy.array([r.num_jobs for r in history.runs], dtype=float)
    counts, _ = numpy.histogram(ended, bins=edges, weights=jobs)
    ax.bar(edges[:-1], counts / width, width=width, align="edge", color=OK_COLOUR, lw=0)
    ax.set_ylabel("jobs finished / s", fontsize=8)
    total = ax.twinx()
    order = numpy.argsort(ended)
    total.step(
        numpy.concatenate([[lo], ended[order], [hi]]),
        numpy.concatenate([[0.0], numpy.cumsum(jobs[order]), [jobs.sum()]]),
        where="post", color="#333333", lw=1.2, gid="cumulative",
    )
    total.set_ylim(0, max(history.num_jobs, jobs.sum(), 1) * 1.05)
    total.set_ylabel("jobs finished in all", fontsize=8)
    for axes in (ax, total):
        axes.tick_params(labelsize=8)
    _draw_end(ax, history)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("seconds since the map started; bins of {:g} s".format(width), fontsize=8)
    ax.grid(axis="x", color="#eeeeee", lw=0.6)
    ax.set_axisbelow(True)
    return _svg(fig, "throughput")
