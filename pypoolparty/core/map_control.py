"""
Acting on a work dir from outside the driver: cancel a map, clean up.

The command line's ``cancel`` and ``clean`` (:mod:`pypoolparty.cli`). A map
is cancelled in three steps, so that neither its driver nor its workers go
on with it: a note in the map dir asks the driver to end the map (it looks
when its workers end, and before it submits new ones); the map leaves the
pool's ``open/`` list, so no worker claims another of its chunks; and the
workers running its chunks are cancelled with the adapter the pool kept --
all the pool's live workers when no other map of the pool is open. A driver
that died is thus not needed.
"""
from __future__ import annotations

import dataclasses
import datetime
import getpass
import os
import socket
import time
import typing

from .. import errors
from . import work_listing
from .event_log import EventLog
from .pooldir import CLOSED, STOP, PoolDir
from .scheduler import WorkerState


@dataclasses.dataclass
class CancelOutcome:
    """What ``cancel`` did.

    ``workers`` were cancelled; ``error`` is why some could not be (then
    ``left`` names them, to cancel by hand).
    """

    map_dir: str
    already_ended: bool = False
    workers: typing.List[str] = dataclasses.field(default_factory=list)
    left: typing.List[str] = dataclasses.field(default_factory=list)
    error: str = ""


@dataclasses.dataclass
class CleanOutcome:
    """What ``clean`` removed (or would, with ``dry_run``) and what it kept, and why."""

    removed: typing.List[str] = dataclasses.field(default_factory=list)
    kept: typing.List[typing.Tuple[str, str]] = dataclasses.field(default_factory=list)


def cancel_map(path: str) -> CancelOutcome:
    """Cancel the map in ``path`` and its workers.

    Raises
    ------
    work_listing.NotAWorkDir
        If ``path`` is not a map dir.
    """
    own_pool, work_dir = work_listing.map_dir(path)
    history = work_listing.read_history(work_dir.log_path, work_dir.path)
    # A map adopted by another driver (its own died) is that pool's now.
    pool_dir = work_listing.driving_pool(own_pool, history)
    pool_history = work_listing.read_pool_log(pool_dir)
    driver = work_listing.driver_of(pool_dir, pool_history)
    status = work_listing.map_status(work_dir, pool_dir, driver, time.time(), history)
    outcome = CancelOutcome(map_dir=work_dir.path)
    if status.state.ended:
        outcome.already_ended = True
        return outcome
    # Who runs it is decided first: the driver, once it reads the note,
    # cancels them too, and then they would look ended already.
    scheduler = work_listing.load_scheduler(pool_dir)
    targets = _workers_of(pool_dir, pool_history, work_dir, scheduler)
    work_dir.request_cancel(
        {
            "time": datetime.datetime.now().isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "user": getpass.getuser(),
        }
    )
    for pool in {own_pool.path: own_pool, pool_dir.path: pool_dir}.values():
        pool.close_map(work_dir)
    if driver is not None and driver.alive is False:
        # No driver will end the map: say so in its log (no one else writes it).
        log = EventLog(work_dir.log_path, append=True)
        log.warning("cancelled", reason="cancelled with `pypoolparty cancel`; its driver was gone")
        log.close()
    if not targets:
        return outcome
    if scheduler is None:
        outcome.left = targets
        outcome.error = (
            "the pool kept no scheduler adapter it could load (scheduler.pickle), so its "
            "workers must be cancelled by hand"
        )
        return outcome
    try:
        scheduler.cancel(targets, EventLog(None))
    except errors.SchedulerCommandError as err:
        outcome.left = targets
        outcome.error = str(err)
        return outcome
    outcome.workers = targets
    return outcome


def _workers_of(pool_dir: PoolDir, pool_history, work_dir, scheduler) -> typing.List[str]:
    """The workers to cancel: those running the map's chunks, or all the
    pool's live workers when no other map of the pool is open."""
    try:
        others_open = bool(set(pool_dir.look().maps) - {work_dir.name})
    except FileNotFoundError:
        others_open = False
    if not others_open:
        return work_listing.live_workers(pool_dir, pool_history, scheduler)
    try:
        return sorted(set(work_dir.running_claims().values()))
    except FileNotFoundError:
        return []


def clean(path: str, dry_run: bool = False) -> CleanOutcome:
    """Remove the maps under ``path`` that ended, and pools with nothing left.

    A map is removed when its log says it completed, failed or was
    cancelled and its driver is done with its folder (or gone). A pool's
    folder goes when no map is left in it, none of its workers is alive,
    and it was closed or stopped or its driver is gone. Everything else is
    kept, with the reason. Given a map's folder, only that map is looked at.

    Raises
    ------
    work_listing.NotAWorkDir
        If ``path`` is not a folder.
    """
    outcome = CleanOutcome()
    if work_listing.is_map_dir(path):
        pool_dir, work_dir = work_listing.map_dir(path)
        driver = work_listing.driver_of(pool_dir)
        status = work_listing.map_status(work_dir, pool_dir, driver, time.time())
        _clean_map(pool_dir, status, dry_run, outcome)
        return outcome
    for pool_dir in work_listing.pool_dirs(path):
        status = work_listing.pool_status(pool_dir)
        left = sum(not _clean_map(pool_dir, m, dry_run, outcome) for m in status.maps)
        why = _why_pool_kept(pool_dir, status, left)
        if why:
            outcome.kept.append((pool_dir.path, why))
            continue
        outcome.removed.append(pool_dir.path)
        if not dry_run:
            pool_dir.remove()
    return outcome


def _clean_map(
    pool_dir: PoolDir, status: "work_listing.MapStatus", dry_run: bool, outcome: CleanOutcome
) -> bool:
    """Remove one map if it ended and no driver uses its folder; True if it went."""
    if not (status.state.ended and status.released):
        why = _why_kept(status.state) if not status.state.ended else (
            "it ended just now; its driver still writes into it"
        )
        outcome.kept.append((status.path, why))
        return False
    outcome.removed.append(status.path)
    if not dry_run:
        pool_dir.map_dir(status.name).remove()
    return True


def _why_kept(state: "work_listing.MapState") -> str:
    if state is work_listing.MapState.DRIVER_GONE:
        return (
            "its driver is gone but it did not end: with a store, the same call run "
            "again adopts it; `pypoolparty cancel` it to let clean remove it"
        )
    return "it is " + state.value


def _why_pool_kept(pool_dir: PoolDir, status: "work_listing.PoolStatus", maps_left: int) -> str:
    if maps_left:
        return "{:d} of its maps did not end".format(maps_left)
    alive = sum(n for s, n in status.workers.items() if s != WorkerState.ENDED.value)
    if alive:
        return "{:d} of its workers are alive ({:s})".format(
            alive, ", ".join("{:d} {:s}".format(n, s) for s, n in sorted(status.workers.items()))
        )
    ended = any(os.path.exists(pool_dir.flag_path(f)) for f in (CLOSED, STOP))
    if ended or (status.driver is not None and status.driver.alive is False):
        return ""
    if status.driver is not None and status.driver.alive:
        return "its driver (pid {:d}) runs and may start another map".format(status.driver.pid)
    host = status.driver.host if status.driver else "an unknown host"
    return "it was not closed and its driver ran on {:s}, where it may still run".format(host)
