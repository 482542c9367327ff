"""
The report page's tables (:mod:`.report_page`): failures by cause, lost
chunks, workers, scheduler calls.

Each function takes a :class:`~.map_history.MapHistory` and returns an HTML
fragment with a heading; every text from a log is escaped. Long lists are
cut (the page says how much), so that a map of thousands of chunks, workers
or polls still makes a page a browser opens at once. Times are seconds
since the map started, by the driver's clock.
"""
from __future__ import annotations

import collections
import html
import os
import shlex
import typing

from .map_history import ChunkLoss, FailureGroup, JobFailure, MapHistory, SchedulerCall

MAX_FAILURE_GROUPS = 30
MAX_LOSS_ROWS = 200
MAX_WORKER_ROWS = 300
#: Scheduler calls shown at the start and at the end of a long list (all
#: failed ones are shown too).
CALL_ROWS_EACH_END = 100
#: Characters of a command line or a stderr shown.
MAX_COMMAND_CHARS = 300

FAILURE_COLUMNS = ("cause", "count", "last (s)", "example")
LOSS_COLUMNS = ("noticed (s)", "chunk", "attempt", "worker", "scheduler state", "reason")
WORKER_COLUMNS = (
    "worker", "host", "submitted (s)", "chunks", "jobs", "failed chunks", "lost chunks",
    "last state seen",
)
PROGRAM_COLUMNS = ("program", "calls", "failed", "seconds in all", "slowest (s)")
CALL_COLUMNS = ("time (s)", "command", "return code", "seconds", "attempt", "stderr")


class Raw(str):
    """HTML that a table cell takes as it is."""


Cell = typing.Union[str, int, float, Raw]


def table(
    table_id: str,
    head: typing.Sequence[str],
    rows: typing.Iterable[typing.Sequence[Cell]],
    row_classes: typing.Optional[typing.Sequence[str]] = None,
) -> str:
    """A table; cells are escaped unless :class:`Raw`; numbers right-aligned."""
    out = ['<table id="{:s}"><thead><tr>'.format(table_id)]
    out += ["<th>{:s}</th>".format(html.escape(h)) for h in head]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes else ""
        out.append('<tr class="{:s}">'.format(cls) if cls else "<tr>")
        for cell in row:
            if isinstance(cell, Raw):
                out.append("<td>{:s}</td>".format(cell))
            elif isinstance(cell, (int, float)):
                out.append('<td class="num">{:s}</td>'.format(html.escape(str(cell))))
            else:
                out.append("<td>{:s}</td>".format(html.escape(str(cell))))
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def section(title: str, *parts: str) -> str:
    return "\n".join(["<h2>{:s}</h2>".format(html.escape(title)), *(p for p in parts if p)])


def more(total: int, shown: int, what: str) -> str:
    """The note that ``total - shown`` of ``what`` are left out, or ''."""
    if total <= shown:
        return ""
    return note("{:d} more {:s} not shown.".format(total - shown, what))


def mono(text: str) -> Raw:
    """``text`` escaped, in a fixed-width font (ids, paths, commands)."""
    return Raw('<span class="mono">{:s}</span>'.format(html.escape(text)))


def note(text: str) -> str:
    return '<p class="note">{:s}</p>'.format(html.escape(text))


def pre(text: str, css_class: str = "") -> Raw:
    return Raw('<pre class="{:s}">{:s}</pre>'.format(css_class, html.escape(text)))


