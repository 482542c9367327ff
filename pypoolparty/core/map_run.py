"""
One map in flight: its chunks and results, and the decisions about them.

The pool's supervisor thread (:mod:`.supervisor`) drives a :class:`MapRun`;
the workers are the pool's (:mod:`.workers`), shared by all its maps::

    supervisor round                       MapRun
    ----------------                       ------
    every round (cheap)                ->  collect()              new result files
    before it plans workers            ->  unfinished(), unclaimed()
    after a poll confirmed ended       ->  after_workers_ended()
    workers                                  read_new_results   \\ each may
                                             release_lost       / end the map
    after submissions kept failing     ->  give_up(...)

Each step that may end the map returns :class:`Step`. The map ends when
every chunk has a result, when a job raised in a ``map`` (its own exception
is delivered and the workers running its other chunks are cancelled), when a
chunk was lost more often than ``max_num_resubmissions``, when the pool's
submissions keep ending without any result, or when the caller cancels it.
The messages of those ends are built by :mod:`.reports` from typed records;
a map that fails writes its report page (:mod:`.report_page`) first, and
the message names it.
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import os
import threading
import time
import typing

from .. import errors
from . import outcomes, report_page, reports
from .event_log import EventLog
from .pooldir import PoolDir
from .progress import MapProgress
from .results import ResultSink
from .workdir import WorkDir
from .workers import Fleet

logger = logging.getLogger("pypoolparty")

#: The log keeps the remote traceback of this many failed jobs per map (the
#: report shows them), each cut to its last this many characters.
LOGGED_TRACEBACKS = 100
LOGGED_TRACEBACK_CHARS = 4000


class Step(enum.Enum):
    """What a decision step left behind."""

    GOING = "going"
    """The map goes on."""
    ENDED = "ended"
    """The map ended in this step; its outcome was delivered."""


@dataclasses.dataclass(frozen=True)
class MapSettings:
    """The pool's settings that a map needs."""

    max_num_resubmissions: int
    keep_work_dir: bool
    progress: typing.Optional[bool] = None
    """Show a bar (see :mod:`.progress`); None: where a person watches."""


