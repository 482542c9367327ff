"""
What a local SLURM cluster and a local Grid Engine have in common.

:class:`LocalCluster` is the base of
:class:`~pypoolparty.testing.local_slurm.LocalSlurmCluster` and
:class:`~pypoolparty.testing.local_sge.LocalSgeCluster`. It installs the
scheduler's Debian packages, starts a daemon and records it
(:mod:`pypoolparty.testing.daemons`), waits for a condition until a
deadline, stops daemons it recorded, and runs the scheduler's clients with
the cluster's environment. Its public surface (:meth:`~LocalCluster.start`,
:meth:`~LocalCluster.stop`, :meth:`~LocalCluster.is_running`,
:meth:`~LocalCluster.overview`, :meth:`~LocalCluster.export_lines`,
:meth:`~LocalCluster.daemon_pids`) is what the command line
(:mod:`pypoolparty.testing.cli`) drives.
"""
from __future__ import annotations

import abc
import os
import shlex
import signal
import subprocess
import time
from typing import Callable, ClassVar, Sequence

from . import daemons, processes
from .daemons import DaemonRecord, DaemonRecords

# Seconds a step of installing packages may take.
INSTALL_STEP_TIMEOUT = 900.0

# Seconds a daemon's wrapper script may take to exec the daemon.
EXEC_TIMEOUT = 5.0


class LocalClusterError(RuntimeError):
    """A local cluster could not be installed, started or stopped."""


