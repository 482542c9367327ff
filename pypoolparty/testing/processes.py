"""
Processes on this machine, as ``/proc`` shows them, and signals to them.

The safety rule of the local clusters lives here: a process is only
signalled while it is still the one seen before, i.e. its pid has the same
start time as when it was found (:func:`is_same`). A zombie counts as gone:
nothing here may rely on anyone reaping it (PID 1 of a container may never
reap orphans).
"""
from __future__ import annotations

import os
import signal
import time
from typing import Iterable

# States in /proc/<pid>/stat of a process that has ended (zombie, dead).
ENDED_STATES = ("Z", "X")


# ----------------------------------------------------------------------
# reading /proc


def list_pids() -> list[int]:
    """
    The ids of all processes on the machine.

    Returns
    -------
    list of int
        From the numeric entries of ``/proc``, in no particular order.
    """
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def _stat_fields(pid: int) -> list[str] | None:
    """
    The fields of ``/proc/<pid>/stat`` after the command name.

    ``[0]`` is field 3 (state), ``[1]`` field 4 (ppid), ``[3]`` field 6
    (session id), ``[19]`` field 22 (start time). None if there is no such
    process.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name, field 2, is in parentheses and may hold anything
    return stat[stat.rfind(")") + 2:].split()


def read_proc_stat(pid: int) -> tuple[str, int] | None:
    """
    State and start time of a process.

    Parameters
    ----------
    pid : int
        Its process id.

    Returns
    -------
    tuple of (str, int) or None
        Its state letter (``"R"``, ``"S"``, ``"Z"``...) and start time
        (clock ticks after boot); None if there is no such process.
    """
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return fields[0], int(fields[19])


def read_ppid(pid: int) -> int | None:
    """The parent's pid of a process; None if there is no such process."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def read_session(pid: int) -> int | None:
    """The session id of a process; None if there is no such process."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[3])


def live_start_time(pid: int) -> int | None:
    """The start time of a process that runs (see :func:`read_proc_stat`);
    None if there is no such process or it is a zombie."""
    stat = read_proc_stat(pid)
    if stat is None or stat[0] in ENDED_STATES:
        return None
    return stat[1]


def is_same(pid: int, start_time: int) -> bool:
    """
    Whether a process seen before still runs.

    Parameters
    ----------
    pid : int
        Its process id.
    start_time : int
        Its start time when it was seen (see :func:`read_proc_stat`).

    Returns
    -------
    bool
        True if ``pid`` exists, is no zombie and has that start time, i.e.
        was not reused by another process.
    """
    return live_start_time(pid) == start_time


def read_cmdline(pid: int) -> list[str]:
    """
    The command line of a process.

    Returns
    -------
    list of str
        Its arguments; empty if there is no such process (or it is a
        zombie or a kernel thread).
    """
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def read_comm(pid: int) -> str:
    """The command name of a process (``/proc/<pid>/comm``, at most 15
    characters); ``""`` if there is no such process."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def read_environ(pid: int) -> dict[str, str]:
    """
    The environment a process started with (``/proc/<pid>/environ``).

    Returns
    -------
    dict of str to str
        Empty if there is no such process or it may not be read.
    """
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def live_pids_named(names: Iterable[str]) -> list[int]:
    """
    The processes that run one of some programs.

    Parameters
    ----------
    names : iterable of str
        Command names (``/proc/<pid>/comm``), e.g. ``"sge_qmaster"``.

    Returns
    -------
    list of int
        The pids of the live processes (no zombies) so named, ascending.
    """
    wanted = set(names)
    return sorted(
        pid for pid in list_pids()
        if read_comm(pid) in wanted and live_start_time(pid) is not None
    )


def with_start_times(pids: Iterable[int]) -> list[tuple[int, int]]:
    """
    (pid, start time) of those of ``pids`` that run, ascending, as
    :func:`kill_all` wants them.
    """
    found = []
    for pid in sorted(set(pids)):
        start_time = live_start_time(pid)
        if start_time is not None:
            found.append((pid, start_time))
    return found


# ----------------------------------------------------------------------
# the process tree


def ancestors(pid: int) -> set[int]:
    """``pid``, its parent, the parent's parent... up to (not including) 0."""
    out = set()
    while pid > 0 and pid not in out:
        out.add(pid)
        pid = read_ppid(pid) or 0
    return out


def descendants(pids: Iterable[int], exclude: Iterable[int] = ()) -> set[int]:
    """
    The descendants of some processes, as the process tree is now.

    Parameters
    ----------
    pids : iterable of int
        The processes whose children, grandchildren... are wanted.
    exclude : iterable of int
        Processes that are neither returned nor searched below.

    Returns
    -------
    set of int
        Every descendant, zombies too (their children are searched);
        ``pids`` themselves only if they descend from another of them.
    """
    children: dict[int, list[int]] = {}
    for pid in list_pids():
        ppid = read_ppid(pid)
        if ppid is not None:
            children.setdefault(ppid, []).append(pid)
    skip = set(exclude)
    found: set[int] = set()
    todo = [c for pid in pids for c in children.get(pid, [])]
    while todo:
        pid = todo.pop()
        if pid in found or pid in skip:
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def session_members(sid: int) -> set[int]:
    """
    The processes in a session, as the process table is now.

    Parameters
    ----------
    sid : int
        The session id, i.e. the pid of the process that started the
        session (``setsid``, ``start_new_session``).

    Returns
    -------
    set of int
        Every process whose session id is ``sid``, zombies and the session's
        leader too, whoever their parent is now: a process whose parent
        ended is no one's descendant any more, but stays in its session.
    """
    return {pid for pid in list_pids() if read_session(pid) == sid}


# ----------------------------------------------------------------------
# signals


def reap(pid: int) -> None:
    """
    Collect the exit status of ``pid`` if it is an ended child of this
    process, so that it does not stay a zombie. Never blocks.
    """
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def send_signal(pid: int, sig: int) -> None:
    """
    ``os.kill(pid, sig)``, ignoring a process that is gone.

    The caller must have checked that ``pid`` is the process it means
    (:func:`is_same`, :meth:`~pypoolparty.testing.daemons.DaemonRecord.is_alive`).
    """
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def kill_all(processes: Iterable[tuple[int, int]], timeout: float = 5.0) -> None:
    """
    SIGKILL processes seen before and wait until they are gone.

    Parameters
    ----------
    processes : iterable of tuple of (int, int)
        (pid, start time) of each, as seen when it was found. Only those
        still the same process (:func:`is_same`) are signalled.
    timeout : float
        Seconds to wait at the most. Gone means: no such process, a
        zombie, or the pid reused; returns without an error on timeout.
    """
    alive = [(p, t) for p, t in processes if is_same(p, t)]
    for pid, _ in alive:
        send_signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        for pid, _ in alive:
            reap(pid)
        alive = [(p, t) for p, t in alive if is_same(p, t)]
        if alive:
            time.sleep(0.01)
