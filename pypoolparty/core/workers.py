"""
What the core knows of a map's workers: each one's last status, how many
polls saw it ended or held, the submission it came from, and what the
scheduler said of its end.

A worker is confirmed ended (or held) only after :data:`POLLS_TO_CONFIRM`
scheduler polls in a row saw it so: a scheduler may briefly forget a job
that is starting, and a worker seen ended once may still be writing its
last result.
"""
from __future__ import annotations

import dataclasses
import enum
import typing

from . import reports
from .event_log import EventLog
from .scheduler import Scheduler, WorkerState, WorkerStatus
from .workdir import WorkDir

#: At most this many ended workers of a map are looked up in detail (a call each).
MAX_DESCRIBED_WORKERS = 10

#: Scheduler polls that must see a worker ended (or held) before it counts so.
POLLS_TO_CONFIRM = 2


class Observation(enum.Enum):
    """What one poll confirmed about a worker."""

    END_CONFIRMED = "end confirmed"
    HOLD_CONFIRMED = "hold confirmed"


@dataclasses.dataclass
class WorkerRecord:
    """What the map knows of one worker."""

    worker_id: str
    submission: int
    status: WorkerStatus = WorkerStatus(WorkerState.PENDING, "SUBMITTED")
    ended_polls: int = 0
    held_polls: int = 0
    held_state: str = ""
    note: str = ""

    @property
    def confirmed_ended(self) -> bool:
        return self.ended_polls >= POLLS_TO_CONFIRM

    @property
    def cause_state(self) -> str:
        """The state that explains its end: the one it was held in, if any."""
        return self.held_state or self.status.scheduler_state

    def observe(self, status: WorkerStatus) -> typing.Set[Observation]:
        """Take the status of one poll; say what it confirmed just now."""
        self.status = status
        self.ended_polls = 0 if status.state.is_alive else self.ended_polls + 1
        seen = set()
        if self.ended_polls == POLLS_TO_CONFIRM:
            seen.add(Observation.END_CONFIRMED)
        if status.state is WorkerState.HELD:
            self.held_polls += 1
            if self.held_polls == POLLS_TO_CONFIRM:
                seen.add(Observation.HOLD_CONFIRMED)
        return seen


@dataclasses.dataclass
class Submission:
    """One call of the scheduler's submit for this map."""

    worker_ids: typing.List[str]
    productive: bool = False
    evaluated: bool = False


class MapWorkers:
    """The workers of one map and their submissions.

    Parameters
    ----------
    scheduler : Scheduler
        Asked to describe ended workers (a few, once each).
    log : EventLog
        The map's log: state changes and held workers are recorded.
    work_dir : WorkDir
        Where the workers' output is.
    """

    def __init__(self, scheduler: Scheduler, log: EventLog, work_dir: WorkDir):
        self.scheduler = scheduler
        self.log = log
        self.work_dir = work_dir
        self.records: typing.Dict[str, WorkerRecord] = {}
        self.submissions: typing.List[Submission] = []
        self._details: typing.Dict[str, str] = {}

    def add_submission(self, worker_ids: typing.Sequence[str]) -> int:
        """Record the workers of a new submission; return its index."""
        index = len(self.submissions)
        self.submissions.append(Submission(worker_ids=list(worker_ids)))
        for wid in worker_ids:
            self.records[wid] = WorkerRecord(worker_id=wid, submission=index)
        return index

    def alive_ids(self) -> typing.List[str]:
        """Workers not confirmed ended: they may still run and hold claims."""
        return [w for w, r in self.records.items() if not r.confirmed_ended]

    def credit(self, worker_id: str) -> None:
        """The worker wrote a result: its submission was productive."""
        rec = self.records.get(worker_id)
        if rec is not None:
            self.submissions[rec.submission].productive = True

    def note_states(
        self, statuses: typing.Mapping[str, WorkerStatus]
    ) -> typing.Tuple[typing.List[str], typing.List[str]]:
        """Take one poll's statuses; return the workers whose end, and whose
        hold, it confirmed just now."""
        ended, held = [], []
        for wid, rec in self.records.items():
            if rec.confirmed_ended:
                continue
            status = statuses.get(wid, WorkerStatus(WorkerState.UNKNOWN))
            if status != rec.status:
                self.log.event(
                    "worker_state",
                    worker=wid,
                    state=status.state.value,
                    scheduler_state=status.scheduler_state,
                    reason=status.reason,
                )
            seen = rec.observe(status)
            if Observation.END_CONFIRMED in seen:
                ended.append(wid)
            if Observation.HOLD_CONFIRMED in seen:
                held.append(wid)
        return ended, held

    def mark_held(self, worker_id: str) -> None:
        """Note that the pool cancels this held worker, and ask why it was held."""
        rec = self.records[worker_id]
        self.describe(worker_id)  # while the scheduler still knows why
        rec.held_state = rec.status.scheduler_state
        rec.note = reports.held_note(rec.status.scheduler_state, rec.status.reason)
        self.log.warning(
            "held_cancelled",
            worker=worker_id,
            scheduler_state=rec.status.scheduler_state,
            reason=rec.status.reason,
        )

    def ended_submissions(self) -> typing.Iterator[typing.Tuple[int, Submission]]:
        """Submissions whose workers all ended, each once."""
        for index, sub in enumerate(self.submissions):
            if sub.evaluated or not all(self.records[w].confirmed_ended for w in sub.worker_ids):
                continue
            sub.evaluated = True
            yield index, sub

    def describe(self, worker_id: str) -> str:
        """The scheduler's account of a worker, asked once, for a few workers."""
        if worker_id not in self._details and len(self._details) < MAX_DESCRIBED_WORKERS:
            self._details[worker_id] = self.scheduler.describe(worker_id, self.log)
        return self._details.get(worker_id, "")

    def end_of(self, worker_id: str) -> reports.WorkerEnd:
        """What is known of how a worker ended."""
        rec = self.records[worker_id]
        return reports.WorkerEnd(
            worker_id=worker_id,
            state=rec.status.scheduler_state or rec.status.state.value,
            reason=rec.status.reason,
            note=rec.note,
            detail=self.describe(worker_id),
            output_tail=self.work_dir.tail_of_worker_log(worker_id).strip(),
            cause_state=rec.cause_state,
        )
