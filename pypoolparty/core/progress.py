"""
A live progress bar for each map (tqdm's, as a widget in a notebook), fed
by its :class:`~.map_run.MapRun`::

    MapRun                          MapProgress
    ------                          -----------
    made                        ->  start(...)      the bar, not shown yet
    collect() (every round)     ->  tick()          redraw
    _take_result(chunk)         ->  jobs_done(num)  count the jobs, redraw
    _release_lost(chunk)        ->  chunk_lost()    count the resubmissions
    _complete() / _stop()       ->  close(ok)       the last draw

Each draw counts the workers running and pending in the fleet's records,
at most every :data:`REFRESH` seconds.

Everything the bar shows is what the map and the fleet know already: it
costs no scheduler call and no look at the filesystem. A bar appears only
once its map has run for :data:`DELAY` seconds, so that a loop of short
maps (a sampler's, an optimiser's) prints nothing. A bar that showed stays
on screen when its map ends, unless the map followed the pool's previous
one within :data:`LOOP_GAP` seconds: in a loop each bar takes the place of
the last. An error of the bar turns the bar off; it never reaches the map.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import sys
import time
import typing
import weakref

from . import terminal
from .event_lines import map_label
from .scheduler import WorkerState

if typing.TYPE_CHECKING:
    from .workers import Fleet

logger = logging.getLogger("pypoolparty")

#: Seconds a map runs before its bar appears.
DELAY = 2.0

#: Seconds between two counts of the workers (and redraws of the bar).
REFRESH = 0.5

#: Columns and lines of a terminal that says it has none (a pseudo-terminal
#: nobody sized): tqdm would draw nothing.
FALLBACK_SIZE = (100, 24)

#: A map that starts within this many seconds after the pool's previous
#: map ended is part of a loop: its bar is cleared when it ends.
LOOP_GAP = 1.0

# When the last map of each pool (its fleet) ended.
_last_end: "weakref.WeakKeyDictionary[Fleet, float]" = weakref.WeakKeyDictionary()



def in_notebook() -> bool:
    """True in a Jupyter kernel (where tqdm.auto draws a widget)."""
    if "ipykernel" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and hasattr(shell, "kernel")


def watched() -> bool:
    """A person watches: stderr is a terminal, or this is a notebook."""
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):
        pass  # a replaced or closed stderr
    return in_notebook()


def wanted(setting: typing.Optional[bool]) -> bool:
    """The pool's ``progress=``: True/False, or None for :func:`watched`."""
    return watched() if setting is None else bool(setting)


def worker_counts(fleet: Fleet) -> typing.Tuple[int, int]:
    """The pool's workers (running, pending) as its last poll saw them."""
    running = pending = 0
    with fleet.lock:
        for rec in fleet.records.values():
            if rec.confirmed_ended:
                continue
            # A worker that delivered a result runs, whatever the last poll saw.
            if rec.status.state is WorkerState.RUNNING or (rec.served and rec.status.state.is_alive):
                running += 1
            elif rec.status.state in (WorkerState.PENDING, WorkerState.HELD):
                pending += 1
    return running, pending


def _guarded(method: typing.Callable) -> typing.Callable:
    """Run ``method`` only while the bar lives; an error ends the bar, not the map."""

    @functools.wraps(method)
    def guarded(self: "MapProgress", *args, **kwargs) -> None:
        if self.bar is None:
            return
        try:
            method(self, *args, **kwargs)
        except Exception:
            logger.debug("pypoolparty: the progress bar failed; it is off", exc_info=True)
            bar, self.bar = self.bar, None
            try:
                bar.close()
            except Exception:
                pass

    return guarded


class MapProgress:
    """The bar of one map; without a bar every method does nothing.

    Parameters
    ----------
    bar : tqdm.tqdm or None
        The bar, counting jobs.
    fleet : Fleet
        The pool's workers.
    in_loop : bool
        The map came right after the pool's previous one.
    """

    def __init__(self, bar, fleet: Fleet, in_loop: bool):
        self.bar = bar
        self.fleet = fleet
        self.in_loop = in_loop
        self.resubmitted = 0
        self._last_count = -math.inf
        if bar is not None:
            terminal.bar_opened(self, time.monotonic() + DELAY)

    @classmethod
    def start(
        cls, setting: typing.Optional[bool], name: str, num_jobs: int, fleet: Fleet
    ) -> "MapProgress":
        """The bar of a map named ``name`` if ``setting`` wants one (see :func:`wanted`)."""
        bar = None
        in_loop = time.monotonic() - _last_end.get(fleet, -math.inf) < LOOP_GAP
        try:
            if wanted(setting):
                bar = new_bar(map_label(name), num_jobs)
        except Exception:
            logger.debug("pypoolparty: no progress bar", exc_info=True)
        return cls(bar, fleet, in_loop)

    @_guarded
    def tick(self) -> None:
        """Redraw, if :data:`REFRESH` has passed (and the bar shows)."""
        self._count_workers()
        self.bar.update(0)  # redraws once DELAY and the bar's mininterval passed

    @_guarded
    def jobs_done(self, num: int) -> None:
        self._count_workers()
        self.bar.update(num)

    @_guarded
    def chunk_lost(self) -> None:
        self.resubmitted += 1
        self._last_count = -math.inf  # show it at the next tick

    def close(self, ok: bool) -> None:
        """The map ended (``ok``: with every result)."""
        _last_end[self.fleet] = time.monotonic()
        terminal.bar_closed(self)
        self._close(ok)

    @_guarded
    def _close(self, ok: bool) -> None:
        self._set_postfix()
        # A bar that never showed prints nothing either way.
        self.bar.leave = not (ok and self.in_loop)
        bar, self.bar = self.bar, None
        bar.close()

    def _count_workers(self) -> None:
        """Count the workers again, if :data:`REFRESH` has passed."""
        now = time.monotonic()
        if now - self._last_count >= REFRESH:
            self._last_count = now
            self._set_postfix()

    def _set_postfix(self) -> None:
        running, pending = worker_counts(self.fleet)
        self.bar.set_postfix_str(
            "{:d} running, {:d} pending, {:d} resubmitted".format(running, pending, self.resubmitted),
            refresh=False,
        )


def new_bar(name: str, num_jobs: int):
    """A tqdm bar (a widget in a notebook) that shows after :data:`DELAY`."""
    from tqdm.auto import tqdm  # imports asyncio: only for a bar

    sized = _terminal_columns() != 0
    return tqdm(
        total=num_jobs,
        desc=name,
        unit="job",
        delay=DELAY,
        leave=True,
        dynamic_ncols=sized,
        ncols=None if sized else FALLBACK_SIZE[0],
        nrows=None if sized else FALLBACK_SIZE[1],
        mininterval=REFRESH,
        # A static 0: update(0) redraws too (tqdm's dynamic default
        # would wait for as many jobs as came between the last two draws).
        miniters=0,
    )


def _terminal_columns() -> typing.Optional[int]:
    """The columns of the terminal on stderr; None if it is none (a notebook's stream)."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return None