class LocalCluster(abc.ABC):
    """
    A scheduler's daemons on this machine, started from its packages.

    Parameters
    ----------
    record_directory : str
        Where the records of the daemons this object starts are kept
        (:class:`~pypoolparty.testing.daemons.DaemonRecords`).

    Attributes
    ----------
    records : DaemonRecords
        The records of the daemons started from ``record_directory``, by
        this object or by another one with the same directory.
    """

    #: What everything of the cluster raises.
    error: ClassVar[type[LocalClusterError]] = LocalClusterError
    #: The scheduler's name in messages, e.g. ``"SLURM"``.
    title: ClassVar[str] = ""
    #: The Debian packages that install the scheduler.
    packages: ClassVar[tuple[str, ...]] = ()
    #: The programs that tell that the scheduler is installed.
    programs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, record_directory: str) -> None:
        self.records = DaemonRecords(record_directory)
        self._children: dict[int, subprocess.Popen] = {}

    def __enter__(self) -> "LocalCluster":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------
    # what each cluster says

    @abc.abstractmethod
    def client_variables(self) -> dict[str, str]:
        """The environment variables that point clients at this cluster."""

    @abc.abstractmethod
    def start(self, timeout: float = 60.0) -> None:
        """Install if needed, start the daemons and wait until jobs run."""

    @abc.abstractmethod
    def stop(self, timeout: float = 30.0) -> None:
        """Stop what this cluster's records name, and its jobs."""

    @abc.abstractmethod
    def is_running(self) -> bool:
        """True if the cluster takes jobs."""

    @abc.abstractmethod
    def overview(self) -> str:
        """What the scheduler's overview command (``sinfo``, ``qstat -f``) prints."""

    @abc.abstractmethod
    def log_tails(self) -> str:
        """The last lines of the daemons' logs, for error messages."""

    def debconf_selections(self) -> str:
        """Lines for ``debconf-set-selections`` before installing; none by default."""
        return ""

    # ------------------------------------------------------------------
    # for clients and shells

    def env(self) -> dict[str, str]:
        """
        A copy of ``os.environ`` with :meth:`client_variables` set, for
        subprocesses running the scheduler's clients.
        """
        return {**os.environ, **self.client_variables()}

    def export_lines(self) -> list[str]:
        """``export VAR=value`` lines for a shell, for :meth:`client_variables`."""
        return [f"export {k}={shlex.quote(v)}" for k, v in self.client_variables().items()]

    def daemon_pids(self) -> dict[str, int]:
        """The pids of the recorded daemons that still run, by name."""
        return {r.name: r.pid for r in self.records.alive()}

    def which_or_raise(self, program: str) -> str:
        """The path of ``program`` (see :func:`~pypoolparty.testing.daemons.which`)."""
        path = daemons.which(program)
        if path is None:
            raise self.error(f"{program} not found (install {' '.join(self.packages)})")
        return path

    def run(
        self, argv: list[str], check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess:
        """
        Run one of the scheduler's clients against this cluster.

        Parameters
        ----------
        argv : list of str
            The command line; ``argv[0]`` is looked up on the search path.
        check : bool
            If False, a failure is returned, and a timeout as exit code 124
            with ``"timed out"`` as stderr.
        timeout : float
            Seconds.

        Returns
        -------
        subprocess.CompletedProcess
            Its exit code, and its output as text.

        Raises
        ------
        LocalClusterError
            (:attr:`error`) If ``check`` and it times out or fails; the
            message holds stdout and stderr (Grid Engine's ``qconf`` reports
            errors on stdout).
        """
        argv = [self.which_or_raise(argv[0]), *argv[1:]]
        try:
            proc = subprocess.run(
                argv, env=self.env(), stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired as err:
            if check:
                raise self.error(f"{shlex.join(argv)} timed out") from err
            return subprocess.CompletedProcess(argv, 124, "", "timed out")
        if check and proc.returncode != 0:
            raise self.error(
                f"{shlex.join(argv)} failed ({proc.returncode}): "
                f"{(proc.stdout + proc.stderr).strip()}"
            )
        return proc

    # ------------------------------------------------------------------
    # installing

    def install(self) -> None:
        """
        Install :attr:`packages` with apt-get, non-interactively and after
        :meth:`debconf_selections`, unless :attr:`programs` are all there.

        Raises
        ------
        LocalClusterError
            (:attr:`error`) If something is missing and this is not root,
            there is no apt-get, or apt-get fails.
        """
        missing = [p for p in self.programs if daemons.which(p) is None]
        if not missing:
            return
        packages = " ".join(self.packages)
        if os.geteuid() != 0:
            raise self.error(
                f"{', '.join(missing)} not found; installing {packages} needs root. "
                f"Run as root, or run: sudo apt-get install -y {packages}"
            )
        selections = self.debconf_selections()
        steps = [(["debconf-set-selections"], selections)] if selections else []
        steps += [
            (["apt-get", "update"], ""),
            (["apt-get", "install", "-y", "--no-install-recommends", *self.packages], ""),
        ]
        if any(daemons.which(argv[0]) is None for argv, _ in steps):
            raise self.error(
                f"{', '.join(missing)} not found and there is no apt-get (or debconf): "
                f"install {self.title} ({', '.join(self.programs)}) yourself"
            )
        for argv, stdin_text in steps:
            self._run_install_step(argv, stdin_text)
        still_missing = [p for p in self.programs if daemons.which(p) is None]
        if still_missing:
            raise self.error(
                f"{', '.join(still_missing)} still not found after installing {packages}"
            )

    def _run_install_step(self, argv: list[str], stdin_text: str) -> None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH=daemons.search_path())
        argv = [self.which_or_raise(argv[0]), *argv[1:]]
        try:
            proc = subprocess.run(
                argv, env=env, input=stdin_text, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, timeout=INSTALL_STEP_TIMEOUT,
            )
        except subprocess.TimeoutExpired as err:
            raise self.error(f"{shlex.join(argv)} timed out") from err
        if proc.returncode != 0:
            raise self.error(
                f"{shlex.join(argv)} failed with exit code {proc.returncode}:\n"
                + daemons.tail(proc.stdout, 30)
            )

    # ------------------------------------------------------------------
    # daemons

    def spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_path: str,
        has_exec: Callable[[list[str]], bool] | None = None,
        **popen_kwargs: object,
    ) -> DaemonRecord:
        """
        Start a daemon in a session of its own and record it.

        Parameters
        ----------
        name : str
            Its name in :attr:`records`.
        argv : list of str
            Its command line.
        env : dict of str to str
            Its environment.
        log_path : str
            Its stdout and stderr are appended to this file.
        has_exec : callable or None
            Tells from the command line in ``/proc`` that the process is the
            daemon, e.g. once a wrapper script has exec'd it; by default when
            it equals ``argv``. The record holds that command line.
        **popen_kwargs
            More arguments of :class:`subprocess.Popen` (``user``, ``cwd``...).

        Returns
        -------
        DaemonRecord

        Raises
        ------
        LocalClusterError
            (:attr:`error`) If it ended at once or did not exec in time (it
            is killed then), with the tail of its output and of the logs.
        """
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                **popen_kwargs,
            )
        self._children[proc.pid] = proc
        if has_exec is None:
            has_exec = lambda cmdline: cmdline == argv  # noqa: E731
        deadline = time.monotonic() + EXEC_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            stat = processes.read_proc_stat(proc.pid)
            cmdline = processes.read_cmdline(proc.pid)
            if stat is not None and cmdline and has_exec(cmdline):
                record = DaemonRecord(name=name, pid=proc.pid, start_time=stat[1], argv=cmdline)
                self.records.save(record)
                return record
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise self.error(
            f"{name} did not start ({shlex.join(argv)}):\n"
            + daemons.tail_file(log_path) + self.log_tails()
        )

    def wait_until(
        self,
        ready: Callable[[], bool],
        deadline: float,
        problem: str | Callable[[], str],
        daemon: DaemonRecord | None = None,
        logs: Callable[[], str] | None = None,
        interval: float = 0.1,
    ) -> None:
        """
        Call ``ready`` until it returns True.

        Parameters
        ----------
        ready : callable
            Returns whether the cluster is where it should be; may act to
            get it there (e.g. resume a node).
        deadline : float
            In :func:`time.monotonic` seconds.
        problem : str or callable
            What is wrong while ``ready`` is False, for the message, e.g.
            ``"slurmctld does not answer"``; a callable is asked at the end.
        daemon : DaemonRecord or None
            Stop waiting if this daemon ends.
        logs : callable or None
            The logs for the message; :meth:`log_tails` by default.
        interval : float
            Seconds between calls.

        Raises
        ------
        LocalClusterError
            (:attr:`error`) If ``daemon`` ended or the deadline passed.
        """
        while not ready():
            ended = daemon is not None and not daemon.is_alive()
            if ended or time.monotonic() > deadline:
                why = f"{daemon.name} exited" if ended else "timed out"
                what = problem() if callable(problem) else problem
                raise self.error(f"{what} ({why}):\n" + (logs or self.log_tails)())
            time.sleep(interval)

    def terminate(
        self, records: Sequence[DaemonRecord], deadline: float, sigterm: bool = True
    ) -> None:
        """
        Stop daemons: SIGTERM, wait until ``deadline``, then SIGKILL and
        wait up to 10 s more. Only daemons whose record still matches
        (:meth:`~pypoolparty.testing.daemons.DaemonRecord.is_alive`) are
        signalled.

        Parameters
        ----------
        records : sequence of DaemonRecord
            The daemons to stop.
        deadline : float
            When SIGKILL follows, in :func:`time.monotonic` seconds.
        sigterm : bool
            False if the daemons were already asked to end otherwise (e.g.
            ``qconf -km``): then they are only waited for before SIGKILL.

        Raises
        ------
        LocalClusterError
            (:attr:`error`) If a daemon is still alive 10 s after SIGKILL.
        """
        if sigterm:
            _signal_alive(records, signal.SIGTERM)
        if daemons.wait_gone(records, deadline):
            return
        _signal_alive(records, signal.SIGKILL)
        if daemons.wait_gone(records, time.monotonic() + 10):
            return
        alive = [f"{r.name} ({r.pid})" for r in records if r.is_alive()]
        raise self.error(f"still alive after SIGKILL: {', '.join(alive)}")

    def _forget_ended_children(self) -> None:
        """Drop (and reap) the daemons this object started that have ended."""
        for pid, proc in list(self._children.items()):
            if proc.poll() is not None:
                del self._children[pid]


def _signal_alive(records: Sequence[DaemonRecord], sig: int) -> None:
    """Send ``sig`` to those of the daemons that are still the ones recorded."""
    for record in records:
        if record.is_alive():
            processes.send_signal(record.pid, sig)
