"""
The pool's one supervisor thread: it drives every map in flight.

Each round it submits what the maps decided to submit, reads new result
files (often: the filesystem is cheap), and now and then asks the scheduler
for the state of every live worker of every map in one call (rarely: the
scheduler is shared by everyone on the cluster).
"""
from __future__ import annotations

import dataclasses
import threading
import time
import typing

from .. import errors
from .event_log import MultiLog
from .map_run import MapRun
from .scheduler import Scheduler


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
        ... growing, while nothing changes, up to this.
    files_growth : float
        Factor by which the wait grows after each look that found nothing.
    """

    scheduler: float = 5.0
    files_min: float = 0.02
    files_max: float = 0.25
    files_growth: float = 1.2


class Supervisor:
    """Drives the maps of one pool from a daemon thread.

    Parameters
    ----------
    scheduler : Scheduler
        Polled once per ``intervals.scheduler`` for every live worker.
    intervals : PollIntervals
        How often it looks at files and at the scheduler.
    name : str
        Names the thread.
    before_round : callable
        Called at the start of every round (the pool hands over gathered
        ``apply_async`` calls); True while calls still wait to be handed over.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        intervals: PollIntervals,
        name: str,
        before_round: typing.Callable[[], bool],
    ):
        self.scheduler = scheduler
        self.intervals = intervals
        self.name = name
        self._before_round = before_round
        self._cond = threading.Condition()
        self._runs: typing.List[MapRun] = []
        self._thread: typing.Optional[threading.Thread] = None
        self._stopping = False
        self._next_scheduler_poll = 0.0

    # -------------------------------------------------------------- control
    def add(self, run: MapRun) -> None:
        """Start driving ``run``."""
        with self._cond:
            if not any(r.active for r in self._runs):
                self._next_scheduler_poll = time.monotonic() + self.intervals.scheduler
            self._runs.append(run)
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
            self._cond.notify_all()

    def runs(self) -> typing.List[MapRun]:
        with self._cond:
            return [r for r in self._runs if r.active]

    def stop(self, timeout: typing.Optional[float] = None) -> None:
        """Let the thread end once no map is active any more."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # ----------------------------------------------------------------- loop
    def _loop(self) -> None:
        interval = self.intervals.files_min
        while True:
            pending = self._before_round()
            with self._cond:
                self._runs = [r for r in self._runs if r.active]
                if not self._runs:
                    if pending:
                        self._cond.wait(self.intervals.files_min)
                        continue
                    if self._stopping:
                        return
                    self._cond.wait()
                    interval = self.intervals.files_min
                    continue
                runs = list(self._runs)
            try:
                changed = self._round(runs)
            except BaseException as exc:  # never leave a caller waiting
                for run in runs:
                    run.fail(exc)
                changed = True
            # Ended maps must not stay referenced while the thread idles:
            # they hold their results and, through them, the pool.
            del runs
            if changed:
                interval = self.intervals.files_min
            else:
                interval = min(interval * self.intervals.files_growth, self.intervals.files_max)
            with self._cond:
                if any(r.active for r in self._runs):
                    self._cond.wait(interval)

    def _round(self, runs: typing.List[MapRun]) -> bool:
        self._submit(runs)
        changed = False
        for run in runs:
            changed |= run.collect()
        if time.monotonic() >= self._next_scheduler_poll:
            self._poll_scheduler([r for r in runs if r.active])
            self._next_scheduler_poll = time.monotonic() + self.intervals.scheduler
        return changed

    def _submit(self, runs: typing.List[MapRun]) -> None:
        """Start the workers the maps want, within the pool's budget.

        At most ``processes`` workers of the pool are alive at once, over all
        its maps; maps get workers in the order they were started.
        """
        processes = runs[0].settings.processes
        free = processes - sum(r.num_alive_workers() for r in runs if r.active)
        for run in runs:
            if free <= 0:
                return
            num = min(run.wanted_workers(), free)
            if num > 0:
                run.submit(num)
                free -= num

    def _poll_scheduler(self, runs: typing.List[MapRun]) -> None:
        ids = []
        for run in runs:
            ids.extend(run.alive_worker_ids())
        if not ids:
            return
        log = MultiLog(run.log for run in runs)
        try:
            statuses = self.scheduler.states(ids, log)
        except errors.SchedulerCommandError as err:
            for run in runs:
                run.fail(err)
            return
        for run in runs:
            run.after_poll(statuses)
