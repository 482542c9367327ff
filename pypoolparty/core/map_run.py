"""
One map in flight: its chunks, workers, results and the decisions about them.

A :class:`MapRun` is driven by the pool's supervisor thread (see
:mod:`pypoolparty.core.supervisor`), which calls, in each round:

* :meth:`MapRun.submit_if_needed` -- start the workers the map still needs;
* :meth:`MapRun.collect` -- read new result files (cheap, every round);
* :meth:`MapRun.apply_states` -- after each scheduler poll: notice workers
  that ended, chunks they left without a result (lost), and resubmit.

The map ends when every chunk has a result, when a job raised (its own
exception is delivered and the other workers are cancelled), when lost
chunks used up their resubmissions, or when the caller cancels it.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import threading
import traceback
import typing

from .. import errors
from . import outcomes, reaper
from .event_log import EventLog
from .scheduler import Scheduler, SubmitRequest, WorkerState, WorkerStatus
from .workdir import WorkDir

#: Scheduler polls that must see a worker ended before its chunks count as lost.
ENDED_POLLS_TO_CONFIRM = 2
#: At most this many ended workers of a map are looked up in detail (a call each).
MAX_DESCRIBED_WORKERS = 10


class ResultSink(typing.Protocol):
    """Where a map's results go (a map's AsyncResult, an imap iterator, ...).

    ``chunk_done`` gets, for each job of the chunk in order, ``(True, value)``
    or ``(False, exception)``; the exception carries the remote traceback as
    its ``__cause__``.
    """

    def chunk_done(
        self, chunk: int, first_job: int, results: typing.List[typing.Tuple[bool, typing.Any]]
    ) -> None:
        ...

    def completed(self) -> None:
        ...

    def failed(self, exc: BaseException) -> None:
        ...


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
        return self.ended_polls >= ENDED_POLLS_TO_CONFIRM


@dataclasses.dataclass
class Submission:
    """One call of the scheduler's submit for this map."""

    worker_ids: typing.List[str]
    productive: bool = False
    evaluated: bool = False


@dataclasses.dataclass(frozen=True)
class MapSettings:
    """The pool's settings that a map needs."""

    processes: int
    max_num_resubmissions: int
    keep_work_dir: bool
    python_argv: typing.List[str]
    env: typing.Dict[str, str]
    name: str


