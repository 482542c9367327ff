"""
A real SLURM cluster on this machine, for tests and for a first try.

:class:`LocalSlurmCluster` runs ``slurmctld`` and one ``slurmd`` per node
from the machine's packages (Debian/Ubuntu: ``slurm-wlm``, ``munge``), with
its configuration, state, spool, logs and PID records all inside one
directory of its own (:mod:`pypoolparty.testing.slurm_config`), on TCP ports
of its own. Several such clusters can run side by side, and next to a SLURM
the machine already runs. Clients reach a cluster through ``SLURM_CONF``,
see :meth:`LocalSlurmCluster.env`.

Everything needs root: the daemons run as root (``SlurmUser=root``) and
``munged`` as the user ``munge``.

Command line (see :mod:`pypoolparty.testing.cli`)::

    python -m pypoolparty.testing.local_slurm {install,start,stop,status,env}
        [--dir DIR] [--nodes N] [--cpus-per-node C] [--stock] [--timeout SECONDS]

``start`` prints, as its last line, ``export SLURM_CONF=...`` for a shell to
``eval``; ``env`` prints only that line. The default directory is
``$PYPOOLPARTY_LOCAL_SLURM_DIR`` or ``~/.pypoolparty/local_slurm``.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time

from . import cli, daemons, munge, processes, slurm_config, slurm_processes
from .local_cluster import LocalCluster, LocalClusterError
from .slurm_config import SCHEDULER_PARAMETERS

__all__ = ["LocalSlurmCluster", "LocalSlurmClusterError", "SCHEDULER_PARAMETERS", "main"]

DEFAULT_DIRECTORY_ENV = "PYPOOLPARTY_LOCAL_SLURM_DIR"
DEFAULT_DIRECTORY = os.path.join("~", ".pypoolparty", "local_slurm")

# sinfo's short node states that `scontrol update state=resume` clears
RESUMABLE_NODE_STATES = ("down", "drain", "drng", "fail", "failg")

class LocalSlurmClusterError(LocalClusterError):
    """A local SLURM cluster could not be installed, started or stopped."""


class LocalSlurmCluster(LocalCluster):
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
    stock : bool
        SLURM's default scheduling latency, as users' clusters have it: no
        ``SchedulerParameters`` and no ``Epilog`` (see Notes). The rest is
        the same; it matters only once a node fails or a job is requeued
        (``SlurmdTimeout``, ``MessageTimeout``, ``AuthInfo``, ``ReturnToService``).

    Attributes
    ----------
    directory : str
        Absolute path of the directory.
    node_names : list of str
        The names of the nodes.
    records : DaemonRecords
        The records of its daemons, in ``<directory>/run``.

    Notes
    -----
    Starting takes well under a second. slurmctld's first scheduling pass
    comes 3 s after it started (it reads ``batch_sched_delay`` only then),
    so the first job waits until then; afterwards a job starts ~0.05-1 s
    after ``sbatch`` and 20 trivial array tasks on 2 CPUs take ~1 s (the
    ``Epilog`` and ``SchedulerParameters`` it sets make the difference; with
    SLURM's defaults, as with ``stock=True``, it is ~30 s). The daemons are
    started with ``slurmctld -c`` and ``slurmd -c``: no job survives a restart, but job
    ids keep counting up in the same directory.
    """

    error = LocalSlurmClusterError
    title = "SLURM"
    #: Open MPI too, for calls on several MPI ranks (``srun --mpi=pmix``).
    packages = ("slurm-wlm", "munge", "openmpi-bin")
    programs = ("slurmctld", "slurmd", "sbatch", "munged", "mpirun")

    def __init__(
        self,
        directory: str,
        num_nodes: int = 1,
        cpus_per_node: int | None = None,
        max_array_size: int = 1001,
        extra_config: dict[str, str] | None = None,
        *,
        cgroup_config: dict[str, str] | None = None,
        stock: bool = False,
    ) -> None:
        if cpus_per_node is None:
            cpus_per_node = os.cpu_count() or 1
        for name, value in (
            ("num_nodes", num_nodes), ("cpus_per_node", cpus_per_node),
            ("max_array_size", max_array_size),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, not {value}")
        self.directory = os.path.abspath(os.path.expanduser(directory))
        super().__init__(os.path.join(self.directory, slurm_config.RECORD_DIRECTORY))
        self.num_nodes = int(num_nodes)
        self.cpus_per_node = int(cpus_per_node)
        self.max_array_size = int(max_array_size)
        self.extra_config = dict(extra_config or {})
        self.cgroup_config = dict(cgroup_config or {})
        self.stock = bool(stock)
        if self.num_nodes == 1:
            self.node_names = ["localhost"]
        else:
            self.node_names = [f"n{i + 1}" for i in range(self.num_nodes)]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(directory={self.directory!r}, num_nodes={self.num_nodes}, "
            f"cpus_per_node={self.cpus_per_node}, stock={self.stock})"
        )

    # ------------------------------------------------------------------
    # paths

    @property
    def slurm_conf(self) -> str:
        """Path of this cluster's ``slurm.conf``."""
        return self.path("slurm.conf")

    @property
    def cluster_name(self) -> str:
        """``ClusterName``: unique per directory."""
        return "pp" + hashlib.sha256(self.directory.encode()).hexdigest()[:10]

    def path(self, *parts: str) -> str:
        """A path inside the cluster's directory."""
        return os.path.join(self.directory, *parts)

    def slurmctld_log(self) -> str:
        """Path of slurmctld's log file."""
        return self.path("log", "slurmctld.log")

    def slurmd_log(self, node_name: str) -> str:
        """Path of the log file of the slurmd of node ``node_name``."""
        return self.path("log", f"slurmd-{node_name}.log")

    def client_variables(self) -> dict[str, str]:
        """``SLURM_CONF``: this cluster's ``slurm.conf``."""
        return {"SLURM_CONF": self.slurm_conf}

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
            logs), or if this directory runs a cluster with other nodes or
            other scheduling settings (tuned or ``stock``).
        """
        deadline = time.monotonic() + timeout
        slurm_config.check_path_length(self)
        self.install()
        if os.geteuid() != 0:
            raise self.error("starting SLURM daemons needs root")
        if self.is_running():
            slurm_config.check_running_cluster_matches(self)
            return
        self.stop()  # leftovers of a cluster that died half-way
        try:
            slurm_config.make_directories(self)
            if not munge.munge_works():
                munge.start_munged(self, deadline)
            slurm_config.write_files(self)
            self._start_slurmctld(deadline)
            for node_name in self.node_names:
                self._start_slurmd(node_name)
            self.wait_until_idle(timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise

    def _start_slurmctld(self, deadline: float) -> None:
        argv = [self.which_or_raise("slurmctld"), "-D", "-c", "-f", self.slurm_conf]
        record = self.spawn(
            "slurmctld", argv, slurm_processes.daemon_env(self), self.path("log", "slurmctld.out")
        )

        def answers() -> bool:
            proc = self.run(["scontrol", "ping"], check=False, timeout=10)
            return proc.returncode == 0 and " is UP" in proc.stdout

        self.wait_until(
            answers, deadline, "slurmctld does not answer `scontrol ping`", daemon=record,
            logs=lambda: self.log_tails(["slurmctld"]), interval=0.05,
        )

    def _start_slurmd(self, node_name: str) -> None:
        name = "slurmd-" + node_name
        argv = [self.which_or_raise("slurmd"), "-D", "-c", "-N", node_name, "-f", self.slurm_conf]
        env = slurm_processes.daemon_env(self, node_name)
        self.spawn(name, argv, env, self.path("log", name + ".out"))

    def node_states(self) -> dict[str, str]:
        """
        The state of every node, as ``sinfo -N -o "%N %t"`` prints it
        (``idle``, ``alloc``, ``mix``, ``down*``, ...).
        """
        return self._node_states(check=True)

    def _node_states(self, check: bool) -> dict[str, str]:
        proc = self.run(["sinfo", "-h", "-N", "-o", "%N %t"], check=check, timeout=10)
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
        names = list(node_names or self.node_names)

        def idle() -> bool:
            states = self._node_states(check=False)
            return all(states.get(n) == "idle" for n in names)

        self.wait_until(
            idle, time.monotonic() + timeout,
            lambda: f"nodes not idle after {timeout:.0f} s: {self._node_states(check=False)}",
        )

    # ------------------------------------------------------------------
    # state

    def is_running(self) -> bool:
        """True if this cluster's slurmctld runs."""
        return self.records.load_alive("slurmctld") is not None

    def overview(self) -> str:
        """The output of ``sinfo`` for this cluster."""
        return self.run(["sinfo"], timeout=10).stdout

    def log_tails(self, names: list[str] | None = None, num_lines: int = 15) -> str:
        """
        The last lines of the daemons' logs, for error messages.

        Parameters
        ----------
        names : list of str or None
            ``"slurmctld"``, ``"slurmd-<node>"`` and/or ``"munged"``;
            slurmctld and the slurmds by default.
        num_lines : int
            Lines per file.
        """
        if names is None:
            names = ["slurmctld"] + ["slurmd-" + n for n in self.node_names]
        return "".join(
            daemons.tail_file(self.path("log", name + suffix), num_lines)
            for name in names for suffix in (".log", ".out")
        )

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
            except (LocalClusterError, subprocess.SubprocessError, OSError):
                pass  # the processes are killed below anyway
        records = self.records.all()
        slurmds = [r for r in records if r.name.startswith("slurmd-")]
        slurmctld = [r for r in records if r.name == "slurmctld"]
        self.terminate(slurmds, deadline)
        self.terminate(slurmctld, deadline)
        processes.kill_all(slurm_processes.job_processes(self))
        for record in slurmds + slurmctld:
            self.records.forget(record.name)
        munged = self.records.load("munged")
        if munged is not None:
            munge.release_munged(self, munged, deadline)
        self._forget_ended_children()

    def _cancel_all_jobs(self, deadline: float) -> None:
        """
        scancel every job, then SIGKILL their processes (slurmd would send
        SIGTERM and wait ``KillWait``, 30 s, for jobs that ignore it), and
        wait until the queue is empty.
        """
        job_ids = sorted(set(self.run(["squeue", "-h", "-o", "%F"], timeout=10).stdout.split()))
        if not job_ids:
            return
        self.run(["scancel", *job_ids], check=False, timeout=10)
        processes.kill_all(slurm_processes.job_processes(self, helpers=False))
        while time.monotonic() < deadline:
            proc = self.run(["squeue", "-h", "-o", "%i"], check=False, timeout=10)
            if proc.returncode == 0 and not proc.stdout.strip():
                return
            time.sleep(0.1)

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
        slurm_processes.kill_node(self, node_name)

    def set_node_down(self, node_name: str, reason: str = "pypoolparty test") -> None:
        """``scontrol update nodename=<node> state=down reason=<reason>``."""
        self._check_node(node_name)
        self.run(
            ["scontrol", "update", f"nodename={node_name}", "state=down", f"reason={reason}"],
            timeout=10,
        )

    def resume_node(self, node_name: str, timeout: float = 30.0) -> None:
        """
        Bring a node back: restart its slurmd if it is gone, set it to
        ``resume`` and wait until it is idle.
        """
        self._check_node(node_name)
        if self.records.load_alive("slurmd-" + node_name) is None:
            self._start_slurmd(node_name)

        def idle() -> bool:
            state = self._node_states(check=False).get(node_name, "")
            # "down*" (not responding) waits for slurmd; "down" needs resume
            if state.rstrip("~#!%$@^-") in RESUMABLE_NODE_STATES:
                self.run(
                    ["scontrol", "update", f"nodename={node_name}", "state=resume"],
                    check=False, timeout=10,
                )
            return state == "idle"

        self.wait_until(
            idle, time.monotonic() + timeout,
            lambda: f"node {node_name} is {self._node_states(check=False).get(node_name)!r}, "
            f"not idle, after {timeout:.0f} s",
            logs=lambda: self.log_tails(["slurmctld", "slurmd-" + node_name]),
            interval=0.2,
        )

    def _check_node(self, node_name: str) -> None:
        if node_name not in self.node_names:
            raise ValueError(f"no node {node_name!r}; nodes are {self.node_names}")


