"""
The short human lines that ``verbose=True`` prints to stderr, one for each
event of the log that a person wants to see as it happens::

    pypoolparty: map-000001: 10 jobs in 10 chunks
    pypoolparty: submitted 2 workers (4711, 4712)
    pypoolparty: worker 4711 running
    pypoolparty: map-000001: chunk 5 lost: worker 4711 ended FAILED (exit code 3); running it again (resubmission 1 of 3)
    pypoolparty: map-000001: job 7 raised ValueError('x') on worker 4712
    pypoolparty: map-000001: failed after 4.2 s: ValueError('x')

The JSON-lines log keeps every event; here some give no line:

* a scheduler command that succeeded at once and in time (``command``):
  the pool polls every few seconds, and those lines would bury the ones
  that matter. A command that needed retries or took longer than
  :data:`SLOW_COMMAND` seconds says so; one that failed always does.
* each finished chunk (``chunk_done``): a map has about four per worker.
  The lines say when each tenth of the map's chunks is done instead (the
  progress bar shows more, where a person watches).

Events without a line of their own here print their fields.
"""
from __future__ import annotations

import os
import typing

from .pooldir import MAP_PREFIX

#: Seconds a successful scheduler command may take before its line is printed.
SLOW_COMMAND = 10.0

#: Worker ids a line names at most.
IDS_SHOWN = 5

#: Characters of an error or exception a line shows at most.
TEXT_SHOWN = 300

PREFIX = "pypoolparty: "


def map_label(name: str) -> str:
    """``map-000001`` for a map dir ``map-000001-<random>``; other names as they are."""
    if not name.startswith(MAP_PREFIX):
        return name
    return "-".join(name.split("-")[:2])


def label_of(log_path: typing.Optional[str]) -> str:
    """The label of a log's lines: its map's, or none for the pool's log."""
    if not log_path:
        return ""
    folder = os.path.basename(os.path.dirname(log_path))
    return map_label(folder) if folder.startswith(MAP_PREFIX) else ""


# ------------------------------------------------------------------ parts
def _plural(num: int, word: str) -> str:
    return "{:d} {:s}{:s}".format(num, word, "" if num == 1 else "s")


def _ids(ids: typing.Sequence) -> str:
    ids = [str(i) for i in ids]
    if len(ids) > IDS_SHOWN:
        ids = ids[: IDS_SHOWN - 1] + ["...", ids[-1]]
    return ", ".join(ids)


def _workers(ids: typing.Sequence) -> str:
    """``2 workers (4711, 4712)``, ``worker 4711``."""
    if len(ids) == 1:
        return "worker {}".format(ids[0])
    return "{:s} ({:s})".format(_plural(len(ids), "worker"), _ids(ids))


def _text(value: typing.Any) -> str:
    """The first line of ``value`` (also of a repr, whose line ends are
    ``\\n``), cut to :data:`TEXT_SHOWN` characters."""
    lines = str(value).replace("\\n", "\n").strip().splitlines()
    text = lines[0] if lines else ""
    if len(lines) > 1 or len(text) > TEXT_SHOWN:
        text = text[:TEXT_SHOWN] + " ..."
    return text


def _command(argv: typing.Sequence[str]) -> str:
    """``squeue``, ``scontrol show``: the program and its subcommand, if any."""
    words = [os.path.basename(str(argv[0]))] if argv else ["?"]
    if len(argv) > 1 and not str(argv[1]).startswith("-") and len(str(argv[1])) < 20:
        words.append(str(argv[1]))
    return " ".join(words)


def duration(seconds: float) -> str:
    """``12.3 s``, ``4 min 5 s``, ``2 h 3 min``."""
    if seconds < 60:
        return "{:.1f} s".format(seconds)
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return "{:d} min {:d} s".format(minutes, secs)
    return "{:d} h {:d} min".format(*divmod(minutes, 60))


def _seconds(fields: dict) -> str:
    seconds = fields.get("seconds")
    return "" if seconds is None else " after {:.1f} s".format(seconds)


def _state(fields: dict) -> str:
    """``FAILED (exit code 3)``: the scheduler's word and reason."""
    word = fields.get("scheduler_state") or ""
    reason = fields.get("reason") or ""
    return " ".join(p for p in (word, "({:s})".format(reason) if reason else "") if p)


# ------------------------------------------------------------------ lines
def _pool(f: dict) -> str:
    return "pool {:s} on {:s}, at most {:s} at once".format(
        str(f.get("pool_dir")), str(f.get("scheduler")), _plural(int(f.get("processes", 0)), "worker")
    )


def _map(f: dict) -> str:
    return "{:s} in {:s}".format(
        _plural(int(f["num_jobs"]), "job"), _plural(int(f["num_chunks"]), "chunk")
    )


def _submitted(f: dict) -> str:
    return "submitted " + _workers(f.get("workers") or [])


def _worker_state(f: dict) -> str:
    state = str(f.get("state"))
    worker = "worker {}".format(f.get("worker"))
    if state == "running":
        return worker + " running"
    if state == "unknown":
        return worker + " unknown to the scheduler"
    if str(f.get("scheduler_state") or "").lower() == state:
        f = dict(f, scheduler_state="")  # "pending PENDING" says it twice
    return " ".join(p for p in (worker, state, _state(f)) if p)


def _command_done(f: dict) -> typing.Optional[str]:
    attempt = int(f.get("attempt") or 1)
    seconds = float(f.get("seconds") or 0.0)
    if attempt == 1 and seconds < SLOW_COMMAND:
        return None
    said = "{:s} took {:.1f} s".format(_command(f.get("argv") or []), seconds)
    return said + (" (attempt {:d})".format(attempt) if attempt > 1 else "")


