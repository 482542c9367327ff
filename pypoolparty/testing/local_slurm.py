"""
A real SLURM cluster on this machine, for tests and for a first try.

:class:`LocalSlurmCluster` runs ``slurmctld`` and one ``slurmd`` per node
from the machine's packages (Debian/Ubuntu: ``slurm-wlm``, ``munge``), with
its configuration, state, spool, logs and PID records all inside one
directory of its own, on TCP ports of its own. Several such clusters can run
side by side, and next to a SLURM the machine already runs. Clients reach a
cluster through ``SLURM_CONF``, see :meth:`LocalSlurmCluster.env`.

Everything needs root: the daemons run as root (``SlurmUser=root``) and
``munged`` as the user ``munge``.

Command line::

    python -m pypoolparty.testing.local_slurm {install,start,stop,status,env}
        [--dir DIR] [--nodes N] [--cpus-per-node C]

``start`` prints, as its last line, ``export SLURM_CONF=...`` for a shell to
``eval``; ``env`` prints only that line. The default directory is
``$PYPOOLPARTY_LOCAL_SLURM_DIR`` or ``~/.pypoolparty/local_slurm``.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

from . import daemons
from .daemons import (
    DaemonRecord,
    ancestors as _ancestors,
    is_live as _is_live,
    is_same as _is_same,
    kill_all as _kill_all,
    list_pids as _pids,
    live_start_time as _live_start_time,
    load_record as _load_record,
    read_cmdline as _read_cmdline,
    read_comm as _read_comm,
    read_environ as _read_environ,
    read_ppid as _read_ppid,
    read_proc_stat as _read_proc_stat,
    remove_file as _remove,
    search_path as _search_path,
    send_signal as _signal,
    tail_file as _tail_file,
    which as _which,
    write_text as _write_text,
)

DEFAULT_DIRECTORY_ENV = "PYPOOLPARTY_LOCAL_SLURM_DIR"
DEFAULT_DIRECTORY = os.path.join("~", ".pypoolparty", "local_slurm")

APT_PACKAGES = ("slurm-wlm", "munge")
REQUIRED_PROGRAMS = ("slurmctld", "slurmd", "sbatch", "munged")
MUNGE_KEY_PATH = "/etc/munge/munge.key"
MUNGE_USER = "munge"

# slurmd and every slurmstepd it forks carry these in their environment, so
# the processes of one node of one cluster can be found in /proc.
CONF_MARKER_ENV = "PYPOOLPARTY_LOCAL_SLURM_CONF"
NODE_MARKER_ENV = "PYPOOLPARTY_LOCAL_SLURM_NODE"

# How quickly array tasks start, measured on 2 CPUs (20 tasks of `true`):
# SLURM's defaults ~30 s (2 tasks every 3 s); batch_sched_delay=0 ~10 s
# (2 tasks per pass of slurmctld's 1 s background loop); plus an Epilog
# ~0.6-1.0 s. A finished batch job without steps is otherwise reported by
# slurmd as "already complete", which only queues a scheduling request for
# that loop, while MESSAGE_EPILOG_COMPLETE runs the scheduler at once.
# sched_min_interval, sched_interval and default_queue_depth made no
# measurable difference here.
SCHEDULER_PARAMETERS = "batch_sched_delay=0"

MAX_UNIX_SOCKET_PATH = 107

# sinfo's short node states that `scontrol update state=resume` clears
RESUMABLE_NODE_STATES = ("down", "drain", "drng", "fail", "failg")

SLURM_DAEMON_NAMES = ("slurmctld", "slurmscriptd", "slurmd", "slurmstepd", "slurmdbd")


class LocalSlurmClusterError(RuntimeError):
    """A local SLURM cluster could not be installed, started or stopped."""


class LocalSlurmCluster:
    """
    A real single- or multi-node SLURM cluster on this machine.

    Parameters
    ----------
    directory : str
        Holds the configuration, state, spool, logs and PID records. Created
        (mode 0700) if missing. One running cluster per directory.
    num_nodes : int
        Number of nodes. One node is called ``localhost``; several are
        ``n1`` .. ``nN``, each a ``slurmd -N nX`` on a port of its own.
    cpus_per_node : int or None
        CPUs each node advertises; ``None`` means ``os.cpu_count()``. May
        exceed the machine's CPUs (``SlurmdParameters=config_overrides``).
    max_array_size : int
        ``MaxArraySize``: array indices run from 0 to this minus one.
    extra_config : dict of str to str or None
        ``slurm.conf`` keys to add or to override (case-insensitive), e.g.
        ``{"ProctrackType": "proctrack/cgroup"}``; an empty value removes
        the key, leaving SLURM's default.
    cgroup_config : dict of str to str or None
        Lines for ``cgroup.conf``, e.g. ``{"ConstrainRAMSpace": "yes"}``.
        Empty by default (``slurm.conf`` does not use cgroups by default).

    Attributes
    ----------
    directory : str
        Absolute path of the directory.
    node_names : list of str
        The names of the nodes.

    Notes
    -----
    Starting takes well under a second. slurmctld's first scheduling pass
    comes 3 s after it started (it reads ``batch_sched_delay`` only then),
    so the first job waits until then; afterwards a job starts ~0.05-1 s
    after ``sbatch`` and 20 trivial array tasks on 2 CPUs take ~1 s
    (the ``Epilog`` and ``SchedulerParameters`` it sets make the difference; with
    SLURM's defaults it is ~30 s). The daemons are started with
    ``slurmctld -c`` and ``slurmd -c``: no job survives a restart, but job
    ids keep counting up in the same directory.
    """

    def __init__(
        self,
        directory: str,
        num_nodes: int = 1,
        cpus_per_node: int | None = None,
        max_array_size: int = 1001,
        extra_config: dict[str, str] | None = None,
        *,
        cgroup_config: dict[str, str] | None = None,
    ) -> None:
        if num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1, not {num_nodes}")
        if cpus_per_node is None:
            cpus_per_node = os.cpu_count() or 1
        if cpus_per_node < 1:
            raise ValueError(f"cpus_per_node must be >= 1, not {cpus_per_node}")
        if max_array_size < 1:
            raise ValueError(f"max_array_size must be >= 1, not {max_array_size}")
        self.directory = os.path.abspath(os.path.expanduser(directory))
        self.num_nodes = int(num_nodes)
        self.cpus_per_node = int(cpus_per_node)
        self.max_array_size = int(max_array_size)
        self.extra_config = dict(extra_config or {})
        self.cgroup_config = dict(cgroup_config or {})
        if self.num_nodes == 1:
            self.node_names = ["localhost"]
        else:
            self.node_names = [f"n{i + 1}" for i in range(self.num_nodes)]
        self._children: dict[int, subprocess.Popen] = {}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(directory={self.directory!r}, "
            f"num_nodes={self.num_nodes}, cpus_per_node={self.cpus_per_node})"
        )

    def __enter__(self) -> "LocalSlurmCluster":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------
    # paths

    @property
    def slurm_conf(self) -> str:
        """Path of this cluster's ``slurm.conf``."""
        return os.path.join(self.directory, "slurm.conf")

    @property
    def cluster_name(self) -> str:
        """``ClusterName``: unique per directory."""
        digest = hashlib.sha256(self.directory.encode()).hexdigest()
        return "pp" + digest[:10]

    def _path(self, *parts: str) -> str:
        return os.path.join(self.directory, *parts)

    def _record_path(self, name: str) -> str:
        return self._path("run", name + ".json")

    def slurmctld_log(self) -> str:
        """Path of slurmctld's log file."""
        return self._path("log", "slurmctld.log")

    def slurmd_log(self, node_name: str) -> str:
        """Path of the log file of the slurmd of node ``node_name``."""
        return self._path("log", f"slurmd-{node_name}.log")

    def env(self) -> dict[str, str]:
        """
        A copy of ``os.environ`` with ``SLURM_CONF`` set to this cluster's
        ``slurm.conf``, for subprocesses running SLURM's clients.
        """
        env = dict(os.environ)
        env["SLURM_CONF"] = self.slurm_conf
        return env

    # ------------------------------------------------------------------
    # install

    def install(self) -> None:
        """
        Install ``slurm-wlm`` and ``munge`` with apt-get, unless
        ``slurmctld``, ``slurmd``, ``sbatch`` and ``munged`` are all there.

        Raises
        ------
        LocalSlurmClusterError
            If something is missing and this is not root, there is no
            apt-get, or apt-get fails.
        """
        missing = daemons.missing_programs(REQUIRED_PROGRAMS)
        if not missing:
            return
        daemons.require_root_to_install(missing, APT_PACKAGES, LocalSlurmClusterError)
        if _which("apt-get") is None:
            raise LocalSlurmClusterError(
                f"{', '.join(missing)} not found and there is no apt-get: "
                "install SLURM (slurmctld, slurmd, clients) and munge yourself."
            )
        for argv in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES],
        ):
            daemons.run_install_step(argv, error=LocalSlurmClusterError)
        daemons.require_installed(REQUIRED_PROGRAMS, APT_PACKAGES, LocalSlurmClusterError)

    # ------------------------------------------------------------------
    # start

    def start(self, timeout: float = 60.0) -> None:
        """
        Install if needed, then start munged (unless one answers already),
        slurmctld and one slurmd per node, and wait until every node is idle.

        Does nothing if this cluster's slurmctld runs already (use
        :meth:`resume_node` for a node stopped by :meth:`fail_node`).
        Whatever this call started is stopped again if it fails.

        Parameters
        ----------
        timeout : float
            Seconds to wait for munge, slurmctld and the nodes.

        Raises
        ------
        LocalSlurmClusterError
            If it is not root, on a timeout (with the tail of the daemons'
            logs), or if this directory runs a cluster with other nodes.
        """
        deadline = time.monotonic() + timeout
        self._check_path_length()
        self.install()
        if os.geteuid() != 0:
            raise LocalSlurmClusterError("starting SLURM daemons needs root")
        if self.is_running():
            running = sorted(r.name for r in self._records() if r.name.startswith("slurmd-"))
            wanted = sorted("slurmd-" + n for n in self.node_names)
            if running != wanted:
                raise LocalSlurmClusterError(
                    f"a cluster with other nodes ({running}) runs in "
                    f"{self.directory}; stop it first"
                )
            return
        self.stop()  # leftovers of a cluster that died half-way
        try:
            self._ensure_munge(deadline)
            self._write_config()
            self._start_slurmctld(deadline)
            for node_name in self.node_names:
                self._start_slurmd(node_name)
            self.wait_until_idle(timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise

    def _check_path_length(self) -> None:
        # slurmstepd listens on the unix socket <spool>/<node>_<job>.<step>
        longest = max(
            len(self._path("spool", n, f"{n}_4294967295.4294967295")) for n in self.node_names
        )
        if longest > MAX_UNIX_SOCKET_PATH:
            raise LocalSlurmClusterError(
                f"directory {self.directory!r} is too long: slurmstepd's sockets "
                f"in it would need {longest} characters, at most "
                f"{MAX_UNIX_SOCKET_PATH} work"
            )

    def _make_dirs(self) -> None:
        for d in ("", "state", "spool", "log", "run"):
            path = self._path(d) if d else self.directory
            os.makedirs(path, mode=0o700, exist_ok=True)
            os.chmod(path, 0o700)
        for node_name in self.node_names:
            os.makedirs(self._path("spool", node_name), mode=0o700, exist_ok=True)

    def config_lines(self, slurmctld_port: int, node_ports: list[int]) -> list[str]:
        """
        The lines of ``slurm.conf`` for the given ports.

        Parameters
        ----------
        slurmctld_port : int
            ``SlurmctldPort``.
        node_ports : list of int
            One ``Port`` per node, in the order of :attr:`node_names`.

        Returns
        -------
        list of str
        """
        if len(node_ports) != len(self.node_names):
            raise ValueError("need one port per node")
        multi = self.num_nodes > 1
        slurmd_name = "%n" if multi else self.node_names[0]
        settings = {
            "ClusterName": self.cluster_name,
            "SlurmctldHost": "localhost",
            "SlurmctldPort": str(slurmctld_port),
            "SlurmdPort": str(node_ports[0]),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": "cred_expire=10",
            "MpiDefault": "none",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/linux",
            "AccountingStorageType": "accounting_storage/none",
            "JobCompType": "jobcomp/filetxt",
            "JobCompLoc": self._path("log", "jobcomp.txt"),
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",
            "SchedulerType": "sched/backfill",
            "SchedulerParameters": SCHEDULER_PARAMETERS,
            "Epilog": _which_or_raise("true"),
            "MailProg": _which_or_raise("true"),
            "ReturnToService": "1",
            "MaxArraySize": str(self.max_array_size),
            "SlurmdTimeout": "3",
            "MessageTimeout": "2",
            "SlurmdParameters": "config_overrides",
            "StateSaveLocation": self._path("state"),
            "SlurmdSpoolDir": self._path("spool", slurmd_name),
            "SlurmctldPidFile": self._path("run", "slurmctld.pid"),
            "SlurmdPidFile": self._path("run", f"slurmd-{slurmd_name}.pid"),
            "SlurmctldLogFile": self.slurmctld_log(),
            "SlurmdLogFile": self._path("log", f"slurmd-{slurmd_name}.log"),
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
            "PlugStackConfig": self._path("plugstack.conf"),
        }
        lower = {k.lower(): k for k in settings}
        for key, value in self.extra_config.items():
            settings[lower.get(key.lower(), key)] = str(value)
        lines = [f"# written by pypoolparty.testing.local_slurm for {self.directory}"]
        lines += [f"{k}={v}" for k, v in settings.items() if v != ""]
        memory_mb = max(1, _memory_mb() // self.num_nodes)
        c = self.cpus_per_node
        for node_name, port in zip(self.node_names, node_ports):
            host = " NodeHostname=localhost" if multi else ""
            lines.append(
                f"NodeName={node_name}{host} NodeAddr=127.0.0.1 Port={port} "
                f"CPUs={c} Boards=1 SocketsPerBoard=1 CoresPerSocket={c} "
                f"ThreadsPerCore=1 RealMemory={memory_mb} State=UNKNOWN"
            )
        lines.append(
            f"PartitionName=debug Nodes={','.join(self.node_names)} "
            "Default=YES MaxTime=INFINITE State=UP"
        )
        return lines

    def _write_config(self) -> None:
        self._make_dirs()
        ports = _free_tcp_ports(1 + self.num_nodes)
        lines = self.config_lines(ports[0], ports[1:])
        _write_text(self.slurm_conf, "\n".join(lines) + "\n", mode=0o644)
        _write_text(self._path("plugstack.conf"), "# no SPANK plugins\n", mode=0o644)
        cgroup = ["# read by slurmd from the directory of slurm.conf"]
        cgroup += [f"{k}={v}" for k, v in self.cgroup_config.items()]
        _write_text(self._path("cgroup.conf"), "\n".join(cgroup) + "\n", mode=0o644)

    def _daemon_env(self, node_name: str | None = None) -> dict[str, str]:
        env = self.env()
        env["PATH"] = _search_path()
        env[CONF_MARKER_ENV] = self.slurm_conf
        if node_name is not None:
            env[NODE_MARKER_ENV] = node_name
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], **kwargs) -> DaemonRecord:
        log_path = self._path("log", name + ".out")
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                **kwargs,
            )
        self._children[proc.pid] = proc
        stat = None
        for _ in range(100):  # the exec may not have happened yet
            stat = _read_proc_stat(proc.pid)
            if stat is not None and _read_cmdline(proc.pid) == argv:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        if proc.poll() is not None or stat is None:
            raise LocalSlurmClusterError(
                f"{name} exited at once ({shlex.join(argv)}):\n"
                + _tail_file(log_path)
            )
        record = DaemonRecord(name=name, pid=proc.pid, start_time=stat[1], argv=argv)
        _write_text(self._record_path(name), json.dumps(dataclasses.asdict(record)))
        return record

    def _start_slurmctld(self, deadline: float) -> None:
        argv = [_which_or_raise("slurmctld"), "-D", "-c", "-f", self.slurm_conf]
        record = self._spawn("slurmctld", argv, self._daemon_env())
        while True:
            proc = self._run(["scontrol", "ping"], check=False, timeout=10)
            if proc.returncode == 0 and " is UP" in proc.stdout:
                return
            if not record.is_alive():
                raise LocalSlurmClusterError(
                    "slurmctld exited:\n" + self.log_tails(["slurmctld"])
                )
            if time.monotonic() > deadline:
                raise LocalSlurmClusterError(
                    "slurmctld did not answer `scontrol ping` in time:\n"
                    + self.log_tails(["slurmctld"])
                )
            time.sleep(0.05)

    def _start_slurmd(self, node_name: str) -> None:
        argv = [
            _which_or_raise("slurmd"), "-D", "-c", "-N", node_name, "-f", self.slurm_conf,
        ]
        self._spawn("slurmd-" + node_name, argv, self._daemon_env(node_name))

    def node_states(self) -> dict[str, str]:
        """
        The state of every node, as ``sinfo -N -o "%N %t"`` prints it
        (``idle``, ``alloc``, ``mix``, ``down*``, ...).
        """
        return self._node_states(check=True)

    def _node_states(self, check: bool) -> dict[str, str]:
        proc = self._run(["sinfo", "-h", "-N", "-o", "%N %t"], check=check, timeout=10)
        if proc.returncode != 0:
            return {"sinfo": proc.stderr.strip()}
        return dict(line.split() for line in proc.stdout.splitlines() if len(line.split()) == 2)

    def wait_until_idle(
        self, timeout: float = 30.0, node_names: list[str] | None = None
    ) -> None:
        """
        Wait until ``sinfo`` shows the nodes ``idle``.

        Parameters
        ----------
        timeout : float
            Seconds.
        node_names : list of str or None
            The nodes to wait for; all by default.

        Raises
        ------
        LocalSlurmClusterError
            On timeout, with the last states and the tail of the logs.
        """
        node_names = list(node_names or self.node_names)
        deadline = time.monotonic() + timeout
        while True:
            states = self._node_states(check=False)
            if all(states.get(n) == "idle" for n in node_names):
                return
            if time.monotonic() > deadline:
                raise LocalSlurmClusterError(
                    f"nodes not idle after {timeout:.0f} s: {states}\n" + self.log_tails()
                )
            time.sleep(0.1)

    # ------------------------------------------------------------------
    # munge

    @staticmethod
    def munge_works() -> bool:
        """True if ``munge -n | unmunge`` succeeds."""
        munge, unmunge = _which("munge"), _which("unmunge")
        if munge is None or unmunge is None:
            return False
        try:
            cred = subprocess.run(
                [munge, "-n"], capture_output=True, timeout=5, stdin=subprocess.DEVNULL
            )
            if cred.returncode != 0:
                return False
            check = subprocess.run([unmunge], input=cred.stdout, capture_output=True, timeout=5)
        except subprocess.TimeoutExpired:
            return False
        return check.returncode == 0

    def _ensure_munge(self, deadline: float) -> None:
        if self.munge_works():
            return
        import grp
        import pwd

        try:
            uid = pwd.getpwnam(MUNGE_USER).pw_uid
            gid = grp.getgrnam(MUNGE_USER).gr_gid
        except KeyError:
            raise LocalSlurmClusterError(
                f"there is no user {MUNGE_USER!r}: is the munge package installed?"
            ) from None
        for path, mode in (
            ("/etc/munge", 0o700),
            ("/run/munge", 0o755),
            ("/var/lib/munge", 0o711),
            ("/var/log/munge", 0o700),
        ):
            if not os.path.isdir(path):
                os.makedirs(path, mode=mode)
                os.chown(path, uid, gid)
        if not os.path.exists(MUNGE_KEY_PATH):
            mungekey = _which("mungekey")
            if mungekey is not None:
                subprocess.run(
                    [mungekey, "--create", "--keyfile", MUNGE_KEY_PATH],
                    check=True, capture_output=True,
                )
            else:  # munge < 0.5.14
                _write_text(MUNGE_KEY_PATH, os.urandom(128).hex(), mode=0o400)
        os.chown(MUNGE_KEY_PATH, uid, gid)
        os.chmod(MUNGE_KEY_PATH, 0o400)
        self._make_dirs()
        argv = [_which_or_raise("munged"), "--foreground"]
        record = self._spawn(
            "munged", argv, dict(os.environ), user=uid, group=gid, extra_groups=[], cwd="/"
        )
        while not self.munge_works():
            if not record.is_alive():
                raise LocalSlurmClusterError(
                    "munged exited:\n" + _tail_file(self._path("log", "munged.out"))
                    + _tail_file("/var/log/munge/munged.log")
                )
            if time.monotonic() > deadline:
                raise LocalSlurmClusterError("munge -n | unmunge still fails")
            time.sleep(0.05)

    # ------------------------------------------------------------------
    # state

    def _records(self) -> list[DaemonRecord]:
        run = self._path("run")
        if not os.path.isdir(run):
            return []
        records = []
        for entry in sorted(os.listdir(run)):
            if entry.endswith(".json"):
                record = _load_record(os.path.join(run, entry))
                if record is not None:
                    records.append(record)
        return records

    def _record(self, name: str) -> DaemonRecord | None:
        for record in self._records():
            if record.name == name:
                return record
        return None

    def is_running(self) -> bool:
        """True if this cluster's slurmctld runs."""
        record = self._record("slurmctld")
        return record is not None and record.is_alive()

    def daemon_pids(self) -> dict[str, int]:
        """The pids of the daemons this cluster started and that still run."""
        return {r.name: r.pid for r in self._records() if r.is_alive()}

    def log_tails(self, names: list[str] | None = None, num_lines: int = 15) -> str:
        """
        The last lines of the daemons' logs, for error messages.

        Parameters
        ----------
        names : list of str or None
            ``"slurmctld"`` and/or ``"slurmd-<node>"``; all by default.
        num_lines : int
            Lines per file.
        """
        if names is None:
            names = ["slurmctld"] + ["slurmd-" + n for n in self.node_names]
        out = []
        for name in names:
            for path in (self._path("log", name + ".log"), self._path("log", name + ".out")):
                out.append(_tail_file(path, num_lines))
        return "".join(out)

    # ------------------------------------------------------------------
    # stop

    def stop(self, timeout: float = 30.0) -> None:
        """
        Cancel every job of this cluster, stop the daemons it started and
        kill what is left of its jobs' daemons.

        Only processes recorded in the directory (and matching their pid,
        start time and command line) are signalled, plus slurmstepd and
        job processes of this cluster's nodes. munged is stopped only if
        this cluster started it and no other SLURM daemon on the machine
        still runs; otherwise another cluster of this kind takes it over.
        Does nothing if nothing runs.

        Parameters
        ----------
        timeout : float
            Seconds to wait for jobs and daemons; SIGKILL follows SIGTERM
            after this.
        """
        deadline = time.monotonic() + timeout
        if self.is_running():
            try:
                self._cancel_all_jobs(deadline=time.monotonic() + min(10.0, timeout / 2))
            except (LocalSlurmClusterError, subprocess.SubprocessError, OSError):
                pass  # the processes are killed below anyway
        records = self._records()
        slurmds = [r for r in records if r.name.startswith("slurmd-")]
        _terminate([r for r in slurmds if r.is_alive()], deadline)
        _terminate([r for r in records if r.name == "slurmctld" and r.is_alive()], deadline)
        _kill_all(self._job_processes())
        for r in slurmds + [r for r in records if r.name == "slurmctld"]:
            _remove(self._record_path(r.name))
        munged = self._record("munged")
        if munged is not None:
            self._release_munged(munged, deadline)
        for pid, proc in list(self._children.items()):
            if proc.poll() is not None:
                del self._children[pid]

    def _cancel_all_jobs(self, deadline: float) -> None:
        """
        scancel every job, then SIGKILL their processes (slurmd would send
        SIGTERM and wait ``KillWait``, 30 s, for jobs that ignore it), and
        wait until the queue is empty.
        """
        proc = self._run(["squeue", "-h", "-o", "%F"], timeout=10)
        job_ids = sorted(set(proc.stdout.split()))
        if not job_ids:
            return
        self._run(["scancel", *job_ids], check=False, timeout=10)
        _kill_all(self._job_processes(helpers=False))
        while time.monotonic() < deadline:
            proc = self._run(["squeue", "-h", "-o", "%i"], check=False, timeout=10)
            if proc.returncode == 0 and not proc.stdout.strip():
                return
            time.sleep(0.1)

    def _release_munged(self, munged: DaemonRecord, deadline: float) -> None:
        if not munged.is_alive():
            _remove(self._record_path("munged"))
            return
        others = [
            pid for pid in _pids()
            if _read_comm(pid) in SLURM_DAEMON_NAMES and _is_live(pid)
        ]
        if not others:
            _terminate([munged], deadline)
            _remove(self._record_path("munged"))
            return
        # Another cluster still authenticates through it: hand the record
        # to the first one of our kind, so that its stop() stops munged.
        for pid in others:
            argv = _read_cmdline(pid)
            if _read_comm(pid) != "slurmctld" or "-f" not in argv[:-1]:
                continue
            conf = argv[argv.index("-f") + 1]
            other_run = os.path.join(os.path.dirname(conf), "run")
            target = os.path.join(other_run, "munged.json")
            if (
                conf != self.slurm_conf
                and os.path.exists(os.path.join(other_run, "slurmctld.json"))
                and not _load_record(target, alive=True)
            ):
                _write_text(target, json.dumps(dataclasses.asdict(munged)))
                break
        _remove(self._record_path("munged"))

    def _job_processes(
        self, node_name: str | None = None, helpers: bool = True
    ) -> list[tuple[int, int]]:
        """
        (pid, start time) of this cluster's jobs, sorted by pid, for
        :func:`_kill_all`: processes with ``SLURM_CONF`` and
        ``SLURM_JOB_ID`` in their environment, and all descendants of its
        slurmstepds. With ``helpers``, also the slurmstepd and slurmscriptd
        processes themselves (found by the marker they inherit from
        slurmd/slurmctld). Never the recorded daemons; optionally only
        what belongs to one node.
        """
        me = _ancestors(os.getpid())
        daemons = {r.pid for r in self._records()}
        helper_pids, roots = set(), set()
        children: dict[int, list[int]] = {}
        start_times: dict[int, int] = {}
        for pid in _pids():
            if pid in me or pid in daemons:
                continue
            start_time = _live_start_time(pid)
            if start_time is None:
                continue
            start_times[pid] = start_time
            ppid = _read_ppid(pid)
            if ppid is not None:
                children.setdefault(ppid, []).append(pid)
            env = _read_environ(pid)
            if env.get(CONF_MARKER_ENV) == self.slurm_conf:
                node, into = env.get(NODE_MARKER_ENV), helper_pids
            elif env.get("SLURM_CONF") == self.slurm_conf and "SLURM_JOB_ID" in env:
                node, into = env.get("SLURMD_NODENAME"), roots
            else:
                continue
            if node_name is None or node == node_name:
                into.add(pid)
        roots.update(c for h in helper_pids for c in children.get(h, []))
        found = set()
        todo = list(roots)
        while todo:
            pid = todo.pop()
            if pid in found or pid in me:
                continue
            found.add(pid)
            todo.extend(children.get(pid, []))
        found = (found | helper_pids) if helpers else (found - helper_pids)
        return sorted((pid, start_times[pid]) for pid in found)

    # ------------------------------------------------------------------
    # node failures

    def fail_node(self, node_name: str) -> None:
        """
        Let a node die: freeze (SIGSTOP) and then SIGKILL its slurmd, its
        slurmstepd processes and their job processes, so that slurmctld
        sees the node stop answering (NODE_FAIL after ~``SlurmdTimeout``
        plus a few seconds), not jobs that ended.

        Job processes are found as descendants of the node's slurmstepds
        and by ``SLURM_CONF``/``SLURMD_NODENAME`` in their environment; a
        process that left both (new session, reparented, environment
        cleared) escapes.
        """
        self._check_node(node_name)
        frozen: set[tuple[int, int]] = set()
        slurmd = self._record("slurmd-" + node_name)
        if slurmd is not None and slurmd.is_alive():
            os.kill(slurmd.pid, signal.SIGSTOP)
            frozen.add((slurmd.pid, slurmd.start_time))
        for _ in range(20):  # until nothing new forked
            new = [p for p in self._job_processes(node_name) if p not in frozen]
            if not new:
                break
            for pid, start_time in new:
                if _is_same(pid, start_time):
                    _signal(pid, signal.SIGSTOP)
                    frozen.add((pid, start_time))
        _kill_all(sorted(frozen))

    def set_node_down(self, node_name: str, reason: str = "pypoolparty test") -> None:
        """``scontrol update nodename=<node> state=down reason=<reason>``."""
        self._check_node(node_name)
        self._run(
            ["scontrol", "update", f"nodename={node_name}", "state=down", f"reason={reason}"],
            timeout=10,
        )

    def resume_node(self, node_name: str, timeout: float = 30.0) -> None:
        """
        Bring a node back: restart its slurmd if it is gone, set it to
        ``resume`` and wait until it is idle.
        """
        self._check_node(node_name)
        slurmd = self._record("slurmd-" + node_name)
        if slurmd is None or not slurmd.is_alive():
            self._start_slurmd(node_name)
        deadline = time.monotonic() + timeout
        while True:
            state = self._node_states(check=False).get(node_name, "")
            if state == "idle":
                return
            # "down*" (not responding) waits for slurmd; "down" needs resume
            if state.rstrip("~#!%$@^-") in RESUMABLE_NODE_STATES:
                self._run(
                    ["scontrol", "update", f"nodename={node_name}", "state=resume"],
                    check=False, timeout=10,
                )
            if time.monotonic() > deadline:
                raise LocalSlurmClusterError(
                    f"node {node_name} is {state!r}, not idle, after {timeout:.0f} s\n"
                    + self.log_tails(["slurmctld", "slurmd-" + node_name])
                )
            time.sleep(0.2)

    def _check_node(self, node_name: str) -> None:
        if node_name not in self.node_names:
            raise ValueError(f"no node {node_name!r}; nodes are {self.node_names}")

    # ------------------------------------------------------------------
    # clients

    def _run(
        self, argv: list[str], check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess:
        """Run a SLURM client against this cluster."""
        argv = [_which_or_raise(argv[0]), *argv[1:]]
        return daemons.run_client(
            argv, self.env(), error=LocalSlurmClusterError, check=check, timeout=timeout
        )

    def sinfo(self) -> str:
        """The output of ``sinfo`` for this cluster."""
        return self._run(["sinfo"], timeout=10).stdout


# ----------------------------------------------------------------------
# small helpers


def _which_or_raise(program: str) -> str:
    return daemons.which_or_raise(
        program, LocalSlurmClusterError, "install slurm-wlm and munge"
    )


def _terminate(records: list[DaemonRecord], deadline: float) -> None:
    """SIGTERM, wait until ``deadline``, then SIGKILL and wait a little."""
    daemons.terminate(records, deadline, error=LocalSlurmClusterError)


def _free_tcp_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 1024


# ----------------------------------------------------------------------
# command line


def default_directory() -> str:
    """``$PYPOOLPARTY_LOCAL_SLURM_DIR`` or ``~/.pypoolparty/local_slurm``."""
    return os.path.expanduser(os.environ.get(DEFAULT_DIRECTORY_ENV) or DEFAULT_DIRECTORY)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pypoolparty.testing.local_slurm``."""
    parser = argparse.ArgumentParser(
        prog="python -m pypoolparty.testing.local_slurm",
        description="A real SLURM cluster on this machine (needs root).",
    )
    parser.add_argument("command", choices=["install", "start", "stop", "status", "env"])
    parser.add_argument(
        "--dir", default=None,
        help=f"its directory (default: ${DEFAULT_DIRECTORY_ENV} or {DEFAULT_DIRECTORY})",
    )
    parser.add_argument("--nodes", type=int, default=1, help="number of nodes (start)")
    parser.add_argument(
        "--cpus-per-node", type=int, default=None, help="CPUs per node (default: this machine's)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (start, stop)")
    args = parser.parse_args(argv)

    cluster = LocalSlurmCluster(
        directory=args.dir or default_directory(),
        num_nodes=args.nodes,
        cpus_per_node=args.cpus_per_node,
    )
    export_line = "export SLURM_CONF=" + shlex.quote(cluster.slurm_conf)
    try:
        if args.command == "install":
            cluster.install()
            print("slurmctld, slurmd, sbatch and munged are installed")
        elif args.command == "start":
            t0 = time.monotonic()
            cluster.start(timeout=args.timeout)
            # comments, so that `eval "$(... start)"` runs only the export
            for line in cluster.sinfo().splitlines():
                print("# " + line)
            print(f"# running in {cluster.directory} ({time.monotonic() - t0:.1f} s)")
            print(export_line)
        elif args.command == "stop":
            cluster.stop(timeout=args.timeout)
            print(f"# stopped {cluster.directory}")
        elif args.command == "status":
            if not cluster.is_running():
                print(f"not running ({cluster.directory})")
                return 1
            print(cluster.sinfo(), end="")
        elif args.command == "env":
            print(export_line)
    except LocalSlurmClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
