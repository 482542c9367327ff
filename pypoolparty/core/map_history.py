"""
What a map's log says happened: typed records read back from its events.

The driver writes every scheduler call and decision of a map into the map's
JSON-lines log (:mod:`.event_log`). This module reads it back into a
:class:`MapHistory` for the ones who look later: the command line
(``pypoolparty status``) and the report page. It reads the log and nothing
else, so it works from another shell while the driver runs, and after the
driver died.
"""
from __future__ import annotations

import dataclasses
import datetime
import enum
import typing

from . import event_log


class MapEnd(enum.Enum):
    """How a map ended, as far as its log says."""

    RUNNING = "running"
    """No end in the log: in flight, or its driver died."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclasses.dataclass(frozen=True)
class ChunkRun:
    """A chunk a worker ran to its end (its result came)."""

    chunk: int
    worker: str
    host: str
    started: float
    ended: float
    num_jobs: int
    failed: bool


@dataclasses.dataclass(frozen=True)
class ChunkLoss:
    """A chunk whose worker ended without its result; it runs again."""

    time: float
    chunk: int
    worker: str
    attempt: int
    scheduler_state: str
    reason: str


@dataclasses.dataclass(frozen=True)
class JobFailure:
    """A job that raised."""

    time: float
    job: int
    worker: str
    exception: str
    exception_type: str
    traceback: str


@dataclasses.dataclass(frozen=True)
class Submission:
    """Workers submitted in one go."""

    time: float
    index: int
    workers: typing.Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class StateChange:
    """A worker's state as a poll of the scheduler saw it change."""

    time: float
    worker: str
    state: str
    scheduler_state: str
    reason: str


@dataclasses.dataclass(frozen=True)
class SchedulerCall:
    """One run of a scheduler command. ``failed``: it did not work (its
    return code is not one the adapter takes, it timed out, or the command
    is missing); ``transient``: the failure looked passing, so it was tried
    again."""

    time: float
    argv: typing.Tuple[str, ...]
    returncode: typing.Optional[int]
    seconds: float
    attempt: int
    stderr: str
    failed: bool = False
    transient: bool = False


@dataclasses.dataclass(frozen=True)
class FailureGroup:
    """Failures of one cause: a job's exception type, or a lost chunk's
    scheduler state."""

    cause: str
    count: int
    last: float
    example: typing.Union[JobFailure, ChunkLoss]


@dataclasses.dataclass
class MapHistory:
    """A map's story, from its log."""

    path: str
    started: float = 0.0
    scheduler: str = ""
    num_jobs: int = 0
    num_chunks: int = 0
    funcs: typing.Tuple[str, ...] = ()
    processes: typing.Optional[int] = None
    adopted_by: str = ""
    """The pool dir of the driver that adopted the map (its first died)."""
    kept: bool = False
    """The driver is done with the folder (its last event: work_dir_kept)."""
    driver_host: str = ""
    driver_pid: typing.Optional[int] = None
    """Who drives it: a pool's log names its driver (its ``pool`` event)."""
    end: MapEnd = MapEnd.RUNNING
    ended: typing.Optional[float] = None
    error: str = ""
    last_event: float = 0.0
    runs: typing.List[ChunkRun] = dataclasses.field(default_factory=list)
    losses: typing.List[ChunkLoss] = dataclasses.field(default_factory=list)
    failures: typing.List[JobFailure] = dataclasses.field(default_factory=list)
    submissions: typing.List[Submission] = dataclasses.field(default_factory=list)
    states: typing.List[StateChange] = dataclasses.field(default_factory=list)
    calls: typing.List[SchedulerCall] = dataclasses.field(default_factory=list)
    cancels: typing.List[typing.Tuple[float, typing.Tuple[str, ...], str]] = dataclasses.field(
        default_factory=list
    )

    @property
    def jobs_done(self) -> int:
        """Jobs whose chunk's result came."""
        return sum(r.num_jobs for r in self.runs)

    @property
    def workers(self) -> typing.List[str]:
        """Every worker the log names, in the order it first appears."""
        seen: typing.Dict[str, None] = {}
        for sub in self.submissions:
            seen.update(dict.fromkeys(sub.workers))
        for item in [*self.runs, *self.losses, *self.states]:
            seen.setdefault(item.worker)
        return list(seen)

    def last_states(self) -> typing.Dict[str, StateChange]:
        """Each worker's latest state the log saw."""
        out: typing.Dict[str, StateChange] = {}
        for change in self.states:
            out[change.worker] = change
        return out

    def failures_by_cause(self) -> typing.List[FailureGroup]:
        """Failed jobs grouped by exception type, lost chunks by the
        scheduler's state; the largest group first."""
        groups: typing.Dict[str, typing.List[typing.Union[JobFailure, ChunkLoss]]] = {}
        for failure in self.failures:
            groups.setdefault(failure.exception_type or "exception", []).append(failure)
        for loss in self.losses:
            cause = "lost: " + (loss.scheduler_state or "unknown")
            groups.setdefault(cause, []).append(loss)
        out = []
        for cause, items in groups.items():
            with_traceback = [i for i in items if getattr(i, "traceback", "")]
            out.append(
                FailureGroup(
                    cause=cause,
                    count=len(items),
                    last=max(i.time for i in items),
                    example=(with_traceback or items)[0],
                )
            )
        return sorted(out, key=lambda g: (-g.count, g.cause))