def cut(text: str, limit: int = MAX_COMMAND_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + "\u2026 ({:d} characters)".format(len(text))


def seconds(h: MapHistory, t: float) -> str:
    return "{:.1f}".format(t - h.started)


# ------------------------------------------------------------- failures
def failures(h: MapHistory, output_tail: typing.Callable[[str], str]) -> str:
    """Failures grouped by cause, each with an example: a remote traceback,
    or a lost chunk's scheduler state, reason and its worker's output."""
    groups = h.failures_by_cause()
    if not groups:
        return '<h2>Failures</h2><p id="failures">No job raised and no chunk was lost.</p>'
    rows = [
        [g.cause, g.count, seconds(h, g.last), Raw(_example(g, output_tail))]
        for g in groups[:MAX_FAILURE_GROUPS]
    ]
    return section(
        "Failures by cause",
        table("failures", FAILURE_COLUMNS, rows),
        more(len(groups), MAX_FAILURE_GROUPS, "causes"),
        note("The log keeps the remote traceback of the first 100 jobs that raised.")
        if len(h.failures) > 100
        else "",
    )


def _example(group: FailureGroup, output_tail: typing.Callable[[str], str]) -> str:
    ex = group.example
    if isinstance(ex, JobFailure):
        text = "job {:d} raised {:s} in worker {:s}".format(ex.job, ex.exception, ex.worker)
        if not ex.traceback:
            return html.escape(text + " (the log kept no traceback)")
        return html.escape(text) + pre(ex.traceback, "traceback")
    assert isinstance(ex, ChunkLoss)
    text = "chunk {:d} (attempt {:d}) lost with worker {:s}: scheduler state {:s}{:s}".format(
        ex.chunk,
        ex.attempt,
        ex.worker,
        ex.scheduler_state or "unknown",
        " ({:s})".format(ex.reason) if ex.reason else "",
    )
    tail = output_tail(ex.worker)
    if not tail:
        return html.escape(text) + "<br>(no output of this worker found)"
    return html.escape(text) + "<br>Its output ends with:" + pre(tail, "output")


def losses(h: MapHistory) -> str:
    """Every lost chunk (the first :data:`MAX_LOSS_ROWS`)."""
    if not h.losses:
        return ""
    rows = [
        [seconds(h, x.time), x.chunk, x.attempt, mono(x.worker), x.scheduler_state, x.reason]
        for x in h.losses[:MAX_LOSS_ROWS]
    ]
    return section(
        "Lost chunks",
        table("losses", LOSS_COLUMNS, rows),
        more(len(h.losses), MAX_LOSS_ROWS, "losses"),
    )


# -------------------------------------------------------------- workers
def workers(h: MapHistory) -> str:
    """Each worker: host, submission, chunks and jobs run, losses, last state."""
    runs = collections.defaultdict(list)
    for run in h.runs:
        runs[run.worker].append(run)
    lost = collections.Counter(x.worker for x in h.losses)
    submitted: typing.Dict[str, str] = {}
    for sub in h.submissions:
        for w in sub.workers:
            submitted.setdefault(w, seconds(h, sub.time))
    last = h.last_states()
    rows = []
    for w in h.workers[:MAX_WORKER_ROWS]:
        state = last.get(w)
        words = [state.state, state.scheduler_state, state.reason] if state else []
        rows.append(
            [
                mono(w),
                ", ".join(sorted({r.host for r in runs[w]})),
                submitted.get(w, ""),
                len(runs[w]),
                sum(r.num_jobs for r in runs[w]),
                sum(1 for r in runs[w] if r.failed),
                lost[w],
                " ".join(x for x in words if x),
            ]
        )
    return section(
        "Workers",
        table("workers", WORKER_COLUMNS, rows),
        more(len(h.workers), MAX_WORKER_ROWS, "workers"),
    )


# ------------------------------------------------------ scheduler calls
def _return_code(call: SchedulerCall) -> str:
    code = "none" if call.returncode is None else str(call.returncode)
    if not call.failed:
        return code
    return "\u2717 {:s}{:s}".format(code, ", retried" if call.transient else "")


def scheduler_calls(h: MapHistory) -> str:
    """The calls by program, then each call (failed ones marked); of a long
    list the first and last :data:`CALL_ROWS_EACH_END` and every failed one."""
    if not h.calls:
        return (
            '<h2>Scheduler calls</h2><p id="scheduler-calls">This map made no scheduler calls'
            " (the pool's workers had been submitted before, or its scheduler has no commands).</p>"
        )
    by_program: typing.Dict[str, typing.List[SchedulerCall]] = collections.defaultdict(list)
    for call in h.calls:
        by_program[os.path.basename(call.argv[0]) if call.argv else "?"].append(call)
    summary = [
        [
            name,
            len(calls),
            sum(1 for c in calls if c.failed),
            "{:.2f}".format(sum(c.seconds for c in calls)),
            "{:.2f}".format(max(c.seconds for c in calls)),
        ]
        for name, calls in sorted(by_program.items())
    ]
    rows: typing.List[typing.List[Cell]] = []
    classes: typing.List[str] = []
    skipped = 0
    for i, call in enumerate(h.calls):
        if CALL_ROWS_EACH_END <= i < len(h.calls) - CALL_ROWS_EACH_END and not call.failed:
            skipped += 1
            continue
        if skipped:
            gap = "\u2026 {:d} calls that worked left out \u2026".format(skipped)
            rows.append(["", gap, "", "", "", ""])
            classes.append("")
            skipped = 0
        rows.append(
            [
                seconds(h, call.time),
                mono(cut(shlex.join(call.argv))),
                _return_code(call),
                "{:.2f}".format(call.seconds),
                call.attempt,
                pre(cut(call.stderr)) if call.stderr else "",
            ]
        )
        classes.append("failed" if call.failed else "")
    return section(
        "Scheduler calls",
        table("scheduler-calls-by-program", PROGRAM_COLUMNS, summary),
        table("scheduler-calls", CALL_COLUMNS, rows, classes),
    )
