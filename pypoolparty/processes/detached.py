"""
Detached processes on this machine, known by ids that any process can check.

A worker of :mod:`pypoolparty.processes` is a process in a session of its
own, so that it outlives the driver that started it. Its id says where to
find it and guards against a reused pid::

    <host>-<boot>-<pid>-<start>        e.g. "laptop-af85cbf9-41172-9985321"

``start`` is when the process started, in clock ticks since boot (field 22
of ``/proc/<pid>/stat``). A pid is reused only by a process that starts
later, so the same pid with the same start is the same process -- within
one boot, which ``boot`` names (the start of the kernel's random boot id):
after a reboot, pids and starts begin anew. Any process on the host -- the
driver that started the worker, a later driver that adopts it, the reaper
after the driver died -- tells from the id alone whether the worker still
runs, and signals it only if it does.

How a worker learns its id before its pid is known: it is started as ::

    python .../detached.py launch <worker argv...>

This launcher reads its own pid and start and replaces itself (``exec``:
same pid, same start) with ``<worker argv...> --worker-id <its id>``. The
starting side reads the same two numbers of the child it started. Both
compute one id; no file or message passes between them.

Ending a worker (:func:`end`) sends SIGTERM to its process group (the job's
own children go too, as a scheduler ends a job's processes), waits a grace
period and then sends SIGKILL, each time only if the process still has the
start of its id. ``python .../detached.py cancel ID...`` does the same from
any process.

This module uses the standard library only and is run by its path with
``python -I -S``, not as ``-m pypoolparty...``: the launcher then costs a
bare interpreter start (some 30 ms), and the reaper, which runs ``cancel``
with the driver's environment, need not be able to import pypoolparty.
"""
from __future__ import annotations

import enum
import os
import signal
import socket
import sys
import time
import typing

#: Seconds between SIGTERM and SIGKILL when a worker is ended.
GRACE_SECONDS = 5.0
#: Seconds between two looks at processes that were sent SIGTERM.
END_POLL_SECONDS = 0.02


class Life(enum.Enum):
    """What ``/proc`` says of the process of an id."""

    RUNNING = "running"
    """It runs (or sleeps, or is stopped): the same process as at the start."""
    EXITED = "exited"
    """It exited; its parent has not collected its exit status yet (a zombie)."""
    GONE = "gone"
    """No process has its pid and start any more."""
    ELSEWHERE = "elsewhere"
    """It was started on another host: this one cannot see it."""


_boot: typing.List[str] = []


def this_boot() -> str:
    """The first 8 digits of this boot's random id ("" if unknown)."""
    if not _boot:
        try:
            with open("/proc/sys/kernel/random/boot_id", "rt") as f:
                _boot.append(f.read().strip()[:8])
        except OSError:
            _boot.append("")
    return _boot[0]


def stat_of(pid: int) -> typing.Optional[typing.Tuple[str, int]]:
    """The state letter and start (clock ticks since boot) of process ``pid``,
    or None if there is none."""
    try:
        with open("/proc/{:d}/stat".format(pid), "rt") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    fields = text.rsplit(")", 1)[-1].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


class ProcessId(typing.NamedTuple):
    """A process: its host, boot, pid and start (see the module's docstring)."""

    host: str
    boot: str
    pid: int
    start: int

    def __str__(self) -> str:
        return "{:s}-{:s}-{:d}-{:d}".format(self.host, self.boot, self.pid, self.start)

    @classmethod
    def parse(cls, text: str) -> "ProcessId":
        """The id ``<host>-<boot>-<pid>-<start>`` (a host name may hold dashes).

        Raises
        ------
        ValueError
            If ``text`` is not such an id.
        """
        host, boot, pid, start = text.rsplit("-", 3)
        if not host or not pid.isdigit() or not start.isdigit():
            raise ValueError("not a process id: {!r}".format(text))
        return cls(host, boot, int(pid), int(start))

    @classmethod
    def of(cls, pid: int) -> "ProcessId":
        """The id of process ``pid`` of this host.

        Raises
        ------
        ProcessLookupError
            If there is no such process (a zombie is one still).
        """
        stat = stat_of(pid)
        if stat is None:
            raise ProcessLookupError("no process {:d}".format(pid))
        return cls(socket.gethostname(), this_boot(), pid, stat[1])

    def life(self) -> Life:
        """Whether the process runs, exited, or is gone."""
        if self.boot != this_boot():
            # The host was rebooted since, or it is another one.
            return Life.GONE if self.host == socket.gethostname() else Life.ELSEWHERE
        stat = stat_of(self.pid)
        if stat is None or stat[1] != self.start:
            return Life.GONE
        if stat[0] in ("Z", "X"):
            return Life.EXITED
        return Life.RUNNING

    def signal(self, signum: int) -> bool:
        """Send ``signum`` to the process's group (or to it alone, should it
        not lead one); True if sent.

        Nothing is sent unless the process (or its zombie, which keeps its
        pid and group from reuse) has the start of this id.
        """
        if self.life() not in (Life.RUNNING, Life.EXITED):
            return False
        try:
            if os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def end(ids: typing.Iterable[ProcessId], grace: float = GRACE_SECONDS) -> typing.List[ProcessId]:
    """SIGTERM to each process's group; SIGKILL to what is left of it once
    the process exited or ``grace`` seconds passed. Returns the processes
    that were signalled.

    A parent should collect the exit status of its children afterwards:
    their zombies keep their pids (and groups) from reuse until then.
    """
    signalled = [p for p in ids if p.signal(signal.SIGTERM)]
    deadline = time.monotonic() + grace
    while any(p.life() is Life.RUNNING for p in signalled) and time.monotonic() < deadline:
        time.sleep(END_POLL_SECONDS)
    for p in signalled:
        p.signal(signal.SIGKILL)  # a child of the job that ignored SIGTERM, or all
    return signalled


def launch(argv: typing.Sequence[str]) -> int:
    """Become ``argv`` with ``--worker-id <this process's id>`` appended.

    Returns only if that cannot be started (127, as a shell would).
    """
    own = ProcessId.of(os.getpid())
    args = list(argv) + ["--worker-id", str(own)]
    try:
        os.execvp(args[0], args)
    except OSError as err:
        print("pypoolparty.processes: cannot start {!r}: {}".format(args, err), file=sys.stderr)
    return 127


def parse_ids(texts: typing.Iterable[str]) -> typing.Dict[str, ProcessId]:
    """The ids among ``texts``, by their text; what is no id is left out."""
    out = {}
    for text in texts:
        try:
            out[text] = ProcessId.parse(text)
        except ValueError:
            pass
    return out


def main(argv: typing.Sequence[str]) -> int:
    """``launch ARGV...`` or ``cancel ID...``; the exit status."""
    usage = "usage: detached.py launch ARGV... | detached.py cancel ID..."
    if len(argv) < 2 or argv[0] not in ("launch", "cancel"):
        print(usage, file=sys.stderr)
        return 2
    if argv[0] == "launch":
        return launch(argv[1:])
    end(parse_ids(argv[1:]).values())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
