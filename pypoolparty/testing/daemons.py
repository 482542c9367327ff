"""
Daemons and processes of a local cluster.

What :mod:`pypoolparty.testing.local_slurm` and
:mod:`pypoolparty.testing.local_sge` share: the record that identifies a
daemon a cluster started (:class:`DaemonRecord`), readers of ``/proc``,
signalling and stopping processes, looking up programs on ``PATH``, running
a scheduler's clients, installing its packages, and a few small file
helpers. Whatever can fail raises the error type its caller passes, so that
each cluster keeps raising its own error.

The safety rule of both clusters lives here: a process is only signalled
while it is still the one seen before, i.e. its pid has the same start time
(and, for a daemon, the same command line) as recorded. A zombie counts as
gone: nothing here may rely on anyone reaping it (PID 1 of a container may
never reap orphans).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from typing import Iterable, Sequence

# States in /proc/<pid>/stat of a process that has ended (zombie, dead).
ENDED_STATES = ("Z", "X")

# Appended to PATH when looking up programs: daemons live in sbin.
EXTRA_PATH = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin")


@dataclasses.dataclass(frozen=True)
class DaemonRecord:
    """
    What identifies a daemon a local cluster started, kept as JSON in the
    cluster's directory so that another process (e.g. the command line) can
    stop it.

    Attributes
    ----------
    name : str
        The daemon's name within its cluster, e.g. ``"slurmctld"``,
        ``"slurmd-<node>"``, ``"munged"``, ``"sge_qmaster"`` or
        ``"sge_execd"``.
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
            True if ``pid`` exists, is no zombie, and has the recorded start
            time and command line. A zombie is reaped if it is a child of
            this process.
        """
        stat = read_proc_stat(self.pid)
        if stat is None:
            return False
        state, start_time = stat
        if start_time != self.start_time:
            return False
        if state in ENDED_STATES:
            reap(self.pid)
            return False
        return read_cmdline(self.pid) == self.argv


# ----------------------------------------------------------------------
# /proc


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

    ``[0]`` is field 3 (state), ``[1]`` field 4 (ppid), ``[19]`` field 22
    (start time). None if there is no such process.
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
    """
    The parent's process id of a process.

    Parameters
    ----------
    pid : int
        Its process id.

    Returns
    -------
    int or None
        None if there is no such process.
    """
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return int(fields[1])


def live_start_time(pid: int) -> int | None:
    """
    The start time of a process that runs.

    Parameters
    ----------
    pid : int
        Its process id.

    Returns
    -------
    int or None
        Its start time (see :func:`read_proc_stat`); None if there is no
        such process or it is a zombie.
    """
    stat = read_proc_stat(pid)
    if stat is None or stat[0] in ENDED_STATES:
        return None
    return stat[1]


def is_live(pid: int) -> bool:
    """
    Whether a process exists and is no zombie.

    Parameters
    ----------
    pid : int
        Its process id.

    Returns
    -------
    bool
    """
    return live_start_time(pid) is not None


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

    Parameters
    ----------
    pid : int
        Its process id.

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
    """
    The command name of a process (``/proc/<pid>/comm``).

    Parameters
    ----------
    pid : int
        Its process id.

    Returns
    -------
    str
        At most 15 characters; ``""`` if there is no such process.
    """
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def read_environ(pid: int) -> dict[str, str]:
    """
    The environment a process started with (``/proc/<pid>/environ``).

    Parameters
    ----------
    pid : int
        Its process id.

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


def ancestors(pid: int) -> set[int]:
    """
    A process and its ancestors.

    Parameters
    ----------
    pid : int
        Its process id.

    Returns
    -------
    set of int
        ``pid``, its parent, the parent's parent... up to (not including) 0.
    """
    out = set()
    while pid > 0 and pid not in out:
        out.add(pid)
        pid = read_ppid(pid) or 0
    return out