# ----------------------------------------------------------------------
# command line


def default_directory() -> str:
    """``$PYPOOLPARTY_LOCAL_SLURM_DIR`` or ``~/.pypoolparty/local_slurm``."""
    return os.path.expanduser(os.environ.get(DEFAULT_DIRECTORY_ENV) or DEFAULT_DIRECTORY)


def _from_arguments(directory: str, args: argparse.Namespace) -> LocalSlurmCluster:
    return LocalSlurmCluster(
        directory, num_nodes=args.nodes, cpus_per_node=args.cpus_per_node, stock=args.stock
    )


COMMAND_LINE = cli.CommandLine(
    module="pypoolparty.testing.local_slurm",
    description="A real SLURM cluster on this machine (needs root).",
    directory_help=f"its directory (default: ${DEFAULT_DIRECTORY_ENV} or {DEFAULT_DIRECTORY})",
    default_directory=default_directory,
    options=(
        cli.Option("--nodes", "number of nodes (start)", default=1),
        cli.Option("--cpus-per-node", "CPUs per node (default: this machine's)"),
        cli.Option("--stock", "SLURM's default scheduling latency, untuned (start)", switch=True),
    ),
    make_cluster=_from_arguments,
)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pypoolparty.testing.local_slurm``."""
    return COMMAND_LINE.main(argv)


if __name__ == "__main__":
    sys.exit(main())
