"""
The daemons a local cluster started, and the files it keeps about them.

A cluster writes a :class:`DaemonRecord` (pid, start time, command line) as
JSON into a directory of its own for every daemon it starts
(:class:`DaemonRecords`), so that another process, e.g. the command line's
``stop``, can stop exactly those daemons later, and none that merely reuses
one of their pids. Also here: looking up programs on a ``PATH`` that holds
the sbin directories, and the small file helpers the records and the logs
need.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Sequence

from . import processes

# Appended to PATH when looking up programs: daemons live in sbin.
EXTRA_PATH = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin")


@dataclasses.dataclass(frozen=True)
class DaemonRecord:
    """
    What identifies a daemon a local cluster started.

    Attributes
    ----------
    name : str
        The daemon's name within its cluster, e.g. ``"slurmctld"``,
        ``"slurmd-<node>"``, ``"munged"``, ``"sge_qmaster"``.
    pid : int
        Its process id.
    start_time : int
        Field 22 of ``/proc/<pid>/stat`` (clock ticks after boot), which
        tells a reused pid apart.
    argv : list of str
        Its command line, as in ``/proc/<pid>/cmdline`` (for Grid Engine,
        once Debian's wrapper script has exec'd the daemon).
    """

    name: str
    pid: int
    start_time: int
    argv: list[str]

    def is_alive(self) -> bool:
        """
        Whether the process still runs and is the one recorded.

        Returns
        -------
        bool
            True if it has not ended (:meth:`has_ended`) and has the
            recorded command line.
        """
        return not self.has_ended() and processes.read_cmdline(self.pid) == self.argv

    def has_ended(self) -> bool:
        """
        Whether the process has ended.

        Unlike ``not is_alive()``, a daemon that is still exiting has not
        ended: once it has let go of its memory, ``/proc/<pid>/cmdline``
        reads empty, but it runs on until it is a zombie.

        Returns
        -------
        bool
            True if ``pid`` does not exist, is a zombie (reaped if it is a
            child of this process) or is another process
            (:meth:`is_other_process`).
        """
        stat = processes.read_proc_stat(self.pid)
        if stat is None or self.is_other_process():
            return True
        if stat[0] in processes.ENDED_STATES:
            processes.reap(self.pid)
            return True
        return False

    def is_other_process(self) -> bool:
        """
        Whether ``pid`` is now another process's than this daemon's.

        Returns
        -------
        bool
            True if the process with that pid (zombie or not) started at
            another time, or if its command line is neither the recorded one
            nor empty (a daemon's reads empty while it exits and once it is a
            zombie). False if there is no such process.
        """
        stat = processes.read_proc_stat(self.pid)
        if stat is None:
            return False
        if stat[1] != self.start_time:
            return True
        return processes.read_cmdline(self.pid) not in (self.argv, [])


class DaemonRecords:
    """
    The records of the daemons of one cluster: ``<directory>/<name>.json``.

    Parameters
    ----------
    directory : str
        Where the records are kept; created (mode 0700) by :meth:`save`.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def path(self, name: str) -> str:
        """The file of the record of the daemon ``name``."""
        return os.path.join(self.directory, name + ".json")

    def load(self, name: str) -> DaemonRecord | None:
        """The record of the daemon ``name``; None if there is none (or it
        is no record)."""
        try:
            with open(self.path(name)) as f:
                return DaemonRecord(**json.load(f))
        except (OSError, ValueError, TypeError):
            return None

    def load_alive(self, name: str) -> DaemonRecord | None:
        """The record of the daemon ``name`` if that daemon still runs."""
        record = self.load(name)
        return record if record is not None and record.is_alive() else None

    def all(self) -> list[DaemonRecord]:
        """Every record, sorted by name; alive or not."""
        if not os.path.isdir(self.directory):
            return []
        names = sorted(
            entry[: -len(".json")]
            for entry in os.listdir(self.directory) if entry.endswith(".json")
        )
        return [r for r in map(self.load, names) if r is not None]

    def alive(self) -> list[DaemonRecord]:
        """The records whose daemons still run, sorted by name."""
        return [r for r in self.all() if r.is_alive()]

    def save(self, record: DaemonRecord) -> None:
        """Write (or replace) the record of ``record.name``."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        write_text(self.path(record.name), json.dumps(dataclasses.asdict(record)))

    def forget(self, name: str) -> None:
        """Remove the record of the daemon ``name``, if there is one."""
        remove_file(self.path(name))

    def forget_dead(self) -> None:
        """Remove the records of daemons that no longer run."""
        for record in self.all():
            if not record.is_alive():
                self.forget(record.name)


def wait_gone(records: Sequence[DaemonRecord], deadline: float) -> bool:
    """
    Wait until all the daemons have ended (:meth:`DaemonRecord.has_ended`).

    Parameters
    ----------
    records : sequence of DaemonRecord
        The daemons.
    deadline : float
        In :func:`time.monotonic` seconds.

    Returns
    -------
    bool
        True if they are all gone (zombies count as gone), False if the
        deadline passed first.
    """
    while not all(r.has_ended() for r in records):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def session_leftovers(records: Sequence[DaemonRecord]) -> list[tuple[int, int]]:
    """
    What is left in the sessions that ended daemons led.

    A local cluster starts each daemon in a session of its own (its pid is
    the session id). What the daemon forks stays in that session unless it
    starts one of its own, and outlives the daemon without being anyone's
    descendant any more: e.g. a child of ``sge_execd`` forked to exec a
    shepherd, still named ``sge_execd``. Call this once the daemons have
    ended; a daemon that is still exiting is in its session too.

    Only processes of those very sessions are returned: the kernel gives no
    new process a pid that is still some session's id, so while a process of
    the session is left, ``pid`` is free, the daemon or its zombie. If it is
    another process (:meth:`DaemonRecord.is_other_process`), the session is
    someone else's and nothing of it is returned. Nor is a process that
    started before the daemon.

    Parameters
    ----------
    records : sequence of DaemonRecord
        The daemons, started in sessions of their own.

    Returns
    -------
    list of tuple of (int, int)
        (pid, start time) of the live processes of those sessions,
        ascending, for :func:`~pypoolparty.testing.processes.kill_all`.
    """
    found = set()
    for record in records:
        members = processes.with_start_times(processes.session_members(record.pid))
        if not record.is_other_process():
            found.update((p, t) for p, t in members if t >= record.start_time)
    return sorted(found)


# ----------------------------------------------------------------------
# programs


def search_path() -> str:
    """
    ``$PATH`` (default ``/usr/bin:/bin``) with the sbin directories and
    ``/usr/bin``, ``/bin`` appended where missing, as daemons need it.
    """
    path = os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
    path += [extra for extra in EXTRA_PATH if extra not in path]
    return os.pathsep.join(path)


def which(program: str) -> str | None:
    """The path of a program on :func:`search_path`; None if not found."""
    return shutil.which(program, path=search_path())


# ----------------------------------------------------------------------
# files


def write_text(path: str, text: str, mode: int = 0o600) -> None:
    """
    Replace a file's text atomically (write a temporary file, rename it).

    Parameters
    ----------
    path : str
        The file.
    text : str
        Its new text.
    mode : int
        Its permissions.
    """
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def remove_file(path: str) -> None:
    """Remove a file, unless it is missing."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def tail(text: str, num_lines: int) -> str:
    """The last ``num_lines`` lines of a text, without a final newline."""
    return "\n".join(text.splitlines()[-num_lines:])


def tail_file(path: str, num_lines: int = 15) -> str:
    """
    The last lines of a file, headed by its path, for error messages.

    Parameters
    ----------
    path : str
        The file.
    num_lines : int
        How many lines.

    Returns
    -------
    str
        ``"--- <path> (last lines)\\n<lines>\\n"``; ``""`` if the file is
        missing, unreadable or blank.
    """
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return ""
    if not text.strip():
        return ""
    return f"--- {path} (last lines)\n{tail(text, num_lines)}\n"