class MapRun:
    """The state of one map and what to do next.

    Parameters
    ----------
    work_dir : WorkDir
        The map's directory, with its inputs written.
    chunk_starts : list of int
        First job of each chunk, plus the number of jobs.
    num_workers : int
        Workers to start at first.
    stop_on_failure : bool
        True: the first job that raises ends the map (``map``). False: each
        failure goes to the sink and the other jobs go on (``imap``, apply).
    scheduler : Scheduler
        The adapter used to submit and cancel.
    settings : MapSettings
        The pool's settings.
    sink : ResultSink
        Receives results, completion or failure.
    log : EventLog
        The map's JSON-lines log.
    """

    def __init__(
        self,
        work_dir: WorkDir,
        chunk_starts: typing.List[int],
        num_workers: int,
        scheduler: Scheduler,
        settings: MapSettings,
        sink: ResultSink,
        log: EventLog,
        stop_on_failure: bool = True,
    ):
        self.work_dir = work_dir
        self.chunk_starts = chunk_starts
        self.num_chunks = len(chunk_starts) - 1
        self.scheduler = scheduler
        self.settings = settings
        self.sink = sink
        self.log = log
        self.stop_on_failure = stop_on_failure
        self.lock = threading.RLock()
        self.active = True
        self.cancel_requested = False
        self.results: typing.List[typing.Optional[outcomes.ChunkResult]] = [
            None
        ] * self.num_chunks
        self.num_finished = 0
        self.attempts = [0] * self.num_chunks
        self.loss_reports: typing.Dict[int, typing.List[str]] = {}
        self.lost_states: typing.Dict[int, typing.List[str]] = {}
        self._described: typing.Dict[str, str] = {}
        self.workers: typing.Dict[str, WorkerRecord] = {}
        self.submissions: typing.List[Submission] = []
        self.unproductive_in_a_row = 0
        self._wanted = num_workers

    # ------------------------------------------------------------ queries
    @property
    def num_jobs(self) -> int:
        return self.chunk_starts[-1]

    def alive_worker_ids(self) -> typing.List[str]:
        """Workers not yet confirmed ended, whose state the map needs."""
        with self.lock:
            if not self.active:
                return []
            return [w for w, r in self.workers.items() if not r.confirmed_ended]

    def num_alive_workers(self) -> int:
        """Workers that may still run: all not confirmed ended.

        A worker seen ended once still holds its claims until the next poll
        confirms its end and releases them; replacing it earlier would start
        a worker that finds nothing to do.
        """
        return sum(1 for r in self.workers.values() if not r.confirmed_ended)

    # --------------------------------------------------------- submitting
    def wanted_workers(self) -> int:
        """Workers this map would start now, if the pool's budget allows."""
        with self.lock:
            return self._wanted if self.active else 0

    def submit(self, num: int) -> None:
        """Start ``num`` workers (the supervisor decides how many)."""
        with self.lock:
            if not self.active or num <= 0:
                return
            request = SubmitRequest(
                num_workers=num,
                max_running=self.settings.processes,
                worker_argv=self.settings.python_argv
                + ["-m", "pypoolparty.core.worker", self.work_dir.path],
                name=self.settings.name,
                log_dir=self.work_dir.workers_dir,
                cwd=os.getcwd(),
                env=self.settings.env,
            )
            try:
                ids = self.scheduler.submit(request, self.log)
            except errors.SchedulerCommandError as err:
                self.fail(err, cancel=True)
                return
            self._wanted = max(0, self._wanted - len(ids))
            index = len(self.submissions)
            self.submissions.append(Submission(worker_ids=list(ids)))
            for wid in ids:
                self.workers[wid] = WorkerRecord(worker_id=wid, submission=index)
            self.log.event("submitted", submission=index, workers=ids)
            if self.cancel_requested:
                self._cancel_workers(ids)
            # Should this process die without cleaning up, the reaper
            # cancels the map's workers.
            alive = [w for w, r in self.workers.items() if not r.confirmed_ended]
            reaper.register(self.work_dir.path, self.scheduler.cancel_commands(alive))

    # ---------------------------------------------------------- collecting
    def collect(self) -> bool:
        """Read result files that appeared; True if any did."""
        with self.lock:
            if not self.active:
                return False
            try:
                on_disk = self.work_dir.finished_chunks()
            except FileNotFoundError:
                return False
            new = [c for c in on_disk if self.results[c] is None]
            for chunk in sorted(new):
                if not self._take_result(chunk):
                    return True
            if self.active and self.num_finished == self.num_chunks:
                self._complete()
            return bool(new)

    def _take_result(self, chunk: int) -> bool:
        """Read one chunk's result; False if the map ended over it."""
        try:
            result = outcomes.decode(self.work_dir.read_result(chunk))
        except Exception as exc:
            self.log.warning("result_unreadable", chunk=chunk, error=repr(exc))
            self.fail(
                errors.MaybeEncodingError(exc, "result of chunk {:d}".format(chunk)),
                cancel=True,
            )
            return False
        self.results[chunk] = result
        self.num_finished += 1
        worker = self.workers.get(result.worker_id)
        if worker is not None:
            self.submissions[worker.submission].productive = True
        pairs = []
        for position, outcome in enumerate(result.outcomes):
            if outcome.ok:
                pairs.append((True, outcome.value))
                continue
            job = self.chunk_starts[chunk] + position
            exc = self._remote_exception(job, result.worker_id, outcome.failure)
            if self.stop_on_failure:
                self.fail(exc, cancel=True, keep=True)
                return False
            pairs.append((False, exc))
        self._to_sink(self.sink.chunk_done, chunk, self.chunk_starts[chunk], pairs)
        return True

    def _remote_exception(
        self, job: int, worker_id: str, failure: outcomes.Failure
    ) -> BaseException:
        """The job's exception, its remote traceback attached as cause."""
        self.log.event(
            "job_raised",
            job=job,
            worker=worker_id,
            exception=repr(failure.exception),
        )
        note = "pypoolparty: job {:d} raised this in worker {:s}".format(job, worker_id)
        if self.stop_on_failure:
            note += (
                "; the map's other jobs were cancelled. Work dir kept: {:s} "
                "(log: {:s}).".format(self.work_dir.path, self.work_dir.log_path)
            )
        else:
            note += "."
        exc = failure.exception
        exc.__cause__ = errors.RemoteTraceback(
            '\n"""\n{:s}"""\n{:s}'.format(failure.traceback, note)
        )
        return exc

    # ------------------------------------------------------ scheduler poll
    def apply_states(self, statuses: typing.Mapping[str, WorkerStatus]) -> None:
        """Update workers from one scheduler poll and decide what to do."""
        with self.lock:
            if not self.active:
                return
            newly_ended = []
            held = []
            for wid, rec in self.workers.items():
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
                rec.status = status
                if status.state.is_alive:
                    rec.ended_polls = 0
                else:
                    rec.ended_polls += 1
                    if rec.confirmed_ended:
                        newly_ended.append(wid)
                if status.state is WorkerState.HELD:
                    rec.held_polls += 1
                    if rec.held_polls == ENDED_POLLS_TO_CONFIRM:
                        held.append(wid)
            if held:
                self._cancel_held(held)
            if newly_ended:
                self.collect()
                if not self.active:
                    return
                self._handle_lost_chunks()
                if not self.active:
                    return
                self._evaluate_submissions()
                if not self.active:
                    return
            self._decide_submissions()

    def _cancel_held(self, held: typing.List[str]) -> None:
        """Workers stuck in an error-like pending state make way for new ones."""
        for wid in held:
            st = self.workers[wid].status
            # Ask why while the scheduler still knows the worker.
            self._ended_how(wid)
            self.workers[wid].held_state = st.scheduler_state
            self.workers[wid].note = "held in {:s}{:s}, cancelled by pypoolparty".format(
                st.scheduler_state, " ({:s})".format(st.reason) if st.reason else ""
            )
            self.log.warning(
                "held_cancelled", worker=wid, scheduler_state=st.scheduler_state, reason=st.reason
            )
        self._cancel_workers(held)

    def _ended_how(self, wid: str) -> str:
        """What the scheduler says of an ended worker, for reports."""
        rec = self.workers[wid]
        st = rec.status
        text = st.scheduler_state or st.state.value
        if st.reason:
            text += " ({:s})".format(st.reason)
        if rec.note:
            text += ", " + rec.note
        if wid not in self._described and len(self._described) < MAX_DESCRIBED_WORKERS:
            self._described[wid] = self.scheduler.describe(wid, self.log)
        detail = self._described.get(wid, "")
        if detail:
            text += " [{:s}]".format(detail)
        return text

    def _handle_lost_chunks(self) -> None:
        """Release chunks claimed by ended workers that left no result."""
        unfinished = [c for c in self.work_dir.claimed_chunks() if self.results[c] is None]
        for chunk, wid in sorted(self.work_dir.claims(unfinished).items()):
            rec = self.workers.get(wid)
            if rec is None or not rec.confirmed_ended:
                continue
            if os.path.exists(self.work_dir.result_path(chunk)):
                continue  # landed just now; the next collect reads it
            self.attempts[chunk] += 1
            report = "attempt {:d}: worker {:s} ended {:s} without a result{:s}".format(
                self.attempts[chunk], wid, self._ended_how(wid), self._log_tail_note(wid)
            )
            self.lost_states.setdefault(chunk, []).append(rec.status.scheduler_state)
            self.loss_reports.setdefault(chunk, []).append(report)
            self.log.warning(
                "chunk_lost",
                chunk=chunk,
                worker=wid,
                attempt=self.attempts[chunk],
                scheduler_state=rec.status.scheduler_state,
                reason=rec.status.reason,
            )
            if self.attempts[chunk] > self.settings.max_num_resubmissions:
                self._fail_lost([chunk])
                return
            self.work_dir.release(chunk)

    def _log_tail_note(self, worker_id: str) -> str:
        tail = self.work_dir.tail_of_worker_log(worker_id, 600).strip()
        if not tail:
            return ""
        return "; its output ends with:\n    " + tail.replace("\n", "\n    ")

    def _evaluate_submissions(self) -> None:
        """Count submissions whose workers all ended without any result."""
        for index, sub in enumerate(self.submissions):
            if sub.evaluated:
                continue
            if not all(self.workers[w].confirmed_ended for w in sub.worker_ids):
                continue
            sub.evaluated = True
            if sub.productive:
                self.unproductive_in_a_row = 0
                continue
            if self.num_finished == self.num_chunks:
                continue
            self.unproductive_in_a_row += 1
            self.log.warning(
                "submission_unproductive",
                submission=index,
                in_a_row=self.unproductive_in_a_row,
            )
            if self.unproductive_in_a_row > self.settings.max_num_resubmissions:
                reports = [
                    "worker {:s} ended {:s}{:s}".format(
                        wid, self._ended_how(wid), self._log_tail_note(wid)
                    )
                    for wid in sub.worker_ids[:3]
                ]
                reports += self._hints(
                    self.workers[w].held_state or self.workers[w].status.scheduler_state
                    for w in sub.worker_ids
                )
                self.fail(
                    errors.JobsLostError(
                        "pypoolparty: {:d} submissions of workers in a row ended "
                        "without returning any result, so the pool stopped "
                        "resubmitting. The likely cause is on the compute "
                        "nodes (the Python interpreter python_path or "
                        "pypoolparty missing there, the work dir not shared "
                        "with them) or in the queue (the workers were held or "
                        "cancelled). {:s}. Work dir kept: {:s} (log: "
                        "{:s}).".format(
                            self.unproductive_in_a_row,
                            "; ".join(reports),
                            self.work_dir.path,
                            self.work_dir.log_path,
                        ),
                        job_indices=self._unfinished_jobs(),
                        work_dir=self.work_dir.path,
                    ),
                    cancel=True,
                    keep=True,
                )
                return

    def _decide_submissions(self) -> None:
        """Start workers where unclaimed chunks have none to run them."""
        unfinished = self.num_chunks - self.num_finished
        if unfinished == 0:
            return
        try:
            claimed = self.work_dir.claimed_chunks()
        except FileNotFoundError:
            return
        unclaimed = sum(
            1
            for c in range(self.num_chunks)
            if self.results[c] is None and c not in claimed
        )
        wanted = min(self.settings.processes, unclaimed)
        deficit = wanted - self.num_alive_workers()
        deficit = max(0, deficit)
        if deficit > 0 and deficit != self._wanted:
            self.log.event("resubmit", workers=deficit, unclaimed_chunks=unclaimed)
        self._wanted = deficit

    # ---------------------------------------------------------------- ends
    def _unfinished_jobs(self) -> typing.List[int]:
        out = []
        for c in range(self.num_chunks):
            if self.results[c] is None:
                out.extend(range(self.chunk_starts[c], self.chunk_starts[c + 1]))
        return out

    def _hints(self, states: typing.Iterable[str]) -> typing.List[str]:
        """The scheduler's advice for these states, each once."""
        out = []
        for state in states:
            hint = self.scheduler.hint(state)
            if hint and "Hint: " + hint not in out:
                out.append("Hint: " + hint)
        return out

    def _fail_lost(self, chunks: typing.List[int]) -> None:
        lines = []
        jobs = []
        for c in chunks:
            r = range(self.chunk_starts[c], self.chunk_starts[c + 1])
            jobs.extend(r)
            which = (
                "job {:d}".format(r.start)
                if len(r) == 1
                else "jobs {:d} to {:d}".format(r.start, r.stop - 1)
            )
            lines.append(
                "{:s} (chunk {:d}):\n  ".format(which, c)
                + "\n  ".join(self.loss_reports.get(c, []))
            )
        hints = self._hints(s for c in chunks for s in self.lost_states.get(c, []))
        msg = (
            "pypoolparty: jobs were lost {:d} times, more than "
            "max_num_resubmissions={:d}: their workers ended without "
            "returning a result (killed, out of time or memory, node "
            "failure, or cancelled).\n{:s}\n{:s}Work dir kept: {:s} (log: {:s})."
        ).format(
            self.settings.max_num_resubmissions + 1,
            self.settings.max_num_resubmissions,
            "\n".join(lines),
            "".join(h + "\n" for h in hints),
            self.work_dir.path,
            self.work_dir.log_path,
        )
        self.fail(
            errors.JobsLostError(msg, job_indices=jobs, work_dir=self.work_dir.path),
            cancel=True,
            keep=True,
        )

    def _complete(self) -> None:
        """Every chunk has a result: tidy up and deliver."""
        self.active = False
        never_started = self._never_started_alive_workers()
        if never_started:
            self._cancel_workers(never_started)
        self.log.event("completed", num_jobs=self.num_jobs)
        self._close(keep=self.settings.keep_work_dir)
        self._to_sink(self.sink.completed)

    def _never_started_alive_workers(self) -> typing.List[str]:
        try:
            started = self.work_dir.started_workers()
        except FileNotFoundError:
            started = set()
        return [
            w
            for w, r in self.workers.items()
            if w not in started and not r.confirmed_ended
        ]

    def fail(self, exc: BaseException, cancel: bool = True, keep: bool = True) -> None:
        """End the map with ``exc``: cancel its workers, keep the work dir."""
        with self.lock:
            if not self.active:
                return
            self.active = False
            self.log.warning("failed", error=repr(exc), work_dir=self.work_dir.path)
            if cancel:
                self._cancel_all_workers()
            self._close(keep=keep or self.settings.keep_work_dir)
            self._to_sink(self.sink.failed, exc)

    def cancel(self, reason: str = "cancelled") -> None:
        """The caller gave up (Ctrl-C, an exception, terminate())."""
        self.cancel_requested = True
        with self.lock:
            if not self.active:
                return
            self.active = False
            self.log.warning("cancelled", reason=reason, work_dir=self.work_dir.path)
            self._cancel_all_workers()
            self._close(keep=True)
            self._to_sink(
                self.sink.failed,
                errors.CancelledError(
                    "pypoolparty: {:s}; the map's jobs were cancelled. Work dir "
                    "kept: {:s}".format(reason, self.work_dir.path)
                ),
            )

    def _cancel_all_workers(self) -> None:
        ids = [w for w, r in self.workers.items() if not r.confirmed_ended]
        self._cancel_workers(ids)

    def _cancel_workers(self, ids: typing.List[str]) -> None:
        if not ids:
            return
        try:
            self.scheduler.cancel(ids, self.log)
        except errors.SchedulerCommandError as err:
            self.log.warning("cancel_failed", workers=ids, error=str(err))
            print(
                "pypoolparty: could not cancel workers {:s}: {:s}".format(
                    ", ".join(ids[:10]), str(err)
                ),
                file=sys.stderr,
            )

    def _close(self, keep: bool) -> None:
        if self.submissions:
            reaper.withdraw(self.work_dir.path)
        if keep:
            self.log.event("work_dir_kept", path=self.work_dir.path)
            self.log.close()
        else:
            self.log.close()
            self.work_dir.remove()

    def _to_sink(self, method, *args) -> None:
        """Deliver to the sink; a user's callback that raises is reported."""
        try:
            method(*args)
        except Exception:
            print("pypoolparty: exception in a result callback:", file=sys.stderr)
            traceback.print_exc()
