"""
The pool's one supervisor thread: it drives every map in flight and the
pool's workers.

Each round it reads new result files (often: the filesystem is cheap),
notes the workers that left on their own, submits workers when the maps
need more than are alive (within ``processes``), and now and then asks the
scheduler for the state of every live worker of the pool in one call
(rarely: the scheduler is shared by everyone on the cluster). While workers
are alive but no map runs, it only polls the scheduler.
"""
from __future__ import annotations

import dataclasses
import threading
import time
import typing

from .. import errors
from .map_run import MapRun
from .pooldir import DRIVER_BEAT_SECONDS
from .workers import Fleet


@dataclasses.dataclass(frozen=True)
class PollIntervals:
    """How often the supervisor looks.

    Parameters
    ----------
    scheduler : float
        Seconds between two status queries to the scheduler.
    files_min : float
        Seconds between two looks at the result files right after a change ...
    files_max : float
        ... growing, while nothing changes, up to this, and up to
        ``files_age`` times the age of the youngest map in flight (a map
        ends at most that fraction of its time later than its last result).
    files_growth : float
        Factor by which the wait grows after each look that found nothing.
    drain : float
        Seconds between two status queries while ``join()`` waits for the
        last workers to leave the queue.
    """

    scheduler: float = 5.0
    files_min: float = 0.002
    files_max: float = 0.25
    files_growth: float = 1.3
    files_age: float = 0.05
    drain: float = 0.5


