"""
The pool's workers: their lifecycle and what the core knows of each.

A worker is submitted when the pool's maps need more workers than are alive
(within ``processes``), serves every map of the pool, and leaves on its own
(idle, closed pool, ``maxtasksperchild``, time limit: it writes why into the
pool dir) or is cancelled (held, its map was cancelled, the pool ends). The
:class:`Fleet` keeps each worker's last status, how many polls saw it ended
or held, the submission it came from, and what the scheduler said of its
end.

A worker is confirmed ended (or held) only after :data:`POLLS_TO_CONFIRM`
scheduler polls in a row saw it so: a scheduler may briefly forget a job
that is starting, and a worker seen ended once may still be writing its
last result. One poll suffices for a worker known to be leaving (it said so,
or the pool cancelled it).
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import os
import threading
import typing

from .. import errors
from . import reaper, reports
from .event_log import EventLog, MultiLog
from .pooldir import CLOSED, STOP, PoolDir
from .scheduler import Scheduler, SubmitRequest, WorkerState, WorkerStatus

logger = logging.getLogger("pypoolparty")

#: At most this many ended workers of the pool are looked up in detail (a call each).
MAX_DESCRIBED_WORKERS = 10

#: Scheduler polls that must see a worker ended (or held) before it counts so.
POLLS_TO_CONFIRM = 2


class Observation(enum.Enum):
    """What one poll confirmed about a worker."""

    END_CONFIRMED = "end confirmed"
    HOLD_CONFIRMED = "hold confirmed"


@dataclasses.dataclass
class WorkerRecord:
    """What the pool knows of one worker."""

    worker_id: str
    submission: int
    status: WorkerStatus = WorkerStatus(WorkerState.PENDING, "SUBMITTED")
    ended_polls: int = 0
    held_polls: int = 0
    held_state: str = ""
    note: str = ""
    leaving: str = ""
    """Why it leaves on its own, as it wrote in the pool dir."""
    cancelled: str = ""
    """Why the pool cancelled it."""
    served: bool = False
    """A result of it has been collected: it started and worked."""
    adopted: bool = False
    """A worker of a dead driver's pool, serving a map this pool adopted."""

    @property
    def polls_to_confirm(self) -> int:
        return 1 if self.leaving or self.cancelled else POLLS_TO_CONFIRM

    @property
    def confirmed_ended(self) -> bool:
        return self.ended_polls >= self.polls_to_confirm

    @property
    def cause_state(self) -> str:
        """The state that explains its end: the one it was held in, if any."""
        return self.held_state or self.status.scheduler_state

    def observe(self, status: WorkerStatus) -> typing.Set[Observation]:
        """Take the status of one poll; say what it confirmed just now."""
        self.status = status
        self.ended_polls = 0 if status.state.is_alive else self.ended_polls + 1
        seen = set()
        if self.ended_polls == self.polls_to_confirm:
            seen.add(Observation.END_CONFIRMED)
        if status.state is WorkerState.HELD:
            self.held_polls += 1
            if self.held_polls == POLLS_TO_CONFIRM:
                seen.add(Observation.HOLD_CONFIRMED)
        return seen


@dataclasses.dataclass
class Submission:
    """One call of the scheduler's submit for the pool."""

    worker_ids: typing.List[str]
    productive: bool = False
    evaluated: bool = False


@dataclasses.dataclass(frozen=True)
class FleetSettings:
    """How the pool starts its workers.

    Parameters
    ----------
    processes : int
        At most this many workers alive at once.
    python_argv : list of str
        The workers' interpreter.
    env : dict
        Environment the workers need on top of the driver's.
    name : str
        Job name in the scheduler's listing.
    outlive_driver : bool
        See below.
    """

    processes: int
    python_argv: typing.List[str]
    env: typing.Dict[str, str]
    name: str
    outlive_driver: bool = False
    """With a store: should the driver die, its workers finish the maps in
    flight (the next run adopts them) instead of being cancelled."""
    cwd: typing.Optional[str] = None
    """Directory the workers and their jobs run in; None: the driver's
    current directory at the time."""

    def working_dir(self) -> str:
        return self.cwd or os.getcwd()


