"""
What a user reads when a map fails: pure functions over typed records.

The map run (:mod:`.map_run`) gathers the facts -- how each worker ended,
which chunks were lost and how often -- into the records below; the
functions here turn them into the messages of
:class:`~pypoolparty.errors.JobsLostError`, of the remote traceback and of
:class:`~pypoolparty.errors.CancelledError`. They read no file and call no
scheduler, so each message is tested on made-up records.
"""
from __future__ import annotations

import dataclasses
import typing


@dataclasses.dataclass(frozen=True)
class WorkerEnd:
    """How a worker ended, as far as the pool knows.

    Parameters
    ----------
    worker_id : str
        The scheduler's id of the worker.
    state : str
        The scheduler's word for its state (e.g. ``"TIMEOUT"``), or the
        core's (``"unknown"``) where the scheduler gave none.
    reason : str
        The scheduler's reason, if any.
    note : str
        What the pool did to it, e.g. that it cancelled it while held.
    detail : str
        The scheduler's account of the ended worker (exit code, node, ...).
    output_tail : str
        The last lines of the worker's stdout and stderr.
    cause_state : str
        The state that explains the end, for hints: the state it was held
        in if the pool cancelled it, else ``state``.
    """

    worker_id: str
    state: str
    reason: str = ""
    note: str = ""
    detail: str = ""
    output_tail: str = ""
    cause_state: str = ""


@dataclasses.dataclass(frozen=True)
class Loss:
    """A chunk whose claiming worker ended without writing its result."""

    chunk: int
    attempt: int
    end: WorkerEnd


@dataclasses.dataclass(frozen=True)
class Place:
    """Where the map's files are, for the last line of each message.

    ``report`` is the report page the map writes when it fails (see
    :mod:`.report_page`), or '' if it writes none.
    """

    work_dir: str
    log_path: str
    report: str = ""

    def kept(self) -> str:
        report = "; report: {:s}".format(self.report) if self.report else ""
        return "Work dir kept: {:s} (log: {:s}{:s}).".format(self.work_dir, self.log_path, report)


def describe_end(end: WorkerEnd) -> str:
    """``TIMEOUT (reason), note [detail]``: one worker's end in a line."""
    text = end.state
    if end.reason:
        text += " ({:s})".format(end.reason)
    if end.note:
        text += ", " + end.note
    if end.detail:
        text += " [{:s}]".format(end.detail)
    return text


def _output_note(end: WorkerEnd) -> str:
    if not end.output_tail:
        return ""
    return "; its output ends with:\n    " + end.output_tail.replace("\n", "\n    ")


def held_note(state: str, reason: str) -> str:
    """What the pool notes of a worker it cancelled because it was held."""
    return "held in {:s}{:s}, cancelled by pypoolparty".format(
        state, " ({:s})".format(reason) if reason else ""
    )


def hints(
    states: typing.Iterable[str], hint_of: typing.Callable[[str], str]
) -> typing.List[str]:
    """The scheduler's advice (``hint_of(state)``) for these states, each once."""
    out: typing.List[str] = []
    for state in states:
        hint = hint_of(state)
        if hint and "Hint: " + hint not in out:
            out.append("Hint: " + hint)
    return out


def job_range(jobs: range) -> str:
    """``job 3`` or ``jobs 3 to 7``."""
    if len(jobs) == 1:
        return "job {:d}".format(jobs.start)
    return "jobs {:d} to {:d}".format(jobs.start, jobs.stop - 1)


def jobs_lost(
    losses: typing.Mapping[int, typing.Sequence[Loss]],
    chunk_jobs: typing.Callable[[int], range],
    max_num_resubmissions: int,
    advice: typing.Sequence[str],
    place: Place,
) -> str:
    """The message of a map whose chunks were lost more often than allowed.

    ``losses`` maps each such chunk to its losses, oldest first;
    ``chunk_jobs(chunk)`` gives the chunk's job indices.
    """
    lines = []
    for chunk, chunk_losses in sorted(losses.items()):
        attempts = [
            "attempt {:d}: worker {:s} ended {:s} without a result{:s}".format(
                loss.attempt, loss.end.worker_id, describe_end(loss.end), _output_note(loss.end)
            )
            for loss in chunk_losses
        ]
        lines.append(
            "{:s} (chunk {:d}):\n  ".format(job_range(chunk_jobs(chunk)), chunk)
            + "\n  ".join(attempts)
        )
    return (
        "pypoolparty: jobs were lost {:d} times, more than "
        "max_num_resubmissions={:d}: their workers ended without returning a "
        "result (killed, out of time or memory, node failure, or "
        "cancelled).\n{:s}\n{:s}{:s}"
    ).format(
        max_num_resubmissions + 1,
        max_num_resubmissions,
        "\n".join(lines),
        "".join(h + "\n" for h in advice),
        place.kept(),
    )


def unproductive_submissions(
    in_a_row: int,
    ends: typing.Sequence[WorkerEnd],
    advice: typing.Sequence[str],
    place: Place,
) -> str:
    """The message of a map whose submissions kept ending without any result."""
    parts = [
        "worker {:s} ended {:s}{:s}".format(e.worker_id, describe_end(e), _output_note(e))
        for e in ends
    ]
    return (
        "pypoolparty: {:d} submissions of workers in a row ended without "
        "returning any result, so the pool stopped resubmitting. The likely "
        "cause is on the compute nodes (the Python interpreter python_path or "
        "pypoolparty missing there, the work dir not shared with them) or in "
        "the queue (the workers were held or cancelled). {:s}. {:s}"
    ).format(in_a_row, "; ".join(list(parts) + list(advice)), place.kept())


def remote_traceback(
    traceback: str, job: int, worker_id: str, map_stopped: bool, place: Place
) -> str:
    """The text of the ``RemoteTraceback`` set as a job exception's cause."""
    note = "pypoolparty: job {:d} raised this in worker {:s}".format(job, worker_id)
    if map_stopped:
        note += "; the map's other jobs were cancelled. " + place.kept()
    else:
        note += "."
    return '\n"""\n{:s}"""\n{:s}'.format(traceback, note)


def cancelled(reason: str, work_dir: str) -> str:
    """The message of the CancelledError of a map the caller gave up."""
    return "pypoolparty: {:s}; the map's jobs were cancelled. Work dir kept: {:s}".format(
        reason, work_dir
    )