class Supervisor:
    """Drives the maps and workers of one pool from a daemon thread.

    Parameters
    ----------
    intervals : PollIntervals
        How often it looks at files and at the scheduler.
    name : str
        Names the thread.
    before_round : callable
        Called at the start of every round (the pool hands over gathered
        ``apply_async`` calls); True while calls still wait to be handed over.
    max_num_resubmissions : int
        Submissions ending without any result in a row before the maps fail.
    """

    def __init__(
        self,
        intervals: PollIntervals,
        name: str,
        before_round: typing.Callable[[], bool],
        max_num_resubmissions: int,
    ):
        self.intervals = intervals
        self.name = name
        self._before_round = before_round
        self._max_num_resubmissions = max_num_resubmissions
        self._cond = threading.Condition()
        # Set by whoever wakes the thread, so that a wake-up that comes
        # while a round runs is not lost.
        self._woken = False
        self._runs: typing.List[MapRun] = []
        self.fleet: typing.Optional[Fleet] = None
        self._thread: typing.Optional[threading.Thread] = None
        self._stopping = False
        self._draining = False
        self._drain_started = False
        self._need_plan = False
        self._next_poll = 0.0
        self._next_beat = 0.0
        self._unproductive_in_a_row = 0
        self._last_busy = time.monotonic()
        self._unstarted_cancelled = True
        self._rounds = 0

    # -------------------------------------------------------------- control
    def add(self, run: MapRun) -> None:
        """Start driving ``run``."""
        with self._cond:
            self.fleet = run.fleet
            if not self.fleet.alive_ids():
                self._next_poll = time.monotonic() + self.intervals.scheduler
            self._runs.append(run)
            self._need_plan = True
            self._unstarted_cancelled = False
        self.ensure_thread()

    def ensure_thread(self) -> None:
        """Start the thread if it does not run (e.g. for apply_async calls).

        The pool refuses new work once closed; the supervisor takes what
        the pool gives it, also while it is stopping.
        """
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="pypoolparty-" + self.name, daemon=True
                )
                self._thread.start()
            self._woken = True
            self._cond.notify_all()

    def runs(self) -> typing.List[MapRun]:
        with self._cond:
            return [r for r in self._runs if r.active]

    def stop(self, timeout: typing.Optional[float] = None) -> None:
        """Let the thread end once no map is active any more."""
        with self._cond:
            self._stopping = True
            self._woken = True
            self._cond.notify_all()
        self._join_thread(timeout)

    def drain(self) -> None:
        """Wait for the maps, then until no worker of the pool is left in
        the queue: idle workers leave (the pool dir says closed), workers
        that never started are cancelled."""
        with self._cond:
            self._stopping = True
            self._draining = True
            self._woken = True
            self._cond.notify_all()
        self._join_thread(None)

    def _join_thread(self, timeout: typing.Optional[float]) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def settle(self, timeout: float) -> None:
        """Wait until a whole round ran after this call: the maps added
        before have had their workers submitted (or have failed)."""
        with self._cond:
            target = self._rounds + 2  # the round under way may predate the call
            self._woken = True
            self._cond.notify_all()
            deadline = time.monotonic() + timeout
            while self._rounds < target and self._thread is not None and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    # ----------------------------------------------------------------- loop
    def _loop(self) -> None:
        wait = self.intervals.files_min
        while True:
            pending = self._before_round()
            with self._cond:
                self._runs = [r for r in self._runs if r.active]
                runs = list(self._runs)
                if self._stopping and not runs and not pending and self._drain_done():
                    return
            try:
                changed = self._round(runs)
            except BaseException as exc:  # never leave a caller waiting
                for run in runs:
                    run.fail(exc)
                changed = True
            self._beat()
            with self._cond:
                self._rounds += 1
                self._cond.notify_all()
            # Ended maps must not stay referenced while the thread idles:
            # they hold their results and, through them, the pool.
            ages = [time.monotonic() - r.started for r in runs if r.active]
            active = bool(ages)
            del runs
            if changed:
                wait = self.intervals.files_min
            else:
                wait = min(wait * self.intervals.files_growth, self.intervals.files_max)
            if ages:
                wait = min(wait, max(self.intervals.files_min, self.intervals.files_age * min(ages)))
            with self._cond:
                if self._woken:
                    self._woken = False  # something came during the round
                elif pending:
                    self._cond.wait(self.intervals.files_min)
                elif active:
                    self._cond.wait(wait)
                elif self.fleet is not None and self.fleet.alive_ids():
                    self._cond.wait(max(0.0, self._next_poll - time.monotonic()))
                elif not self._stopping:
                    self._cond.wait(DRIVER_BEAT_SECONDS)  # idle: only the heartbeat

    def _beat(self) -> None:
        """Tell whoever looks from outside (the command line) that the
        driver lives: one touch of a file every DRIVER_BEAT_SECONDS."""
        if self.fleet is not None and time.monotonic() >= self._next_beat:
            self._next_beat = time.monotonic() + DRIVER_BEAT_SECONDS
            try:
                self.fleet.pool_dir.beat()
            except Exception:  # a heartbeat never stops the supervisor
                pass

    def _drain_done(self) -> bool:
        """Nothing left to wait for: not draining, or no worker alive."""
        return not self._draining or self.fleet is None or not self.fleet.alive_ids()

    def _round(self, runs: typing.List[MapRun]) -> bool:
        fleet = self.fleet
        if fleet is None:
            return False
        changed = False
        for run in runs:
            changed |= run.collect()
        live = [r for r in runs if r.active]
        log = fleet.logs(r.log for r in live)
        # Exit notes: every round while maps run, else before each poll (a
        # worker that said it leaves needs one poll, not two).
        if live and fleet.note_exits(log):
            self._need_plan = True
        if live and self._need_plan:
            self._need_plan = False
            self._submit(live, log)
        if live:
            self._last_busy = time.monotonic()
        elif self._stopping:
            self._start_drain(log)
        elif time.monotonic() - self._last_busy >= self.intervals.scheduler:
            self._cancel_unstarted(log)
        if fleet.alive_ids() and time.monotonic() >= self._next_poll:
            if not live:
                fleet.note_exits(log)
            self._poll(live, log)
            interval = self.intervals.scheduler
            if self._draining and not live:
                interval = min(interval, self.intervals.drain)
            self._next_poll = time.monotonic() + interval
        return changed

    def _submit(self, runs: typing.List[MapRun], log) -> None:
        """Start the workers the maps need, within the pool's budget.

        The maps want a worker for each unfinished chunk, up to
        ``processes``; workers alive and not leaving count against that,
        and no more are started than there are unclaimed chunks.
        """
        fleet = self.fleet
        runs = [r for r in runs if not r.cancel_if_asked()]
        demand = sum(r.unfinished() for r in runs)
        want = min(fleet.settings.processes, demand) - fleet.num_available()
        if want <= 0:
            return
        num = min(want, sum(r.unclaimed() for r in runs))
        if num <= 0:
            return
        try:
            fleet.submit(num, log)
        except errors.SchedulerCommandError as err:
            for run in runs:
                run.fail(err)

    def _cancel_unstarted(self, log) -> None:
        """No map for a polling interval: workers still queued would start
        only to wait, holding a slot. Those that run stay until their
        ``idle_timeout``; a map that comes later submits again."""
        if not self._unstarted_cancelled:
            self._unstarted_cancelled = True
            self.fleet.cancel_unstarted("no map needs it", log)

    def _start_drain(self, log) -> None:
        """The pool is closed and its work is done: cancel who never started."""
        if self._draining and not self._drain_started:
            self._drain_started = True
            self.fleet.cancel_unstarted("the pool is closed", log)
            self._next_poll = time.monotonic()

    def _poll(self, runs: typing.List[MapRun], log) -> None:
        fleet = self.fleet
        try:
            statuses = fleet.scheduler.states(fleet.alive_ids(), log)
        except errors.SchedulerCommandError as err:
            for run in runs:
                run.fail(err)
            if not runs:
                log.warning("poll_failed", error=str(err))
            if self._draining:
                # join() cannot learn when the workers are gone: cancel them
                # and stop waiting rather than hang.
                fleet.cancel(fleet.alive_ids(), "the pool ends", log)
                self._draining = False
            return
        ended, held = fleet.note_states(statuses, log)
        if held:
            fleet.replace_held(held, log)
        if ended:
            for run in runs:
                run.after_workers_ended()
            self._judge_submissions([r for r in runs if r.active], log)
        self._need_plan = True

    def _judge_submissions(self, runs: typing.List[MapRun], log) -> None:
        """Count submissions whose workers all ended without any result.

        When more than ``max_num_resubmissions`` came in a row, the maps in
        flight fail: the cause is then not the jobs but the nodes or the
        queue.
        """
        fleet = self.fleet
        for index, sub in fleet.ended_submissions():
            if sub.productive or fleet.excused(sub):
                self._unproductive_in_a_row = 0
                continue
            if not runs:
                continue
            self._unproductive_in_a_row += 1
            log.warning(
                "submission_unproductive", submission=index, in_a_row=self._unproductive_in_a_row
            )
            if self._unproductive_in_a_row > self._max_num_resubmissions:
                for run in runs:
                    run.give_up(self._unproductive_in_a_row, sub.worker_ids)
                return
