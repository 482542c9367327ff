"""
A real Grid Engine on this machine, for tests and for a first try.

:class:`LocalSgeCluster` runs ``sge_qmaster`` and one ``sge_execd`` from the
machine's packages (Debian/Ubuntu: ``gridengine-master``,
``gridengine-exec``, ``gridengine-client``, Grid Engine 8.1.9) and gives them
one queue, ``all.q``, on this host (:mod:`pypoolparty.testing.sge_config`).

Unlike SLURM, Grid Engine keeps its cell in system paths
(``$SGE_ROOT/$SGE_CELL`` = ``/var/lib/gridengine/default``, spool in
``/var/spool/gridengine``) and its daemons on fixed ports (``sge_qmaster``
6444, ``sge_execd`` 6445), so there is one Grid Engine per machine. If a
qmaster answers already, :meth:`LocalSgeCluster.start` uses it as it is and
:meth:`LocalSgeCluster.stop` leaves it alone: only daemons that this module
started, and whose pid records in the state directory still match
``/proc``, are ever stopped.

Everything needs root: the packages are installed with apt-get and the
daemons start as root (they switch to the user ``sgeadmin`` themselves).
Jobs run as the user who submits them; ``min_uid`` and ``min_gid`` are set to
0, so root may submit.

Command line (see :mod:`pypoolparty.testing.cli`)::

    python -m pypoolparty.testing.local_sge {install,start,stop,status,env}
        [--dir DIR] [--slots N] [--timeout SECONDS]

``start`` and ``env`` print ``export SGE_ROOT=...`` and ``export
SGE_CELL=...`` for a shell to ``eval``; ``status`` exits 0 if Grid Engine
runs and its queue on this host is usable. The default state directory is
``$PYPOOLPARTY_LOCAL_SGE_DIR`` or ``/var/lib/gridengine/pypoolparty-local``.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from xml.etree import ElementTree

from . import cli, daemons, processes, sge_config
from .daemons import DaemonRecord
from .local_cluster import LocalCluster, LocalClusterError

SGE_ROOT = "/var/lib/gridengine"
SGE_CELL = "default"

DEFAULT_STATE_DIR_ENV = "PYPOOLPARTY_LOCAL_SGE_DIR"
DEFAULT_STATE_DIR = os.path.join(SGE_ROOT, "pypoolparty-local")

QUEUE = "all.q"

# Queue states (qstat's letters) in which a queue instance takes no jobs:
# unknown, alarm, suspend alarm, calendar suspended/disabled, disabled,
# error, orphaned, suspended, subordinated, configuration ambiguous.
UNUSABLE_QUEUE_STATES = frozenset("uaACDdEoSsc")

SGE_DAEMON_NAMES = ("sge_qmaster", "sge_execd")


class LocalSgeClusterError(LocalClusterError):
    """A local Grid Engine could not be installed, started or stopped."""


class LocalSgeCluster(LocalCluster):
    """
    A real single-host Grid Engine on this machine: one ``sge_qmaster``, one
    ``sge_execd`` and the queue ``all.q`` with :attr:`slots` slots.

    Parameters
    ----------
    slots : int or None
        Slots of ``all.q`` on this host, i.e. how many tasks run at once;
        ``None`` means ``os.cpu_count()``. May exceed the machine's CPUs.
    state_dir : str or None
        Where the records of the daemons this object starts are kept (and
        their stdout). ``None`` means ``$PYPOOLPARTY_LOCAL_SGE_DIR`` or
        ``/var/lib/gridengine/pypoolparty-local``. Objects with the same
        state directory share the daemons (e.g. the command line's ``start``
        and ``stop``); with another one, an object sees a running Grid Engine
        as one it did not start.

    Attributes
    ----------
    slots : int
        Slots of ``all.q`` on this host.
    state_dir : str
        Absolute path of the state directory.
    sge_root : str
        ``SGE_ROOT``.
    sge_cell : str
        ``SGE_CELL``.
    queue : str
        The queue's name, ``all.q``.
    records : DaemonRecords
        The records of the daemons started from the state directory.

    Notes
    -----
    Starting from nothing takes ~1-2 s (installing first ~15-60 s). Jobs
    start ~0.2 s after ``qsub`` (see
    :data:`~pypoolparty.testing.sge_config.SCHEDULER_SETTINGS`). Stopping
    takes ~10 s: that is how long ``sge_qmaster`` takes for a controlled
    shutdown (``qconf -km`` or SIGTERM alike; it is not killed, so that its
    berkeleydb spool stays consistent). Jobs and job ids survive a restart
    of the qmaster (its spool is in ``/var/spool/gridengine``); :meth:`stop`
    deletes all jobs first.
    """

    error = LocalSgeClusterError
    title = "Grid Engine"
    #: Open MPI too, for calls on several MPI ranks (``mpirun`` in ``-pe mpi``).
    packages = ("gridengine-master", "gridengine-exec", "gridengine-client", "openmpi-bin")
    programs = ("qsub", "qconf", "qstat", "sge_qmaster", "sge_execd", "mpirun")

    def __init__(self, slots: int | None = None, state_dir: str | None = None) -> None:
        if slots is None:
            slots = os.cpu_count() or 1
        if int(slots) < 1:
            raise ValueError(f"slots must be >= 1, not {slots}")
        self.slots = int(slots)
        self.state_dir = os.path.abspath(os.path.expanduser(state_dir or default_state_dir()))
        super().__init__(self.state_dir)
        self.sge_root = SGE_ROOT
        self.sge_cell = SGE_CELL
        self.queue = QUEUE
        self._hostname: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(slots={self.slots}, state_dir={self.state_dir!r})"

    # ------------------------------------------------------------------
    # paths and names

    @property
    def common_dir(self) -> str:
        """``$SGE_ROOT/$SGE_CELL/common``: bootstrap, act_qmaster, host_aliases."""
        return os.path.join(self.sge_root, self.sge_cell, "common")

    @property
    def host_aliases_path(self) -> str:
        """Path of the cell's ``host_aliases`` file."""
        return os.path.join(self.common_dir, "host_aliases")

    @property
    def hostname(self) -> str:
        """
        This host's name as Grid Engine resolves it (see
        :func:`~pypoolparty.testing.sge_config.resolve_hostname`).
        """
        if self._hostname is None:
            name = sge_config.resolve_hostname(self)
            if not name:
                return socket.gethostname()  # not cached: aliases may change
            self._hostname = name
        return self._hostname

    @property
    def queue_instance(self) -> str:
        """``all.q@<host>``."""
        return f"{self.queue}@{self.hostname}"

    def client_variables(self) -> dict[str, str]:
        """``SGE_ROOT`` and ``SGE_CELL``."""
        return {"SGE_ROOT": self.sge_root, "SGE_CELL": self.sge_cell}

    # ------------------------------------------------------------------
    # install

    def debconf_selections(self) -> str:
        """See :func:`~pypoolparty.testing.sge_config.debconf_selections`."""
        return sge_config.debconf_selections(self)

    def install(self) -> None:
        """
        Install the packages if needed (see :meth:`LocalCluster.install
        <pypoolparty.testing.local_cluster.LocalCluster.install>`), then
        :func:`~pypoolparty.testing.sge_config.check_cell`.
        """
        super().install()
        sge_config.check_cell(self)

    # ------------------------------------------------------------------
    # start

    def start(self, timeout: float = 60.0) -> None:
        """
        Install if needed, start ``sge_qmaster``, configure the cell
        (:func:`~pypoolparty.testing.sge_config.prepare_cell`,
        :func:`~pypoolparty.testing.sge_config.configure`), start
        ``sge_execd`` and wait until ``all.q`` on this host takes jobs.

        If a qmaster answers already and this object (its state directory)
        did not start it, it is used as it is: nothing is configured or
        started, only waited for. Calling :meth:`start` again is cheap.
        Whatever this call started is stopped again if it fails.

        Parameters
        ----------
        timeout : float
            Seconds to wait for the qmaster and the queue.

        Raises
        ------
        LocalSgeClusterError
            If it is not root, on a timeout (with the tail of the daemons'
            messages), or if a qmaster that this object did not start runs
            but refuses clients or has no usable queue on this host.
        """
        deadline = time.monotonic() + timeout
        self.install()
        if os.geteuid() != 0:
            raise self.error("starting Grid Engine daemons needs root")
        ours = self.started_here()
        answers, answer = self._ping()
        if answers and not ours:
            self._wait_until_usable(deadline, foreign=True)
            return
        started = False
        try:
            qmaster = None
            if not ours:
                self._check_no_foreign_qmaster(answer)
                self.records.forget_dead()
                self._hostname = None
                sge_config.prepare_cell(self)
                qmaster = self._spawn("sge_qmaster")
                started = True
            self.wait_until(
                lambda: self._ping()[0], deadline,
                lambda: f"sge_qmaster does not answer ({self._ping()[1]})", daemon=qmaster,
            )
            sge_config.configure(self)
            started = self._start_execd_unless_running() or started
            self._wait_until_usable(deadline, foreign=False)
        except BaseException:
            if started:
                self.stop()
            raise

    def _ping(self) -> tuple[bool, str]:
        """(True, admin hosts) if a qmaster answers ``qconf -sh``, else (False, why)."""
        if daemons.which("qconf") is None:
            return False, "qconf not installed"
        proc = self.run(["qconf", "-sh"], check=False, timeout=15)
        return proc.returncode == 0, (proc.stdout + proc.stderr).strip()

    def _check_no_foreign_qmaster(self, answer: str) -> None:
        ours = {r.pid for r in self.records.alive()}
        others = [p for p in processes.live_pids_named(["sge_qmaster"]) if p not in ours]
        if others:
            raise self.error(
                f"an sge_qmaster that pypoolparty did not start runs (pid "
                f"{', '.join(map(str, others))}) but does not answer: {answer}"
            )

    def _spawn(self, name: str) -> DaemonRecord:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        env = self.env()
        env["PATH"] = daemons.search_path()
        env["SGE_ND"] = "1"  # no daemonizing: the pid we spawn is the daemon
        # Debian's /usr/sbin/sge_* is a shell script that execs
        # /usr/lib/gridengine/sge_*: the record is that of the daemon.
        return self.spawn(
            name, [self.which_or_raise(name)], env, os.path.join(self.state_dir, name + ".out"),
            has_exec=lambda argv: os.path.basename(argv[0]) == name, cwd="/",
        )

    def _start_execd_unless_running(self) -> bool:
        """Start sge_execd unless one (ours or not) runs; True if started."""
        if self.records.load_alive("sge_execd") is not None:
            return False
        if processes.live_pids_named(["sge_execd"]):
            return False  # someone else's; it will report to the qmaster
        self._spawn("sge_execd")
        return True

    def _wait_until_usable(self, deadline: float, foreign: bool) -> None:
        cleared = False

        def usable() -> bool:
            nonlocal cleared
            state = self.queue_state()
            if _usable(state):
                return True
            if not foreign and not cleared and state and set(state) & set("Ed"):
                # left over from an earlier run of ours: clear error, enable
                self.run(["qmod", "-c", self.queue_instance], check=False)
                self.run(["qmod", "-e", self.queue_instance], check=False)
                cleared = True
            return False

        who = "a Grid Engine that pypoolparty did not start answers, but " if foreign else ""
        self.wait_until(
            usable, deadline,
            lambda: f"{who}queue instance {self.queue_instance} is not usable (state "
            f"{self.queue_state()!r}; None: no such queue instance)",
        )

    # ------------------------------------------------------------------
    # state

    def started_here(self) -> bool:
        """True if the running qmaster is one this state directory records."""
        return self.records.load_alive("sge_qmaster") is not None

    def queue_state(self) -> str | None:
        """
        The state letters of ``all.q@<host>`` (``""`` when fine, e.g.
        ``"u"`` while no execd reports), or None if there is no such queue
        instance or no qmaster answers.
        """
        if daemons.which("qstat") is None:
            return None
        proc = self.run(["qstat", "-f", "-xml", "-q", self.queue], check=False, timeout=15)
        if proc.returncode != 0:
            return None
        try:
            root = ElementTree.fromstring(proc.stdout)
        except ElementTree.ParseError:
            return None
        for queue in root.iter("Queue-List"):
            if queue.findtext("name") == self.queue_instance:
                state = queue.findtext("state") or ""
                if queue.find("load_avg") is None and "u" not in state:
                    state += "u"  # no load report yet
                return state
        return None

    def is_running(self) -> bool:
        """
        True if a qmaster answers and ``all.q`` on this host takes jobs (an
        execd reports load, no unknown/disabled/error/suspended state),
        whoever started them.
        """
        return _usable(self.queue_state())

    def overview(self) -> str:
        """The output of ``qstat -f`` (queues and all users' jobs)."""
        return self.run(["qstat", "-f", "-u", "*"], timeout=15).stdout

    def job_ids(self) -> list[str]:
        """The ids of all users' jobs the qmaster knows (pending, running, held, error)."""
        proc = self.run(["qstat", "-u", "*", "-xml"], timeout=15)
        root = ElementTree.fromstring(proc.stdout)
        return sorted({j.findtext("JB_job_number") for j in root.iter("job_list")})

    def spool_dirs(self) -> list[str]:
        """The qmaster's and the execd's spool directories (with ``messages`` logs)."""
        dirs = ["/var/spool/gridengine/qmaster"]
        execd_root = "/var/spool/gridengine/execd"
        if os.path.isdir(execd_root):
            dirs += sorted(os.path.join(execd_root, d) for d in os.listdir(execd_root))
        return dirs

    def log_tails(self, num_lines: int = 15) -> str:
        """The last lines of the daemons' ``messages`` files, for error messages."""
        return "".join(
            daemons.tail_file(os.path.join(d, "messages"), num_lines) for d in self.spool_dirs()
        )

    # ------------------------------------------------------------------
    # stop

    def stop(self, timeout: float = 30.0) -> None:
        """
        Delete every job, then stop the daemons this object's state
        directory records (``qconf -ke <host>``, ``qconf -km``; SIGTERM and
        SIGKILL if they do not end in time) and kill what is left of the
        processes of their jobs. Does nothing (and deletes no job) if the
        qmaster is not one this state directory started.

        Only processes whose pid, start time and command line match a
        record are signalled, plus the shepherds and job processes that
        descend from the recorded execd and what is left in the daemons'
        sessions (:func:`~pypoolparty.testing.daemons.session_leftovers`).

        Parameters
        ----------
        timeout : float
            Seconds to wait for the jobs and daemons to end; SIGKILL follows.
        """
        deadline = time.monotonic() + timeout
        soon = time.monotonic() + min(10.0, timeout / 3)
        qmaster = self.records.load_alive("sge_qmaster")
        execd = self.records.load_alive("sge_execd")
        answers = qmaster is not None and self._ping()[0]
        if answers:
            try:
                self._delete_all_jobs(deadline=soon)
            except (LocalClusterError, subprocess.SubprocessError, OSError):
                pass  # the job processes are killed below anyway
        leftovers = []
        if execd is not None:
            leftovers = processes.with_start_times(processes.descendants([execd.pid]))
            asked = answers and self._asked(["qconf", "-ke", self.hostname])
            self.terminate([execd], time.monotonic() + min(10.0, timeout / 3), sigterm=not asked)
        if qmaster is not None:
            asked = answers and self._asked(["qconf", "-km"])
            self.terminate([qmaster], deadline, sigterm=not asked)
        ended = [r for r in (execd, qmaster) if r is not None]
        processes.kill_all(leftovers + daemons.session_leftovers(ended))
        self.records.forget_dead()
        self._forget_ended_children()

    def _asked(self, argv: list[str]) -> bool:
        """Whether the qmaster accepted a request to stop a daemon."""
        return self.run(argv, check=False, timeout=10).returncode == 0

    def _delete_all_jobs(self, deadline: float) -> None:
        if not self.job_ids():
            return
        self.run(["qdel", "-u", "*"], check=False, timeout=15)
        while time.monotonic() < deadline:
            if not self.job_ids():
                return
            time.sleep(0.1)
        self.run(["qdel", "-f", "-u", "*"], check=False, timeout=15)


def _usable(queue_state: str | None) -> bool:
    """Whether a queue instance in this state takes jobs."""
    return queue_state is not None and not (set(queue_state) & UNUSABLE_QUEUE_STATES)


# ----------------------------------------------------------------------
# command line


def default_state_dir() -> str:
    """``$PYPOOLPARTY_LOCAL_SGE_DIR`` or ``/var/lib/gridengine/pypoolparty-local``."""
    return os.path.expanduser(os.environ.get(DEFAULT_STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def _from_arguments(directory: str, args: argparse.Namespace) -> LocalSgeCluster:
    return LocalSgeCluster(slots=args.slots, state_dir=directory)


COMMAND_LINE = cli.CommandLine(
    module="pypoolparty.testing.local_sge",
    description="A real Grid Engine on this machine (needs root).",
    directory_help=f"state directory (default: ${DEFAULT_STATE_DIR_ENV} or {DEFAULT_STATE_DIR})",
    default_directory=default_state_dir,
    options=(cli.Option("--slots", "slots of all.q (start; default: this machine's CPUs)"),),
    make_cluster=_from_arguments,
)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pypoolparty.testing.local_sge``."""
    return COMMAND_LINE.main(argv)


if __name__ == "__main__":
    sys.exit(main())