def descendants(pid: int) -> list[tuple[int, int]]:
    """
    The live descendants of a process.

    Parameters
    ----------
    pid : int
        Its process id.

    Returns
    -------
    list of tuple of (int, int)
        (pid, start time) of every descendant that is no zombie, for
        :func:`kill_all`. A zombie's children are still searched.
    """
    children: dict[int, list[int]] = {}
    for p in list_pids():
        ppid = read_ppid(p)
        if ppid is not None:
            children.setdefault(ppid, []).append(p)
    found: list[tuple[int, int]] = []
    todo = list(children.get(pid, []))
    seen = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        start_time = live_start_time(p)
        if start_time is not None:
            found.append((p, start_time))
        todo.extend(children.get(p, []))
    return found


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
    (:meth:`DaemonRecord.is_alive`, :func:`is_same`).
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


def wait_gone(records: Sequence[DaemonRecord], deadline: float) -> bool:
    """
    Wait until none of the daemons is alive.

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
    while True:
        if not any(r.is_alive() for r in records):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def terminate(
    records: Sequence[DaemonRecord],
    deadline: float,
    *,
    error: type[Exception],
    sigterm: bool = True,
) -> None:
    """
    Stop daemons: SIGTERM, wait until ``deadline``, then SIGKILL and wait
    up to 10 s more.

    Only daemons whose record still matches (:meth:`DaemonRecord.is_alive`)
    are signalled.

    Parameters
    ----------
    records : sequence of DaemonRecord
        The daemons.
    deadline : float
        In :func:`time.monotonic` seconds.
    error : type of Exception
        What to raise if some are still alive after SIGKILL.
    sigterm : bool
        False if the daemons were already asked to end otherwise (e.g.
        ``qconf -km``): then they are only waited for before SIGKILL.

    Raises
    ------
    error
        If a daemon is still alive 10 s after SIGKILL.
    """
    if sigterm:
        for r in records:
            if r.is_alive():
                send_signal(r.pid, signal.SIGTERM)
    if wait_gone(records, deadline):
        return
    for r in records:
        if r.is_alive():
            send_signal(r.pid, signal.SIGKILL)
    if not wait_gone(records, time.monotonic() + 10):
        alive = [f"{r.name} ({r.pid})" for r in records if r.is_alive()]
        raise error(f"still alive after SIGKILL: {', '.join(alive)}")


# ----------------------------------------------------------------------
# programs


def search_path() -> str:
    """
    ``$PATH`` (default ``/usr/bin:/bin``) with the sbin directories and
    ``/usr/bin``, ``/bin`` appended where missing, as daemons need it.

    Returns
    -------
    str
    """
    path = os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
    for extra in EXTRA_PATH:
        if extra not in path:
            path.append(extra)
    return os.pathsep.join(path)


def which(program: str) -> str | None:
    """
    The path of a program on :func:`search_path`.

    Parameters
    ----------
    program : str
        Its name.

    Returns
    -------
    str or None
        None if it is not found.
    """
    return shutil.which(program, path=search_path())


def which_or_raise(program: str, error: type[Exception], hint: str) -> str:
    """
    The path of a program on :func:`search_path`, or an error.

    Parameters
    ----------
    program : str
        Its name.
    error : type of Exception
        What to raise if it is not found.
    hint : str
        Said in parentheses after ``"<program> not found"``, e.g. what to
        install.

    Returns
    -------
    str

    Raises
    ------
    error
        If it is not found.
    """
    path = which(program)
    if path is None:
        raise error(f"{program} not found ({hint})")
    return path


def run_client(
    argv: list[str],
    env: dict[str, str],
    *,
    error: type[Exception],
    check: bool = True,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess:
    """
    Run a scheduler's client program and capture its output.

    Parameters
    ----------
    argv : list of str
        The command line; ``argv[0]`` a path (see :func:`which_or_raise`).
    env : dict of str to str
        Its environment, e.g. the cluster's ``env()``.
    error : type of Exception
        What to raise if ``check`` and it fails or times out.
    check : bool
        If False, a failure is returned, and a timeout as exit code 124
        with ``"timed out"`` as stderr.
    timeout : float
        Seconds.

    Returns
    -------
    subprocess.CompletedProcess
        With ``stdout`` and ``stderr`` as text.

    Raises
    ------
    error
        If ``check`` and it times out or exits with another code than 0;
        the message holds its stdout and stderr (Grid Engine's ``qconf``
        reports errors on stdout).
    """
    try:
        proc = subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as err:
        if check:
            raise error(f"{shlex.join(argv)} timed out") from err
        return subprocess.CompletedProcess(argv, 124, "", "timed out")
    if check and proc.returncode != 0:
        raise error(
            f"{shlex.join(argv)} failed ({proc.returncode}): "
            f"{(proc.stdout + proc.stderr).strip()}"
        )
    return proc


# ----------------------------------------------------------------------
# installing


def missing_programs(programs: Iterable[str]) -> list[str]:
    """
    The programs that :func:`which` does not find.

    Parameters
    ----------
    programs : iterable of str
        Their names.

    Returns
    -------
    list of str
        In the order given.
    """
    return [p for p in programs if which(p) is None]


def require_root_to_install(
    missing: Sequence[str], packages: Sequence[str], error: type[Exception]
) -> None:
    """
    Raise unless this process may install packages (runs as root).

    Parameters
    ----------
    missing : sequence of str
        The programs that are missing, for the message.
    packages : sequence of str
        The packages that would provide them, for the message.
    error : type of Exception
        What to raise.

    Raises
    ------
    error
        If this is not root; the message says what to install.
    """
    if os.geteuid() != 0:
        raise error(
            f"{', '.join(missing)} not found; installing "
            f"{' '.join(packages)} needs root. Run as root, or run: "
            f"sudo apt-get install -y {' '.join(packages)}"
        )


def run_install_step(
    argv: list[str],
    *,
    error: type[Exception],
    stdin_text: str = "",
    timeout: float | None = None,
) -> None:
    """
    Run one step of installing packages (``apt-get``, ``debconf``...)
    without questions: ``DEBIAN_FRONTEND=noninteractive``, ``PATH`` from
    :func:`search_path`.

    Parameters
    ----------
    argv : list of str
        The command line; ``argv[0]`` is looked up with :func:`which`.
    error : type of Exception
        What to raise if it fails or times out.
    stdin_text : str
        Written to its stdin, which is closed afterwards.
    timeout : float or None
        Seconds; None waits as long as it takes.

    Raises
    ------
    error
        If it times out or exits with another code than 0; the message
        holds the last 30 lines of its output.
    """
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    env["PATH"] = search_path()
    argv = [which(argv[0]) or argv[0], *argv[1:]]
    try:
        proc = subprocess.run(
            argv,
            env=env,
            input=stdin_text,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as err:
        raise error(f"{shlex.join(argv)} timed out") from err
    if proc.returncode != 0:
        raise error(
            f"{shlex.join(argv)} failed with exit code "
            f"{proc.returncode}:\n{tail(proc.stdout, 30)}"
        )


def require_installed(
    programs: Iterable[str], packages: Sequence[str], error: type[Exception]
) -> None:
    """
    Raise if a program is still missing after installing packages.

    Parameters
    ----------
    programs : iterable of str
        The programs the packages should have installed.
    packages : sequence of str
        The packages, for the message.
    error : type of Exception
        What to raise.

    Raises
    ------
    error
        If :func:`which` does not find one of the programs.
    """
    still_missing = missing_programs(programs)
    if still_missing:
        raise error(
            f"{', '.join(still_missing)} still not found after installing "
            f"{' '.join(packages)}"
        )


# ----------------------------------------------------------------------
# files


def load_record(path: str, alive: bool = False) -> DaemonRecord | None:
    """
    The daemon record in a JSON file.

    Parameters
    ----------
    path : str
        The file.
    alive : bool
        If True, return it only if its daemon is alive.

    Returns
    -------
    DaemonRecord or None
        None if the file is missing or not a record (or, with ``alive``,
        its daemon is not alive).
    """
    try:
        with open(path) as f:
            record = DaemonRecord(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None
    if alive and not record.is_alive():
        return None
    return record


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
    """
    The last lines of a text.

    Parameters
    ----------
    text : str
        The text.
    num_lines : int
        How many lines.

    Returns
    -------
    str
        Without a final newline.
    """
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