def timestamp(text: str) -> float:
    """Seconds since the epoch of a log line's ``"t"`` (local time)."""
    return datetime.datetime.fromisoformat(text).timestamp()


def read(log_path: str, map_dir: str = "") -> MapHistory:
    """Read a map's log into a :class:`MapHistory`.

    Parameters
    ----------
    log_path : str
        The map's ``log.jsonl``.
    map_dir : str
        The map's folder, for the record (default: the log's folder).

    Raises
    ------
    FileNotFoundError
        If there is no such log.
    """
    history = MapHistory(path=map_dir or log_path.rsplit("/", 1)[0])
    for record in event_log.read(log_path):
        take(history, record.get("event", ""), timestamp(record["t"]), record)
    return history


def take(h: MapHistory, name: str, t: float, r: dict) -> None:
    """Add the event ``name`` of time ``t`` and fields ``r`` to ``h``."""
    h.last_event = max(h.last_event, t)
    if name == "pool":
        h.scheduler = str(r.get("scheduler", ""))
        h.driver_host = str(r.get("driver_host") or "")
        h.driver_pid = r.get("driver_pid")
    elif name == "map":
        h.started = t
        h.scheduler = str(r.get("scheduler", ""))
        h.num_jobs = int(r.get("num_jobs", 0))
        h.num_chunks = int(r.get("num_chunks", 0))
        h.funcs = tuple(str(f) for f in r.get("funcs", ()))
        h.processes = r.get("processes")
    elif name == "chunk_done":
        h.runs.append(
            ChunkRun(
                chunk=int(r["chunk"]),
                worker=str(r.get("worker", "")),
                host=str(r.get("host", "")),
                started=float(r.get("started") or t),
                ended=float(r.get("ended") or t),
                num_jobs=int(r.get("num_jobs", 0)),
                failed=bool(r.get("failed", False)),
            )
        )
    elif name == "chunk_lost":
        h.losses.append(
            ChunkLoss(
                time=t,
                chunk=int(r["chunk"]),
                worker=str(r.get("worker", "")),
                attempt=int(r.get("attempt", 1)),
                scheduler_state=str(r.get("scheduler_state", "")),
                reason=str(r.get("reason", "")),
            )
        )
    elif name == "job_raised":
        h.failures.append(
            JobFailure(
                time=t,
                job=int(r["job"]),
                worker=str(r.get("worker", "")),
                exception=str(r.get("exception", "")),
                exception_type=str(r.get("exception_type", "")),
                traceback=str(r.get("traceback", "")),
            )
        )
    elif name == "adopted":
        h.adopted_by = str(r.get("pool_dir", ""))
        h.end, h.ended, h.kept = MapEnd.RUNNING, None, False  # a new driver goes on with it
    elif name == "work_dir_kept":
        h.kept = True
    elif name in ("submitted", "workers_adopted"):
        h.submissions.append(
            Submission(time=t, index=int(r.get("submission", -1)), workers=tuple(r.get("workers", ())))
        )
    elif name == "worker_state":
        h.states.append(
            StateChange(
                time=t,
                worker=str(r.get("worker", "")),
                state=str(r.get("state", "")),
                scheduler_state=str(r.get("scheduler_state", "")),
                reason=str(r.get("reason", "")),
            )
        )
    elif name in ("command", "command_failed", "command_missing"):
        h.calls.append(
            SchedulerCall(
                time=t,
                argv=tuple(str(a) for a in r.get("argv", ())),
                returncode=r.get("returncode"),
                seconds=float(r.get("seconds", 0.0)),
                attempt=int(r.get("attempt", 1)),
                stderr=str(r.get("stderr", r.get("error", ""))),
                failed=name != "command",
                transient=bool(r.get("transient", False)),
            )
        )
    elif name == "cancel":
        h.cancels.append((t, tuple(r.get("workers", ())), str(r.get("why", ""))))
    elif name in ("completed", "failed", "cancelled"):
        h.end = MapEnd(name)
        h.ended = t
        h.error = str(r.get("error", r.get("reason", "")))
