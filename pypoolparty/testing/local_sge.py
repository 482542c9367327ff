"""
A real Grid Engine on this machine, for tests and for a first try.

:class:`LocalSgeCluster` runs ``sge_qmaster`` and one ``sge_execd`` from the
machine's packages (Debian/Ubuntu: ``gridengine-master``,
``gridengine-exec``, ``gridengine-client``, Grid Engine 8.1.9) and gives them
one queue, ``all.q``, on this host.

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

Command line::

    python -m pypoolparty.testing.local_sge {install,start,stop,status,env}
        [--slots N] [--dir DIR] [--timeout SECONDS]

``start`` and ``env`` print, as their last lines, ``export SGE_ROOT=...``
and ``export SGE_CELL=...`` for a shell to ``eval``; everything else they
print is a ``# `` comment. ``status`` exits 0 if Grid Engine runs and its
queue on this host is usable, else 1. ``stop`` exits 0 also if nothing runs.
The default state directory is ``$PYPOOLPARTY_LOCAL_SGE_DIR`` or
``/var/lib/gridengine/pypoolparty-local``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

from . import daemons
from .daemons import (
    DaemonRecord,
    descendants as _descendants,
    is_live as _is_live,
    kill_all as _kill_all,
    list_pids as _pids,
    load_record as _load_record,
    read_cmdline as _read_cmdline,
    read_comm as _read_comm,
    read_proc_stat as _read_proc_stat,
    remove_file as _remove,
    search_path as _search_path,
    tail_file as _tail_file,
    which as _which,
    write_text as _write_text,
)

SGE_ROOT = "/var/lib/gridengine"
SGE_CELL = "default"

DEFAULT_STATE_DIR_ENV = "PYPOOLPARTY_LOCAL_SGE_DIR"
DEFAULT_STATE_DIR = os.path.join(SGE_ROOT, "pypoolparty-local")

APT_PACKAGES = ("gridengine-master", "gridengine-exec", "gridengine-client")
REQUIRED_PROGRAMS = ("qsub", "qconf", "qstat", "sge_qmaster", "sge_execd")

QUEUE = "all.q"
HOST_GROUP = "@allhosts"

# Without these the scheduler runs every 15 s and every job waits ~14 s.
# flush_*_sec 1: a scheduling pass 1 s after a submit or a job's end
# (0 would turn that off). Measured on 2 CPUs: qsub to running ~0.2 s, an
# array of 4 trivial tasks done ~1-2 s after qsub.
SCHEDULER_SETTINGS = {
    "schedule_interval": "0:0:1",
    "flush_submit_sec": "1",
    "flush_finish_sec": "1",
}

# Below these ids jobs are refused ("root's jobs are refused below 1000").
GLOBAL_SETTINGS = {
    "min_uid": "0",
    "min_gid": "0",
}

# Queue states (qstat's letters) in which a queue instance takes no jobs:
# unknown, alarm, suspend alarm, calendar suspended/disabled, disabled,
# error, orphaned, suspended, subordinated, configuration ambiguous.
UNUSABLE_QUEUE_STATES = frozenset("uaACDdEoSsc")

SGE_DAEMON_NAMES = ("sge_qmaster", "sge_execd")

# What `qconf -aq` offers in Grid Engine 8.1.9, with pe_list NONE (the
# template's "make smp mpi" do not exist on a fresh cell).
QUEUE_TEMPLATE = (
    ("qname", "{queue}"),
    ("hostlist", "{host_group}"),
    ("seq_no", "0"),
    ("load_thresholds", "NONE"),
    ("suspend_thresholds", "NONE"),
    ("nsuspend", "1"),
    ("suspend_interval", "00:05:00"),
    ("priority", "0"),
    ("min_cpu_interval", "00:05:00"),
    ("processors", "UNDEFINED"),
    ("qtype", "BATCH INTERACTIVE"),
    ("ckpt_list", "NONE"),
    ("pe_list", "NONE"),
    ("rerun", "FALSE"),
    ("slots", "{slots}"),
    ("tmpdir", "/tmp"),
    ("shell", "/bin/sh"),
    ("prolog", "NONE"),
    ("epilog", "NONE"),
    ("shell_start_mode", "posix_compliant"),
    ("starter_method", "NONE"),
    ("suspend_method", "NONE"),
    ("resume_method", "NONE"),
    ("terminate_method", "NONE"),
    ("notify", "00:00:60"),
    ("owner_list", "NONE"),
    ("user_lists", "NONE"),
    ("xuser_lists", "NONE"),
    ("subordinate_list", "NONE"),
    ("complex_values", "NONE"),
    ("projects", "NONE"),
    ("xprojects", "NONE"),
    ("calendar", "NONE"),
    ("initial_state", "default"),
    *(
        (f"{kind}_{limit}", "INFINITY")
        for limit in ("rt", "cpu", "fsize", "data", "stack", "core", "rss", "vmem")
        for kind in ("s", "h")
    ),
)

EXEC_HOST_TEMPLATE = (
    ("hostname", "{host}"),
    ("load_scaling", "NONE"),
    ("complex_values", "NONE"),
    ("user_lists", "NONE"),
    ("xuser_lists", "NONE"),
    ("projects", "NONE"),
    ("xprojects", "NONE"),
    ("usage_scaling", "NONE"),
    ("report_variables", "NONE"),
)


class LocalSgeClusterError(RuntimeError):
    """A local Grid Engine could not be installed, started or stopped."""


class LocalSgeCluster:
    """
    A real single-host Grid Engine on this machine: one ``sge_qmaster``, one
    ``sge_execd`` and the queue ``all.q`` with :attr:`slots` slots.

    Parameters
    ----------
    slots : int or None
        Slots of ``all.q`` on this host, i.e. how many tasks run at once;
        ``None`` means ``os.cpu_count()``. May exceed the machine's CPUs.
    state_dir : str or None
        Where the pid records of the daemons this object starts are kept
        (and their stdout). ``None`` means ``$PYPOOLPARTY_LOCAL_SGE_DIR`` or
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

    Notes
    -----
    Starting from nothing takes ~1-2 s (installing first ~15-60 s). Jobs
    start ~0.2 s after ``qsub`` (see :data:`SCHEDULER_SETTINGS`). Stopping
    takes ~10 s: that is how long ``sge_qmaster`` takes for a controlled
    shutdown (``qconf -km`` or SIGTERM alike; it is not killed, so that its
    berkeleydb spool stays consistent). Jobs and job ids survive a restart of the qmaster (its
    berkeleydb spool is in ``/var/spool/gridengine``); :meth:`stop` deletes
    all jobs first.
    """

    def __init__(self, slots: int | None = None, state_dir: str | None = None) -> None:
        if slots is None:
            slots = os.cpu_count() or 1
        if int(slots) < 1:
            raise ValueError(f"slots must be >= 1, not {slots}")
        self.slots = int(slots)
        self.state_dir = os.path.abspath(
            os.path.expanduser(state_dir or default_state_dir())
        )
        self.sge_root = SGE_ROOT
        self.sge_cell = SGE_CELL
        self.queue = QUEUE
        self._children: dict[int, subprocess.Popen] = {}
        self._hostname: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(slots={self.slots}, state_dir={self.state_dir!r})"

    def __enter__(self) -> "LocalSgeCluster":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------
    # paths and environment

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
        This host's name as Grid Engine resolves it (``gethostname -aname``
        of Grid Engine's utilities, else :func:`socket.gethostname`).
        """
        if self._hostname is None:
            name = ""
            tool = os.path.join("/usr/lib/gridengine", "gethostname")
            if os.access(tool, os.X_OK) and os.path.isdir(self.common_dir):
                try:
                    proc = subprocess.run(
                        [tool, "-aname"], env=self.env(), capture_output=True,
                        text=True, timeout=10, stdin=subprocess.DEVNULL,
                    )
                    if proc.returncode == 0:
                        name = proc.stdout.strip()
                except (OSError, subprocess.SubprocessError):
                    name = ""
            if not name:
                return socket.gethostname()  # not cached: aliases may change
            self._hostname = name
        return self._hostname

    @property
    def queue_instance(self) -> str:
        """``all.q@<host>``."""
        return f"{self.queue}@{self.hostname}"

    def env(self) -> dict[str, str]:
        """
        A copy of ``os.environ`` with ``SGE_ROOT`` and ``SGE_CELL`` set, for
        subprocesses running Grid Engine's clients (``qsub``, ``qstat``...).
        """
        env = dict(os.environ)
        env["SGE_ROOT"] = self.sge_root
        env["SGE_CELL"] = self.sge_cell
        return env

    def export_lines(self) -> list[str]:
        """``export VAR=value`` lines for a shell, for what :meth:`env` sets."""
        return [
            f"export SGE_ROOT={shlex.quote(self.sge_root)}",
            f"export SGE_CELL={shlex.quote(self.sge_cell)}",
        ]

    def _record_path(self, name: str) -> str:
        return os.path.join(self.state_dir, name + ".json")

    def _out_path(self, name: str) -> str:
        return os.path.join(self.state_dir, name + ".out")

    # ------------------------------------------------------------------
    # install

    def install(self) -> None:
        """
        Install ``gridengine-master``, ``gridengine-exec`` and
        ``gridengine-client`` with apt-get, unless ``qsub``, ``qconf``,
        ``qstat``, ``sge_qmaster`` and ``sge_execd`` are all there.

        debconf is preseeded first, so that the packages create the cell
        ``default`` with this host as its master
        (``gridengine-common shared/gridengineconfig true``,
        ``shared/gridenginecell default``,
        ``shared/gridenginemaster <hostname>``). The packages start no
        daemon on a machine without systemd or init scripts allowed to run.

        Raises
        ------
        LocalSgeClusterError
            If something is missing and this is not root, there is no
            apt-get, or apt-get fails.
        """
        missing = daemons.missing_programs(REQUIRED_PROGRAMS)
        if not missing:
            return
        daemons.require_root_to_install(missing, APT_PACKAGES, LocalSgeClusterError)
        if _which("apt-get") is None or _which("debconf-set-selections") is None:
            raise LocalSgeClusterError(
                f"{', '.join(missing)} not found and there is no apt-get/debconf: "
                "install Grid Engine (qmaster, execd, clients) yourself."
            )
        host = socket.gethostname()
        selections = "".join(
            f"gridengine-common {key} {kind} {value}\n"
            for key, kind, value in (
                ("shared/gridengineconfig", "boolean", "true"),
                ("shared/gridenginecell", "string", self.sge_cell),
                ("shared/gridenginemaster", "string", host),
            )
        )
        steps = (
            (["debconf-set-selections"], selections),
            (["apt-get", "update"], ""),
            (["apt-get", "install", "-y", *APT_PACKAGES], ""),
        )
        for argv, stdin_text in steps:
            daemons.run_install_step(
                argv, error=LocalSgeClusterError, stdin_text=stdin_text, timeout=900
            )
        daemons.require_installed(REQUIRED_PROGRAMS, APT_PACKAGES, LocalSgeClusterError)
        if not os.path.isfile(os.path.join(self.common_dir, "bootstrap")):
            raise LocalSgeClusterError(
                f"{self.common_dir}/bootstrap is missing after installing: the "
                "packages did not create the cell (was gridengine-common "
                "configured before without shared/gridengineconfig=true? Then "
                "run: dpkg-reconfigure gridengine-common)"
            )

    # ------------------------------------------------------------------
    # start

    def start(self, timeout: float = 60.0) -> None:
        """
        Install if needed, start ``sge_qmaster``, configure the cell, start
        ``sge_execd`` and wait until ``all.q`` on this host takes jobs.

        What is configured (idempotently, only what differs): this host as
        admin, submit and execution host; ``min_uid``/``min_gid`` 0;
        the scheduler settings :data:`SCHEDULER_SETTINGS`; the host group
        ``@allhosts`` holding this host; the queue ``all.q`` on it with
        :attr:`slots` slots and ``load_thresholds NONE``. Before its qmaster
        starts, ``host_aliases`` gets a line naming this host's reverse-DNS
        names (e.g. ``vm localhost``) as aliases of its hostname, without
        which every client is refused, and ``act_qmaster`` this host.

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
            raise LocalSgeClusterError("starting Grid Engine daemons needs root")
        qmaster = self._record("sge_qmaster")
        ours = qmaster is not None and qmaster.is_alive()
        answers, answer = self._ping()
        if answers and not ours:
            self._wait_until_usable(deadline, foreign=True)
            return
        started: list[str] = []
        try:
            if not ours:
                self._check_no_foreign_qmaster(answer)
                self._forget_dead_records()
                self._prepare_cell()
                self._start_qmaster(deadline)
                started.append("sge_qmaster")
            else:
                self._wait_until_answers(deadline)
            self._configure()
            if self._start_execd_unless_running():
                started.append("sge_execd")
            self._wait_until_usable(deadline, foreign=False)
        except BaseException:
            if started:
                self.stop()
            raise

    def _ping(self) -> tuple[bool, str]:
        """(True, admin hosts) if a qmaster answers ``qconf -sh``, else (False, why)."""
        if _which("qconf") is None:
            return False, "qconf not installed"
        proc = self._run(["qconf", "-sh"], check=False, timeout=15)
        return proc.returncode == 0, (proc.stdout + proc.stderr).strip()

    def _check_no_foreign_qmaster(self, answer: str) -> None:
        ours = {r.pid for r in self._records() if r.is_alive()}
        others = [
            pid for pid in _pids()
            if _read_comm(pid) == "sge_qmaster" and _is_live(pid) and pid not in ours
        ]
        if others:
            raise LocalSgeClusterError(
                f"an sge_qmaster that pypoolparty did not start runs (pid "
                f"{', '.join(map(str, others))}) but does not answer: {answer}"
            )

    def _forget_dead_records(self) -> None:
        for record in self._records():
            if not record.is_alive():
                _remove(self._record_path(record.name))

    def _prepare_cell(self) -> None:
        """host_aliases and act_qmaster, before our qmaster starts."""
        if not os.path.isdir(self.common_dir):
            raise LocalSgeClusterError(
                f"{self.common_dir} is missing: the Grid Engine cell was not created"
            )
        self._hostname = None
        host = socket.gethostname()
        aliases = _reverse_names(host) - {host}
        if aliases:
            _ensure_host_aliases(self.host_aliases_path, host, aliases)
        act_qmaster = os.path.join(self.common_dir, "act_qmaster")
        try:
            with open(act_qmaster) as f:
                current = f.read().strip()
        except OSError:
            current = ""
        if current != host:
            _write_text(act_qmaster, host + "\n", mode=0o644)
            _chown_like(act_qmaster, self.common_dir)

    def _daemon_env(self) -> dict[str, str]:
        env = self.env()
        env["PATH"] = _search_path()
        env["SGE_ND"] = "1"  # no daemonizing: the pid we spawn is the daemon
        return env

    def _spawn(self, name: str) -> DaemonRecord:
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        argv = [_which_or_raise(name)]
        out_path = self._out_path(name)
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                argv,
                env=self._daemon_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                cwd="/",
            )
        self._children[proc.pid] = proc
        # Debian's /usr/sbin/sge_* is a shell script that execs
        # /usr/lib/gridengine/sge_*: wait for that exec.
        stat, cmdline = None, []
        for _ in range(500):
            stat = _read_proc_stat(proc.pid)
            cmdline = _read_cmdline(proc.pid)
            if stat is not None and cmdline and os.path.basename(cmdline[0]) == name:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        if proc.poll() is not None or stat is None or not cmdline:
            raise LocalSgeClusterError(
                f"{name} exited at once:\n" + _tail_file(out_path)
                + self.log_tails()
            )
        record = DaemonRecord(name=name, pid=proc.pid, start_time=stat[1], argv=cmdline)
        _write_text(self._record_path(name), json.dumps(dataclasses.asdict(record)))
        return record

    def _start_qmaster(self, deadline: float) -> None:
        record = self._spawn("sge_qmaster")
        while True:
            answers, answer = self._ping()
            if answers:
                return
            if not record.is_alive():
                raise LocalSgeClusterError(
                    f"sge_qmaster exited ({answer}):\n"
                    + _tail_file(self._out_path("sge_qmaster")) + self.log_tails()
                )
            if time.monotonic() > deadline:
                raise LocalSgeClusterError(
                    f"sge_qmaster does not answer ({answer}):\n" + self.log_tails()
                )
            time.sleep(0.1)

    def _wait_until_answers(self, deadline: float) -> None:
        while True:
            answers, answer = self._ping()
            if answers:
                return
            if time.monotonic() > deadline:
                raise LocalSgeClusterError(
                    f"sge_qmaster does not answer ({answer}):\n" + self.log_tails()
                )
            time.sleep(0.1)

    def _start_execd_unless_running(self) -> bool:
        """Start sge_execd unless one (ours or not) runs; True if started."""
        record = self._record("sge_execd")
        if record is not None and record.is_alive():
            return False
        if any(_read_comm(p) == "sge_execd" and _is_live(p) for p in _pids()):
            return False  # someone else's; it will report to the qmaster
        self._spawn("sge_execd")
        return True

    # ------------------------------------------------------------------
    # configuration

    def _configure(self) -> None:
        """Bring the cell to what :meth:`start` promises; change only what differs."""
        host = self.hostname
        for show, add in (("-sh", "-ah"), ("-ss", "-as")):
            # "no submit host defined" exits 1
            if host not in self._run(["qconf", show], check=False).stdout.split():
                self._run(["qconf", add, host])
        self._modify_settings(["qconf", "-sconf", "global"], "-Mconf", "global", GLOBAL_SETTINGS)
        self._modify_settings(["qconf", "-ssconf"], "-Msconf", "sched_config", SCHEDULER_SETTINGS)

        if self._run(["qconf", "-se", host], check=False).returncode != 0:
            self._add_from_file("-Ae", "exechost", EXEC_HOST_TEMPLATE, host=host)

        hgrp = self._run(["qconf", "-shgrp", HOST_GROUP], check=False)
        if hgrp.returncode != 0:
            self._add_from_file(
                "-Ahgrp", "hostgroup", (("group_name", HOST_GROUP), ("hostlist", host))
            )
        elif host not in _attribute(hgrp.stdout, "hostlist").split():
            self._run(["qconf", "-aattr", "hostgroup", "hostlist", host, HOST_GROUP])

        queue = self._run(["qconf", "-sq", self.queue], check=False)
        if queue.returncode != 0:
            self._add_from_file(
                "-Aq", "queue", QUEUE_TEMPLATE,
                queue=self.queue, host_group=HOST_GROUP, slots=str(self.slots),
            )
        else:
            hostlist = _attribute(queue.stdout, "hostlist").split()
            if HOST_GROUP not in hostlist and host not in hostlist:
                self._run(["qconf", "-aattr", "queue", "hostlist", HOST_GROUP, self.queue])
            for key, value in (("slots", str(self.slots)), ("load_thresholds", "NONE")):
                if _attribute(queue.stdout, key) != value:
                    self._run(["qconf", "-mattr", "queue", key, value, self.queue])

    def _modify_settings(
        self, show: list[str], modify_flag: str, file_name: str, settings: dict[str, str]
    ) -> None:
        text = self._run(show).stdout
        new_text, changed = _set_attributes(text, settings)
        if changed:
            with tempfile.TemporaryDirectory(prefix="pypoolparty-sge-") as tmp:
                # -Mconf takes the configuration's name from the file's name
                path = os.path.join(tmp, file_name)
                _write_text(path, new_text, mode=0o644)
                self._run(["qconf", modify_flag, path])

    def _add_from_file(self, flag: str, kind: str, template, **values: str) -> None:
        text = "".join(f"{key:<22}{value.format(**values)}\n" for key, value in template)
        with tempfile.TemporaryDirectory(prefix="pypoolparty-sge-") as tmp:
            path = os.path.join(tmp, kind)
            _write_text(path, text, mode=0o644)
            self._run(["qconf", flag, path])

    # ------------------------------------------------------------------
    # state

    def _records(self) -> list[DaemonRecord]:
        records = []
        for name in SGE_DAEMON_NAMES:
            record = _load_record(self._record_path(name))
            if record is not None:
                records.append(record)
        return records

    def _record(self, name: str) -> DaemonRecord | None:
        return _load_record(self._record_path(name))

    def daemon_pids(self) -> dict[str, int]:
        """The pids of the daemons this object's state directory records and that still run."""
        return {r.name: r.pid for r in self._records() if r.is_alive()}

    def started_here(self) -> bool:
        """True if the running qmaster is one this state directory records."""
        record = self._record("sge_qmaster")
        return record is not None and record.is_alive()

    def queue_state(self) -> str | None:
        """
        The state letters of ``all.q@<host>`` (``""`` when fine, e.g.
        ``"u"`` while no execd reports), or None if there is no such queue
        instance or no qmaster answers.
        """
        if _which("qstat") is None:
            return None
        proc = self._run(["qstat", "-f", "-xml", "-q", self.queue], check=False, timeout=15)
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
        state = self.queue_state()
        return state is not None and not (set(state) & UNUSABLE_QUEUE_STATES)

    def _wait_until_usable(self, deadline: float, foreign: bool) -> None:
        cleared = False
        while True:
            state = self.queue_state()
            if state is not None and not (set(state) & UNUSABLE_QUEUE_STATES):
                return
            if not foreign and not cleared and state and set(state) & set("Ed"):
                # left over from an earlier run of ours: clear error, enable
                self._run(["qmod", "-c", self.queue_instance], check=False)
                self._run(["qmod", "-e", self.queue_instance], check=False)
                cleared = True
            if time.monotonic() > deadline:
                who = (
                    "a Grid Engine that pypoolparty did not start answers, but "
                    if foreign else ""
                )
                raise LocalSgeClusterError(
                    f"{who}queue instance {self.queue_instance} is not usable "
                    f"(state {state!r}; None: no such queue instance):\n"
                    + self.log_tails()
                )
            time.sleep(0.1)

    def spool_dirs(self) -> list[str]:
        """The qmaster's and the execd's spool directories (with ``messages`` logs)."""
        dirs = ["/var/spool/gridengine/qmaster"]
        execd_root = "/var/spool/gridengine/execd"
        if os.path.isdir(execd_root):
            dirs += sorted(os.path.join(execd_root, d) for d in os.listdir(execd_root))
        return dirs

    def log_tails(self, num_lines: int = 15) -> str:
        """The last lines of the daemons' ``messages`` files, for error messages."""
        return "".join(_tail_file(os.path.join(d, "messages"), num_lines) for d in self.spool_dirs())

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
        descend from the recorded execd.

        Parameters
        ----------
        timeout : float
            Seconds to wait for the jobs and daemons to end; SIGKILL follows.
        """
        deadline = time.monotonic() + timeout
        records = [r for r in self._records() if r.is_alive()]
        by_name = {r.name: r for r in records}
        qmaster = by_name.get("sge_qmaster")
        execd = by_name.get("sge_execd")
        answers = qmaster is not None and self._ping()[0]
        if answers:
            try:
                self._delete_all_jobs(deadline=time.monotonic() + min(10.0, timeout / 3))
            except (LocalSgeClusterError, subprocess.SubprocessError, OSError):
                pass  # the job processes are killed below anyway
        leftovers = _descendants(execd.pid) if execd is not None else []
        if execd is not None:
            asked = answers and self._run(
                ["qconf", "-ke", self.hostname], check=False, timeout=10
            ).returncode == 0
            _terminate([execd], time.monotonic() + min(10.0, timeout / 3), sigterm=not asked)
        if qmaster is not None:
            asked = answers and self._run(["qconf", "-km"], check=False, timeout=10).returncode == 0
            _terminate([qmaster], deadline, sigterm=not asked)
        _kill_all(leftovers)
        for name in SGE_DAEMON_NAMES:
            record = self._record(name)
            if record is not None and not record.is_alive():
                _remove(self._record_path(name))
        for pid, proc in list(self._children.items()):
            if proc.poll() is not None:
                del self._children[pid]

    def _delete_all_jobs(self, deadline: float) -> None:
        if not self.job_ids():
            return
        self._run(["qdel", "-u", "*"], check=False, timeout=15)
        while time.monotonic() < deadline:
            if not self.job_ids():
                return
            time.sleep(0.1)
        self._run(["qdel", "-f", "-u", "*"], check=False, timeout=15)

    def job_ids(self) -> list[str]:
        """The ids of all users' jobs the qmaster knows (pending, running, held, error)."""
        proc = self._run(["qstat", "-u", "*", "-xml"], timeout=15)
        root = ElementTree.fromstring(proc.stdout)
        return sorted({j.findtext("JB_job_number") for j in root.iter("job_list")})

    # ------------------------------------------------------------------
    # clients

    def _run(
        self, argv: list[str], check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess:
        """Run a Grid Engine client."""
        argv = [_which_or_raise(argv[0]), *argv[1:]]
        return daemons.run_client(
            argv, self.env(), error=LocalSgeClusterError, check=check, timeout=timeout
        )

    def qstat(self) -> str:
        """The output of ``qstat -f`` (queues and all users' jobs)."""
        return self._run(["qstat", "-f", "-u", "*"], timeout=15).stdout


# ----------------------------------------------------------------------
# configuration text


def _attribute(text: str, key: str) -> str:
    """The value of ``key`` in qconf's ``key value`` output ("" if none)."""
    lines = _logical_lines(text)
    for line in lines:
        parts = line.split(None, 1)
        if parts and parts[0] == key:
            return parts[1].strip() if len(parts) > 1 else ""
    return ""


def _logical_lines(text: str) -> list[str]:
    """Lines of qconf's output, with backslash continuations joined."""
    out: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        out.append(pending + stripped if pending else line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def _set_attributes(text: str, settings: dict[str, str]) -> tuple[str, bool]:
    """qconf ``key value`` text with ``settings`` applied; and whether it changed."""
    lines = _logical_lines(text)
    seen, changed = set(), False
    for i, line in enumerate(lines):
        parts = line.split(None, 1)
        if parts and parts[0] in settings:
            key = parts[0]
            seen.add(key)
            current = parts[1].strip() if len(parts) > 1 else ""
            if current != settings[key]:
                lines[i] = f"{key:<33} {settings[key]}"
                changed = True
    for key, value in settings.items():
        if key not in seen:
            lines.append(f"{key:<33} {value}")
            changed = True
    return "\n".join(lines) + "\n", changed


# ----------------------------------------------------------------------
# host names


def _reverse_names(host: str) -> set[str]:
    """The names the addresses of ``host`` resolve back to."""
    names = set()
    try:
        addresses = socket.gethostbyname_ex(host)[2]
    except OSError:
        return names
    for address in addresses:
        try:
            names.add(socket.gethostbyaddr(address)[0])
        except OSError:
            pass
    return names


def _ensure_host_aliases(path: str, host: str, aliases: set[str]) -> None:
    """
    Make ``host_aliases`` name ``aliases`` as aliases of ``host`` (a line
    ``host alias...``), keeping whatever else it says.
    """
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    for i, line in enumerate(lines):
        names = line.split()
        if names and names[0] == host:
            missing = sorted(aliases - set(names[1:]))
            if not missing:
                return
            lines[i] = " ".join(names + missing)
            break
    else:
        lines.append(" ".join([host, *sorted(aliases)]))
    _write_text(path, "\n".join(lines) + "\n", mode=0o644)
    _chown_like(path, os.path.dirname(path))


def _chown_like(path: str, model: str) -> None:
    try:
        st = os.stat(model)
        os.chown(path, st.st_uid, st.st_gid)
    except OSError:
        pass


# ----------------------------------------------------------------------
# processes


def _which_or_raise(program: str) -> str:
    return daemons.which_or_raise(
        program, LocalSgeClusterError, f"install {' '.join(APT_PACKAGES)}"
    )


def _terminate(records: list[DaemonRecord], deadline: float, sigterm: bool) -> None:
    """
    Wait until ``deadline`` for the daemons to end, after a SIGTERM if
    ``sigterm`` (i.e. when they were not asked by ``qconf -ke``/``-km``),
    then SIGKILL them.
    """
    daemons.terminate(records, deadline, error=LocalSgeClusterError, sigterm=sigterm)


# ----------------------------------------------------------------------
# command line


def default_state_dir() -> str:
    """``$PYPOOLPARTY_LOCAL_SGE_DIR`` or ``/var/lib/gridengine/pypoolparty-local``."""
    return os.path.expanduser(os.environ.get(DEFAULT_STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pypoolparty.testing.local_sge``."""
    parser = argparse.ArgumentParser(
        prog="python -m pypoolparty.testing.local_sge",
        description="A real Grid Engine on this machine (needs root).",
    )
    parser.add_argument("command", choices=["install", "start", "stop", "status", "env"])
    parser.add_argument(
        "--slots", type=int, default=None,
        help="slots of all.q (start; default: this machine's CPUs)",
    )
    parser.add_argument(
        "--dir", default=None,
        help=f"state directory (default: ${DEFAULT_STATE_DIR_ENV} or {DEFAULT_STATE_DIR})",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (start, stop)")
    args = parser.parse_args(argv)

    cluster = LocalSgeCluster(slots=args.slots, state_dir=args.dir)
    try:
        if args.command == "install":
            cluster.install()
            print("# Grid Engine (qsub, qconf, qstat, sge_qmaster, sge_execd) is installed")
        elif args.command == "start":
            t0 = time.monotonic()
            before = cluster.daemon_pids()
            cluster.start(timeout=args.timeout)
            for line in cluster.qstat().splitlines():
                print("# " + line)
            pids = cluster.daemon_pids()
            if not pids:
                how = "runs, started by someone else: used as it is"
            elif pids == before:
                how = "was running already"
            else:
                how = "started: " + ", ".join(f"{n} ({p})" for n, p in sorted(pids.items()))
            print(f"# Grid Engine {how} ({time.monotonic() - t0:.1f} s)")
            for line in cluster.export_lines():
                print(line)
        elif args.command == "stop":
            pids = cluster.daemon_pids()
            cluster.stop(timeout=args.timeout)
            if pids:
                names = ", ".join(f"{n} ({p})" for n, p in sorted(pids.items()))
                print(f"# stopped {names}")
            else:
                print("# nothing started from this state directory runs")
        elif args.command == "status":
            if not cluster.is_running():
                print(f"not running (state directory {cluster.state_dir})")
                return 1
            print(cluster.qstat(), end="")
        elif args.command == "env":
            for line in cluster.export_lines():
                print(line)
    except LocalSgeClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
