"""
One map in flight: its chunks, workers and results, and the decisions about
them.

The pool's supervisor thread (:mod:`.supervisor`) drives a :class:`MapRun`::

    supervisor round                     MapRun
    ----------------                     ------
    grant workers within the budget  ->  submit(n)
    every round (cheap)              ->  collect()          new result files
    after each scheduler poll        ->  after_poll(states)
                                           workers.note_states  ended / held workers
                                           replace_held         cancel what will not start
                                           read_new_results     \\
                                           release_lost         | each may end the map
                                           judge_submissions    /
                                           plan_workers         how many to submit next

Each step that may end the map returns :class:`Step`. The map ends when
every chunk has a result, when a job raised in a ``map`` (its own exception
is delivered and the other workers are cancelled), when a chunk was lost
more often than ``max_num_resubmissions``, when submissions keep ending
without any result, or when the caller cancels it. The messages of those
ends are built by :mod:`.reports` from typed records.
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import os
import threading
import typing

from .. import errors
from . import outcomes, reaper, reports
from .event_log import EventLog
from .scheduler import Scheduler, SubmitRequest, WorkerStatus
from .results import ResultSink
from .workdir import WorkDir
from .workers import MapWorkers

logger = logging.getLogger("pypoolparty")


class Step(enum.Enum):
    """What a decision step left behind."""

    GOING = "going"
    """The map goes on."""
    ENDED = "ended"
    """The map ended in this step; its outcome was delivered."""


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
    scheduler : Scheduler
        The adapter used to submit and cancel.
    settings : MapSettings
        The pool's settings.
    sink : ResultSink
        Receives results, completion or failure.
    log : EventLog
        The map's JSON-lines log.
    stop_on_failure : bool
        True: the first job that raises ends the map (``map``). False: each
        failure goes to the sink and the other jobs go on (``imap``, apply).
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
        stop_on_failure: bool,
    ):
        self.work_dir = work_dir
        self.chunk_starts = chunk_starts
        self.num_chunks = len(chunk_starts) - 1
        self.scheduler = scheduler
        self.settings = settings
        self.sink = sink
        self.log = log
        self.stop_on_failure = stop_on_failure
        self.place = reports.Place(work_dir.path, work_dir.log_path)
        self.lock = threading.RLock()
        self.active = True
        self.results: typing.List[typing.Optional[outcomes.ChunkResult]] = [
            None
        ] * self.num_chunks
        self.num_finished = 0
        self.losses: typing.Dict[int, typing.List[reports.Loss]] = {}
        self.workers = MapWorkers(scheduler, log, work_dir)
        self.unproductive_in_a_row = 0
        self._wanted = num_workers

    # ------------------------------------------------------------ queries
    @property
    def num_jobs(self) -> int:
        return self.chunk_starts[-1]

    def chunk_jobs(self, chunk: int) -> range:
        """The job indices of ``chunk``."""
        return range(self.chunk_starts[chunk], self.chunk_starts[chunk + 1])

    def alive_worker_ids(self) -> typing.List[str]:
        """Workers whose state the map still needs (none once it ended)."""
        with self.lock:
            return self.workers.alive_ids() if self.active else []

    def num_alive_workers(self) -> int:
        """Workers that may still run: all not confirmed ended.

        A worker seen ended once still holds its claims until the next poll
        confirms its end and releases them; replacing it earlier would start
        a worker that finds nothing to do.
        """
        return len(self.workers.alive_ids())

    def wanted_workers(self) -> int:
        """Workers this map would start now, if the pool's budget allows."""
        with self.lock:
            return self._wanted if self.active else 0

    # ---------------------------------------------------------- submitting
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
                self.fail(err)
                return
            self._wanted = max(0, self._wanted - len(ids))
            index = self.workers.add_submission(ids)
            self.log.event("submitted", submission=index, workers=ids)
            # Should this process die without cleaning up, the reaper
            # cancels the map's workers.
            reaper.register(self.work_dir.path, self.scheduler.cancel_commands(self.workers.alive_ids()))

    # ---------------------------------------------------------- collecting
    def collect(self) -> bool:
        """Read result files that appeared; True if any did or the map ended."""
        with self.lock:
            if not self.active:
                return False
            before = self.num_finished
            self._read_new_results()
            return self.num_finished != before or not self.active

    def _read_new_results(self) -> Step:
        """Take the chunks whose result files appeared; complete the map."""
        try:
            on_disk = self.work_dir.finished_chunks()
        except FileNotFoundError:
            return Step.GOING
        for chunk in sorted(c for c in on_disk if self.results[c] is None):
            if self._take_result(chunk) is Step.ENDED:
                return Step.ENDED
        if self.num_finished == self.num_chunks:
            self._complete()
            return Step.ENDED
        return Step.GOING

    def _take_result(self, chunk: int) -> Step:
        """Read one chunk's result and pass it on; a job's failure may end the map."""
        try:
            result = outcomes.decode(self.work_dir.read_result(chunk))
        except Exception as exc:
            self.log.warning("result_unreadable", chunk=chunk, error=repr(exc))
            self.fail(errors.MaybeEncodingError(exc, "result of chunk {:d}".format(chunk)))
            return Step.ENDED
        self.results[chunk] = result
        self.num_finished += 1
        self.workers.credit(result.worker_id)
        pairs = []
        for job, outcome in zip(self.chunk_jobs(chunk), result.outcomes):
            if outcome.ok:
                pairs.append((True, outcome.value))
                continue
            exc = self._job_exception(job, result.worker_id, outcome.failure)
            if self.stop_on_failure:
                self.fail(exc)
                return Step.ENDED
            pairs.append((False, exc))
        self._deliver(self.sink.chunk_done, chunk, self.chunk_starts[chunk], pairs)
        return Step.GOING

    def _job_exception(
        self, job: int, worker_id: str, failure: outcomes.Failure
    ) -> BaseException:
        """The job's own exception, its remote traceback attached as cause."""
        self.log.event(
            "job_raised", job=job, worker=worker_id, exception=repr(failure.exception)
        )
        exc = failure.exception
        exc.__cause__ = errors.RemoteTraceback(
            reports.remote_traceback(
                failure.traceback, job, worker_id, self.stop_on_failure, self.place
            )
        )
        return exc

    # ------------------------------------------------------ scheduler poll
    def after_poll(self, statuses: typing.Mapping[str, WorkerStatus]) -> None:
        """Update the workers from one scheduler poll and decide what to do."""
        with self.lock:
            if not self.active:
                return
            ended, held = self.workers.note_states(statuses)
            self._replace_held(held)
            if ended:
                for step in (self._read_new_results, self._release_lost, self._judge_submissions):
                    if step() is Step.ENDED:
                        return
            self._plan_workers()

    def _replace_held(self, held: typing.List[str]) -> None:
        """Cancel workers stuck in an error-like pending state; others replace them."""
        for wid in held:
            self.workers.mark_held(wid)
        self._cancel_workers(held)

    def _release_lost(self) -> Step:
        """Release chunks that ended workers claimed but left without a result.

        Ends the map when a chunk was lost more than ``max_num_resubmissions``
        times.
        """
        unfinished = [c for c in self.work_dir.claimed_chunks() if self.results[c] is None]
        for chunk, wid in sorted(self.work_dir.claims(unfinished).items()):
            rec = self.workers.records.get(wid)
            if rec is None or not rec.confirmed_ended:
                continue
            if self.work_dir.has_result(chunk):
                continue  # landed just now; the next collect reads it
            loss = reports.Loss(
                chunk=chunk, attempt=len(self.losses.get(chunk, ())) + 1, end=self.workers.end_of(wid)
            )
            self.losses.setdefault(chunk, []).append(loss)
            self.log.warning(
                "chunk_lost",
                chunk=chunk,
                worker=wid,
                attempt=loss.attempt,
                scheduler_state=rec.status.scheduler_state,
                reason=rec.status.reason,
            )
            if loss.attempt > self.settings.max_num_resubmissions:
                message = reports.jobs_lost(
                    {chunk: self.losses[chunk]},
                    self.chunk_jobs,
                    self.settings.max_num_resubmissions,
                    self._advice(loss.end.cause_state for loss in self.losses[chunk]),
                    self.place,
                )
                self.fail(errors.JobsLostError(message, self.chunk_jobs(chunk), self.place.work_dir))
                return Step.ENDED
            self.work_dir.release(chunk)
        return Step.GOING

    def _judge_submissions(self) -> Step:
        """Count submissions whose workers all ended without any result.

        Ends the map when more than ``max_num_resubmissions`` came in a row:
        the cause is then not the jobs but the nodes or the queue.
        """
        for index, sub in self.workers.ended_submissions():
            if sub.productive:
                self.unproductive_in_a_row = 0
                continue
            if self.num_finished == self.num_chunks:
                continue
            self.unproductive_in_a_row += 1
            self.log.warning(
                "submission_unproductive", submission=index, in_a_row=self.unproductive_in_a_row
            )
            if self.unproductive_in_a_row > self.settings.max_num_resubmissions:
                message = reports.unproductive_submissions(
                    self.unproductive_in_a_row,
                    [self.workers.end_of(w) for w in sub.worker_ids[:3]],
                    self._advice(self.workers.records[w].cause_state for w in sub.worker_ids),
                    self.place,
                )
                self.fail(errors.JobsLostError(message, self._unfinished_jobs(), self.place.work_dir))
                return Step.ENDED
        return Step.GOING

    def _plan_workers(self) -> None:
        """Want as many workers as the unfinished chunks keep busy, within ``processes``.

        Each live worker runs or will run one of the unfinished chunks; each
        further unclaimed chunk wants a worker of its own while
        ``processes`` allows. So a lost chunk gets a new worker while the
        others are busy, and a map that got fewer workers than it wanted
        (the pool's budget was taken) asks again once budget is free.
        """
        try:
            done = self.work_dir.finished_chunks()
            claimed = self.work_dir.claimed_chunks()
        except FileNotFoundError:
            return
        unfinished = [c for c in range(self.num_chunks) if self.results[c] is None and c not in done]
        unclaimed = sum(1 for c in unfinished if c not in claimed)
        wanted = min(self.settings.processes, len(unfinished))
        deficit = max(0, min(wanted - self.num_alive_workers(), unclaimed))
        if deficit > 0 and deficit != self._wanted:
            self.log.event("resubmit", workers=deficit, unclaimed_chunks=unclaimed)
        self._wanted = deficit

    # -------------------------------------------------------------- facts
    def _advice(self, states: typing.Iterable[str]) -> typing.List[str]:
        return reports.hints(states, self.scheduler.hint)

    def _unfinished_jobs(self) -> typing.List[int]:
        return [
            job
            for c in range(self.num_chunks)
            if self.results[c] is None
            for job in self.chunk_jobs(c)
        ]

    # ---------------------------------------------------------------- ends
    def _complete(self) -> None:
        """Every chunk has a result: cancel workers that never started, deliver."""
        self.active = False
        try:
            started = self.work_dir.started_workers()
        except FileNotFoundError:
            started = set()
        self._cancel_workers([w for w in self.workers.alive_ids() if w not in started])
        self.log.event("completed", num_jobs=self.num_jobs)
        self._close(keep=self.settings.keep_work_dir)
        self._deliver(self.sink.completed)

    def fail(self, exc: BaseException) -> None:
        """End the map with ``exc``: cancel its workers, keep the work dir."""
        self._stop(exc, "failed", error=repr(exc))

    def cancel(self, reason: str = "cancelled") -> None:
        """The caller gave up (Ctrl-C, an exception, terminate())."""
        exc = errors.CancelledError(reports.cancelled(reason, self.work_dir.path))
        self._stop(exc, "cancelled", reason=reason)

    def _stop(self, exc: BaseException, event: str, **fields) -> None:
        with self.lock:
            if not self.active:
                return
            self.log.warning(event, work_dir=self.work_dir.path, **fields)
            self.active = False
            self._cancel_workers(self.workers.alive_ids())
            self._close(keep=True)
            self._deliver(self.sink.failed, exc)

    def _cancel_workers(self, ids: typing.List[str]) -> None:
        if not ids:
            return
        try:
            self.scheduler.cancel(ids, self.log)
        except errors.SchedulerCommandError as err:
            self.log.warning("cancel_failed", workers=ids, error=str(err))
            logger.warning(
                "pypoolparty: could not cancel workers %s: %s", ", ".join(ids[:10]), err
            )

    def _close(self, keep: bool) -> None:
        if self.workers.submissions:
            reaper.withdraw(self.work_dir.path)
        if keep:
            self.log.event("work_dir_kept", path=self.work_dir.path)
        self.log.close()
        if not keep:
            self.work_dir.remove()

    def _deliver(self, method: typing.Callable, *args) -> None:
        """Pass an outcome to the sink; a user's callback that raises is logged."""
        try:
            method(*args)
        except Exception:
            logger.exception("pypoolparty: exception in a result callback")