class Fleet:
    """The workers of one pool, over all its maps.

    Parameters
    ----------
    scheduler : Scheduler
        Submits, cancels and describes workers.
    pool_dir : PoolDir
        The pool's folder: the workers' logs and exit notes.
    settings : FleetSettings
        How workers are started.
    log : EventLog
        The pool's log.
    """

    def __init__(
        self, scheduler: Scheduler, pool_dir: PoolDir, settings: FleetSettings, log: EventLog
    ):
        self.scheduler = scheduler
        self.pool_dir = pool_dir
        self.settings = settings
        self.log = log
        self.records: typing.Dict[str, WorkerRecord] = {}
        self.submissions: typing.List[Submission] = []
        self._details: typing.Dict[str, str] = {}
        # The supervisor thread and the caller's (terminate, a map's end)
        # both change the records.
        self.lock = threading.RLock()

    def logs(self, others: typing.Iterable[EventLog]) -> MultiLog:
        """The pool's log and ``others`` (the logs of the maps in flight)."""
        return MultiLog([self.log, *others])

    # ------------------------------------------------------------- counts
    def alive_ids(self) -> typing.List[str]:
        """Workers not confirmed ended: they may still run and hold claims."""
        with self.lock:
            return [w for w, r in self.records.items() if not r.confirmed_ended]

    def num_available(self) -> int:
        """Workers alive and not leaving on their own (adopted ones count).

        A worker the pool cancelled counts until a poll confirms its end,
        as a lost one does: its slot is not free before.
        """
        with self.lock:
            return sum(1 for r in self.records.values() if not r.confirmed_ended and not r.leaving)

    # ------------------------------------------------------------ actions
    def submit(self, num: int, log: MultiLog) -> typing.List[str]:
        """Start ``num`` workers; return their ids.

        Raises
        ------
        SchedulerCommandError
            If the scheduler refused.
        """
        request = SubmitRequest(
            num_workers=num,
            max_running=self.settings.processes,
            worker_argv=self.settings.python_argv
            + ["-m", "pypoolparty.core.worker", self.pool_dir.path],
            name=self.settings.name,
            log_dir=self.pool_dir.workers_dir,
            cwd=self.settings.working_dir(),
            env=self.settings.env,
        )
        with self.lock:
            ids = self.scheduler.submit(request, log)
            index = len(self.submissions)
            self.submissions.append(Submission(worker_ids=list(ids)))
            for wid in ids:
                self.records[wid] = WorkerRecord(worker_id=wid, submission=index)
        log.event("submitted", submission=index, workers=ids)
        # Should this process die without cleaning up, the reaper cancels
        # the pool's workers; with a store, it lets them finish the maps in
        # flight and leave then.
        if self.settings.outlive_driver:
            reaper.register(self.pool_dir.path, [], stop_file=self.pool_dir.flag_path(CLOSED))
        else:
            reaper.register(
                self.pool_dir.path,
                self.scheduler.cancel_commands(self.alive_ids()),
                stop_file=self.pool_dir.flag_path(STOP),
            )
        return ids

    def adopt(self, worker_ids: typing.Iterable[str], log) -> None:
        """Watch a dead driver's workers that serve a map this pool adopted."""
        with self.lock:
            new = sorted(w for w in worker_ids if w not in self.records)
            if not new:
                return
            index = len(self.submissions)
            self.submissions.append(Submission(list(new), productive=True, evaluated=True))
            for wid in new:
                self.records[wid] = WorkerRecord(worker_id=wid, submission=index, adopted=True)
        log.event("workers_adopted", workers=new)

    def cancel(self, worker_ids: typing.Collection[str], why: str, log) -> None:
        """Cancel workers, unless ended or leaving already; a failure is
        logged, not raised."""
        with self.lock:
            ids = [
                w
                for w in worker_ids
                if w in self.records
                and not self.records[w].confirmed_ended
                and not self.records[w].leaving
                and not self.records[w].cancelled
            ]
            for wid in ids:
                self.records[wid].cancelled = why
        if not ids:
            return
        log.event("cancel", workers=ids, why=why)
        try:
            self.scheduler.cancel(ids, log)
        except errors.SchedulerCommandError as err:
            log.warning("cancel_failed", workers=ids, error=str(err))
            logger.warning(
                "pypoolparty: could not cancel workers %s: %s", ", ".join(ids[:10]), err
            )

    def cancel_unstarted(self, why: str, log) -> None:
        """Cancel the workers that have not started yet."""
        started = self.pool_dir.started_workers()
        with self.lock:
            own = [w for w in self.alive_ids() if not self.records[w].adopted]
        self.cancel([w for w in own if w not in started], why, log)

    def cancel_unserved(self, why: str, log) -> None:
        """Cancel the workers that have not delivered a result yet.

        They are queued, starting, or about to claim: with no map left to
        serve they would only hold a slot until ``idle_timeout``.
        """
        with self.lock:
            ids = [w for w in self.alive_ids() if not self.records[w].served]
        self.cancel(ids, why, log)

    def withdraw_reaper(self) -> None:
        """The pool cleaned up itself: the reaper need not."""
        if self.submissions:
            reaper.withdraw(self.pool_dir.path)

    # -------------------------------------------------------- observations
    def note_exits(self, log) -> bool:
        """Read the notes of workers that leave on their own; True if new ones."""
        new = False
        for wid in self.pool_dir.exited_workers():
            with self.lock:
                rec = self.records.get(wid)
                if rec is None or rec.leaving:
                    continue
                why = self.pool_dir.exit_reason(wid) or "left"
                rec.leaving = why
            log.event("worker_leaves", worker=wid, why=why)
            new = True
        return new

    def credit(self, worker_id: str) -> None:
        """The worker wrote a result: its submission was productive."""
        rec = self.records.get(worker_id)
        if rec is not None:
            rec.served = True
            self.submissions[rec.submission].productive = True

    def note_states(
        self, statuses: typing.Mapping[str, WorkerStatus], log
    ) -> typing.Tuple[typing.List[str], typing.List[str]]:
        """Take one poll's statuses; return the workers whose end, and whose
        hold, it confirmed just now."""
        ended, held = [], []
        with self.lock:
            records = list(self.records.items())
        for wid, rec in records:
            if rec.confirmed_ended:
                continue
            status = statuses.get(wid, WorkerStatus(WorkerState.UNKNOWN))
            if status != rec.status:
                log.event(
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

    def replace_held(self, held: typing.List[str], log) -> None:
        """Cancel workers stuck in an error-like pending state (new ones replace them)."""
        for wid in held:
            rec = self.records[wid]
            self.describe(wid, log)  # while the scheduler still knows why
            rec.held_state = rec.status.scheduler_state
            rec.note = reports.held_note(rec.status.scheduler_state, rec.status.reason)
            log.warning(
                "held_cancelled",
                worker=wid,
                scheduler_state=rec.status.scheduler_state,
                reason=rec.status.reason,
            )
        self.cancel(held, "held", log)

    def ended_submissions(self) -> typing.Iterator[typing.Tuple[int, Submission]]:
        """Submissions whose workers all ended, each once."""
        for index, sub in enumerate(self.submissions):
            if sub.evaluated or not all(self.records[w].confirmed_ended for w in sub.worker_ids):
                continue
            sub.evaluated = True
            yield index, sub

    def excused(self, sub: Submission) -> bool:
        """Some worker of ``sub`` left on its own or was cancelled for a map's end.

        Such a submission is not counted as unproductive: its workers found
        the work done, or were stopped, not broken.
        """
        return any(
            self.records[w].leaving or self.records[w].cancelled not in ("", "held")
            for w in sub.worker_ids
        )

    def describe(self, worker_id: str, log) -> str:
        """The scheduler's account of a worker, asked once, for a few workers."""
        if worker_id not in self._details and len(self._details) < MAX_DESCRIBED_WORKERS:
            self._details[worker_id] = self.scheduler.describe(worker_id, log)
        return self._details.get(worker_id, "")

    def end_of(self, worker_id: str, log) -> reports.WorkerEnd:
        """What is known of how a worker ended."""
        rec = self.records[worker_id]
        return reports.WorkerEnd(
            worker_id=worker_id,
            state=rec.status.scheduler_state or rec.status.state.value,
            reason=rec.status.reason,
            note=rec.note,
            detail=self.describe(worker_id, log),
            output_tail=self.pool_dir.tail_of_worker_log(worker_id).strip(),
            cause_state=rec.cause_state,
        )