class MapRun:
    """The state of one map and what to do next.

    Parameters
    ----------
    work_dir : WorkDir
        The map's directory, with its inputs written.
    chunk_starts : list of int
        First job of each chunk, plus the number of jobs.
    pool_dir : PoolDir
        The pool's folder; the map is open to the workers while it runs.
    fleet : Fleet
        The pool's workers.
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
        pool_dir: PoolDir,
        fleet: Fleet,
        settings: MapSettings,
        sink: ResultSink,
        log: EventLog,
        stop_on_failure: bool,
    ):
        self.work_dir = work_dir
        self.chunk_starts = chunk_starts
        self.num_chunks = len(chunk_starts) - 1
        self.pool_dir = pool_dir
        self.fleet = fleet
        self.settings = settings
        self.sink = sink
        self.log = log
        self.stop_on_failure = stop_on_failure
        self.place = reports.Place(work_dir.path, work_dir.log_path, work_dir.report_path)
        self.lock = threading.RLock()
        self.started = time.monotonic()
        self.active = True
        self.results: typing.List[typing.Optional[outcomes.ChunkResult]] = [
            None
        ] * self.num_chunks
        self.num_finished = 0
        self.losses: typing.Dict[int, typing.List[reports.Loss]] = {}
        self._tracebacks_logged = 0
        self.progress = MapProgress.start(settings.progress, work_dir.name, self.num_jobs, fleet)
        pool_dir.open_map(work_dir)

    # ------------------------------------------------------------ queries
    @property
    def num_jobs(self) -> int:
        return self.chunk_starts[-1]

    def chunk_jobs(self, chunk: int) -> range:
        """The job indices of ``chunk``."""
        return range(self.chunk_starts[chunk], self.chunk_starts[chunk + 1])

    def unfinished(self) -> int:
        """Chunks without a result (none once the map ended)."""
        with self.lock:
            return self.num_chunks - self.num_finished if self.active else 0

    def unclaimed(self) -> int:
        """Chunks no worker claimed yet (one listdir)."""
        with self.lock:
            if not self.active:
                return 0
            try:
                return self.num_chunks - len(self.work_dir.claimed_chunks())
            except FileNotFoundError:
                return 0

    # ---------------------------------------------------------- collecting
    def collect(self) -> bool:
        """Read result files that appeared; True if any did or the map ended."""
        with self.lock:
            if not self.active:
                return False
            before = self.num_finished
            self._read_new_results()
            self.progress.tick()
            return self.num_finished != before or not self.active

    def _read_new_results(self) -> Step:
        """Take the chunks whose result files appeared; complete the map."""
        try:
            on_disk = self.work_dir.finished_chunks()
        except FileNotFoundError:
            if os.path.isdir(self.work_dir.path):
                return Step.GOING
            self.fail(
                errors.WorkDirError(
                    "pypoolparty: the folder of this map, {!r}, was removed while it "
                    "ran: by hand, or by another driver that ran the same map (one "
                    "adopted from a driver that seemed dead). What that driver "
                    "finished is in its store; run the call again.".format(self.work_dir.path)
                )
            )
            return Step.ENDED
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
        self.fleet.credit(result.worker_id)
        num_jobs = len(self.chunk_jobs(chunk))
        self.progress.jobs_done(num_jobs)
        self.log.event(
            "chunk_done",
            chunk=chunk,
            worker=result.worker_id,
            host=result.host,
            started=round(result.started, 3),
            ended=round(result.ended, 3),
            num_jobs=num_jobs,
            failed=result.failure is not None,
        )
        pairs = []
        for job, outcome in zip(self.chunk_jobs(chunk), result.outcomes):
            if outcome.ok:
                pairs.append((True, outcome.value))
                continue
            exc = self._job_exception(job, result.worker_id, outcome.failure)
            if self.stop_on_failure:
                self._keep(chunk, pairs)
                self.fail(exc)
                return Step.ENDED
            pairs.append((False, exc))
        self._deliver(self.sink.chunk_done, chunk, self.chunk_starts[chunk], pairs)
        return Step.GOING

    def _job_exception(
        self, job: int, worker_id: str, failure: outcomes.Failure
    ) -> BaseException:
        """The job's own exception, its remote traceback attached as cause."""
        fields = {}
        if self._tracebacks_logged < LOGGED_TRACEBACKS:
            self._tracebacks_logged += 1
            fields["traceback"] = failure.traceback[-LOGGED_TRACEBACK_CHARS:]
        self.log.event(
            "job_raised",
            job=job,
            worker=worker_id,
            exception=repr(failure.exception),
            exception_type=type(failure.exception).__qualname__,
            **fields,
        )
        exc = failure.exception
        exc.__cause__ = errors.RemoteTraceback(
            reports.remote_traceback(
                failure.traceback, job, worker_id, self.stop_on_failure, self.place
            )
        )
        return exc

    def cancel_if_asked(self) -> bool:
        """End the map if ``pypoolparty cancel`` asked for it (one open of
        a file; looked at before workers are submitted and when some ended,
        not every round)."""
        with self.lock:
            if not self.active:
                return False
            note = self.work_dir.cancel_request()
            if note is None:
                return False
            who = " by {}@{}".format(note.get("user", "?"), note.get("host", "?")) if note else ""
            self.cancel("the map was cancelled with `pypoolparty cancel`" + who)
            return True

    # ------------------------------------------------------ scheduler poll
    def after_workers_ended(self) -> None:
        """A poll confirmed that workers ended: take their last results,
        release what they left unfinished (unless the map was cancelled
        from the command line)."""
        with self.lock:
            if not self.active or self.cancel_if_asked():
                return
            for step in (self._read_new_results, self._release_lost):
                if step() is Step.ENDED:
                    return

    def _release_lost(self) -> Step:
        """Release chunks that ended workers claimed but left without a result.

        Ends the map when a chunk was lost more than ``max_num_resubmissions``
        times.
        """
        unfinished = [c for c in self.work_dir.claimed_chunks() if self.results[c] is None]
        for chunk, wid in sorted(self.work_dir.claims(unfinished).items()):
            rec = self.fleet.records.get(wid)
            if rec is None:
                # A worker of a dead driver's pool whose map this pool
                # adopted, unknown so far: watch it from now on.
                self.fleet.adopt([wid], self.log)
                continue
            if not rec.confirmed_ended:
                continue
            if self.work_dir.has_result(chunk):
                continue  # landed just now; the next collect reads it
            loss = reports.Loss(
                chunk=chunk,
                attempt=len(self.losses.get(chunk, ())) + 1,
                end=self.fleet.end_of(wid, self.log),
            )
            self.losses.setdefault(chunk, []).append(loss)
            self.log.warning(
                "chunk_lost",
                chunk=chunk,
                worker=wid,
                attempt=loss.attempt,
                max_num_resubmissions=self.settings.max_num_resubmissions,
                scheduler_state=rec.status.scheduler_state,
                reason=rec.status.reason,
            )
            self.progress.chunk_lost()
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

    def give_up(self, in_a_row: int, worker_ids: typing.List[str]) -> None:
        """The pool's submissions ended ``in_a_row`` times without any result:
        the cause is not the jobs but the nodes or the queue."""
        with self.lock:
            if not self.active:
                return
            message = reports.unproductive_submissions(
                in_a_row,
                [self.fleet.end_of(w, self.log) for w in worker_ids[:3]],
                self._advice(self.fleet.records[w].cause_state for w in worker_ids),
                self.place,
            )
            self.fail(errors.JobsLostError(message, self._unfinished_jobs(), self.place.work_dir))

    # -------------------------------------------------------------- facts
    def _seconds(self) -> float:
        """How long the map has run."""
        return round(time.monotonic() - self.started, 3)

    def _advice(self, states: typing.Iterable[str]) -> typing.List[str]:
        return reports.hints(states, self.fleet.scheduler.hint)

    def _unfinished_jobs(self) -> typing.List[int]:
        return [
            job
            for c in range(self.num_chunks)
            if self.results[c] is None
            for job in self.chunk_jobs(c)
        ]

    # ---------------------------------------------------------------- ends
    def _complete(self) -> None:
        """Every chunk has a result: deliver."""
        self.active = False
        self.progress.close(ok=True)
        self.log.event("completed", num_jobs=self.num_jobs, seconds=self._seconds())
        self._close(keep=self.settings.keep_work_dir)
        self._deliver(self.sink.completed)

    def fail(self, exc: BaseException) -> None:
        """End the map with ``exc``: stop its jobs, keep the work dir."""
        self._stop(exc, "failed", error=repr(exc))

    def cancel(self, reason: str = "cancelled") -> None:
        """The caller gave up (Ctrl-C, an exception, terminate())."""
        exc = errors.CancelledError(reports.cancelled(reason, self.work_dir.path))
        self._stop(exc, "cancelled", reason=reason)

    def _stop(self, exc: BaseException, event: str, **fields) -> None:
        with self.lock:
            if not self.active:
                return
            self.progress.close(ok=False)
            self.log.warning(event, work_dir=self.work_dir.path, seconds=self._seconds(), **fields)
            self.active = False
            self.pool_dir.close_map(self.work_dir)
            self._cancel_running_chunks()
            self._salvage()
            if event == "failed":
                self._write_report()
            self._close(keep=True)
            self._deliver(self.sink.failed, exc)

    def _write_report(self) -> None:
        """Write the report page that the error names; a report that cannot
        be written is logged, and the error goes on to the caller."""
        try:
            report_page.write(self.work_dir.path, self.place.report)
        except Exception as exc:
            self.log.warning("report_failed", path=self.place.report, error=repr(exc))
        else:
            self.log.event("report_written", path=self.place.report)

    def _keep(self, chunk: int, pairs: typing.List[typing.Tuple[bool, typing.Any]]) -> None:
        """Hand results the caller will not see to a sink that keeps them (a store's)."""
        keep = getattr(self.sink, "keep", None)
        if keep is not None and pairs:
            self._deliver(keep, chunk, self.chunk_starts[chunk], pairs)

    def _salvage(self) -> None:
        """The map ends early: results that came but were not taken yet go to
        a sink that keeps them, so that they need not run again."""
        if getattr(self.sink, "keep", None) is None:
            return
        try:
            on_disk = self.work_dir.finished_chunks()
        except FileNotFoundError:
            return
        for chunk in sorted(c for c in on_disk if self.results[c] is None):
            try:
                result = outcomes.decode(self.work_dir.read_result(chunk))
            except Exception:
                continue
            self._keep(chunk, [(o.ok, o.value) for o in result.outcomes])

    def _cancel_running_chunks(self) -> None:
        """Cancel the workers that run this map's chunks; the pool's other
        maps keep the rest (and get new workers if they need them).

        With no other map open, the workers that have not delivered any
        result yet (queued, starting, or about to claim a chunk of this
        map) go too: the map's cancel takes every job started for it. The
        workers that served earlier maps stay for the next one.
        """
        try:
            running = set(self.work_dir.running_claims().values())
        except FileNotFoundError:
            running = set()
        self.fleet.cancel(sorted(running), "its map ended", self.log)
        try:
            others_open = bool(self.pool_dir.look().maps)
        except FileNotFoundError:
            others_open = False
        if not others_open:
            self.fleet.cancel_unserved("its map ended", self.log)

    def _close(self, keep: bool) -> None:
        self.pool_dir.close_map(self.work_dir)
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