def _command_failed(f: dict) -> str:
    code = f.get("returncode")
    said = "{:s} failed{:s}".format(
        _command(f.get("argv") or []), "" if code is None else " (exit code {})".format(code)
    )
    stderr = _text(f.get("stderr") or "")
    next_step = "retrying" if f.get("transient") else "not retried"
    return "{:s}{:s}; {:s}".format(said, ": " + stderr if stderr else "", next_step)


def _command_missing(f: dict) -> str:
    return "{:s} not found: {:s}".format(_command(f.get("argv") or []), _text(f.get("error", "")))


def _chunk_lost(f: dict) -> str:
    said = "chunk {} lost: worker {} ended {:s}".format(
        f.get("chunk"), f.get("worker"), _state(f) or "(unknown to the scheduler)"
    )
    attempt = int(f.get("attempt") or 1)
    most = f.get("max_num_resubmissions")
    if most is None:
        return said + "; running it again"
    if attempt > int(most):
        return said + "; lost {:s}, more than max_num_resubmissions={}".format(
            _plural(attempt, "time"), most
        )
    return said + "; running it again (resubmission {:d} of {})".format(attempt, most)


def _job_raised(f: dict) -> str:
    return "job {} raised {:s} on worker {}".format(f.get("job"), _text(f.get("exception")), f.get("worker"))


def _cancel(f: dict) -> str:
    return "cancelling {:s}: {:s}".format(_workers(f.get("workers") or []), str(f.get("why")))


def _worker_leaves(f: dict) -> str:
    return "worker {} leaves: {:s}".format(f.get("worker"), str(f.get("why")))


def _held_cancelled(f: dict) -> str:
    return "worker {} held {:s}: cancelled, another takes its place".format(f.get("worker"), _state(f))


def _completed(f: dict) -> str:
    seconds = f.get("seconds")
    return "done" if seconds is None else "done in {:.1f} s".format(seconds)


def _failed(f: dict) -> str:
    return "failed{:s}: {:s}".format(_seconds(f), _text(f.get("error")))


def _cancelled(f: dict) -> str:
    return "cancelled{:s}: {:s}".format(_seconds(f), _text(f.get("reason")))


def _work_dir_kept(f: dict) -> str:
    return "kept its folder " + str(f.get("path"))


def _workers_adopted(f: dict) -> str:
    return "watching a dead driver's " + _workers(f.get("workers") or [])


def _adopted(f: dict) -> str:
    return "adopted from a dead driver, with its " + _workers(f.get("workers") or [])


def _submission_unproductive(f: dict) -> str:
    return "submission {} ended without any result ({} in a row)".format(
        f.get("submission"), f.get("in_a_row")
    )


def _generic(name: str, f: dict) -> str:
    """``cancel failed: workers=4711, error=...``: an event's own words."""
    f = {k: v for k, v in f.items() if k != "replayed"}
    parts = []
    for key, value in f.items():
        value = _ids(value) if isinstance(value, (list, tuple)) else _text(value)
        parts.append(value if list(f) == ["value"] else "{:s}={:s}".format(key, value))
    return name.replace("_", " ") + (": " + ", ".join(parts) if parts else "")


LINES: typing.Dict[str, typing.Callable[[dict], typing.Optional[str]]] = {
    "pool": _pool,
    "map": _map,
    "submitted": _submitted,
    "worker_state": _worker_state,
    "command": _command_done,
    "command_failed": _command_failed,
    "command_missing": _command_missing,
    "chunk_lost": _chunk_lost,
    "job_raised": _job_raised,
    "cancel": _cancel,
    "worker_leaves": _worker_leaves,
    "held_cancelled": _held_cancelled,
    "completed": _completed,
    "failed": _failed,
    "cancelled": _cancelled,
    "work_dir_kept": _work_dir_kept,
    "workers_adopted": _workers_adopted,
    "adopted": _adopted,
    "submission_unproductive": _submission_unproductive,
}


class Lines:
    """Turns the events of one log into lines.

    It counts the map's chunks (from its ``map`` event) to say when each
    tenth is done; the other events give a line each, or none.

    Parameters
    ----------
    label : str
        Put before each line (a map's ``map-000001``; none for the pool).
    """

    def __init__(self, label: str = ""):
        self.label = label
        self.num_chunks = 0
        self.chunks_done = 0

    def line(self, record: dict) -> typing.Optional[str]:
        """The line for one event (``"event"`` and its fields), or None."""
        name = str(record.get("event"))
        fields = {k: v for k, v in record.items() if k not in ("event", "t", "l")}
        if name == "chunk_done":
            text = self._chunk_done()
        elif name in LINES:
            if name == "map":
                self.num_chunks = int(fields.get("num_chunks") or 0)
            text = LINES[name](fields)
        else:
            text = _generic(name, fields)
        if text is None:
            return None
        return PREFIX + (self.label + ": " if self.label else "") + text

    def _chunk_done(self) -> typing.Optional[str]:
        self.chunks_done += 1
        if not self.num_chunks:
            return None  # an adopted map's log: its size is not known here
        tenth = self.chunks_done * 10 // self.num_chunks
        if tenth == (self.chunks_done - 1) * 10 // self.num_chunks:
            return None
        return "{:d} of {:s} done".format(self.chunks_done, _plural(self.num_chunks, "chunk"))
