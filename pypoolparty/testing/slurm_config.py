"""
The directory of a local SLURM cluster and the configuration files in it.

Layout of :attr:`LocalSlurmCluster.directory
<pypoolparty.testing.local_slurm.LocalSlurmCluster>`::

    slurm.conf  cgroup.conf  plugstack.conf   read by the daemons and clients
    state/                                    slurmctld's StateSaveLocation
    spool/<node>/                             each slurmd's SlurmdSpoolDir
    log/<daemon>.log, log/<daemon>.out        the daemons' logs and stdout
    log/jobcomp.txt                           one line per finished job
    run/<daemon>.json, run/<daemon>.pid       the daemons' records and pid files
"""
from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Iterable

from . import daemons

if TYPE_CHECKING:
    from .local_slurm import LocalSlurmCluster

# How quickly array tasks start, measured on 2 CPUs (20 tasks of `true`):
# SLURM's defaults ~30 s (2 tasks every 3 s); batch_sched_delay=0 ~10 s
# (2 tasks per pass of slurmctld's 1 s background loop); plus an Epilog
# ~0.6-1.0 s. A finished batch job without steps is otherwise reported by
# slurmd as "already complete", which only queues a scheduling request for
# that loop, while MESSAGE_EPILOG_COMPLETE runs the scheduler at once.
# sched_min_interval, sched_interval and default_queue_depth made no
# measurable difference here.
SCHEDULER_PARAMETERS = "batch_sched_delay=0"

#: The keys of ``slurm.conf`` by which a tuned cluster starts jobs sooner
#: than SLURM's defaults; a stock cluster leaves them out.
TUNING_KEYS = ("SchedulerParameters", "Epilog")

MAX_UNIX_SOCKET_PATH = 107

# Where a cluster keeps the records of its daemons, inside its directory.
RECORD_DIRECTORY = "run"

SUBDIRECTORIES = ("state", "spool", "log", RECORD_DIRECTORY)


def check_path_length(cluster: "LocalSlurmCluster") -> None:
    """
    Raise unless slurmstepd's unix sockets fit into the cluster's directory.

    Raises
    ------
    LocalSlurmClusterError
        If ``<spool>/<node>/<node>_<job>.<step>`` may exceed 107 characters.
    """
    longest = max(
        len(cluster.path("spool", n, f"{n}_4294967295.4294967295")) for n in cluster.node_names
    )
    if longest > MAX_UNIX_SOCKET_PATH:
        raise cluster.error(
            f"directory {cluster.directory!r} is too long: slurmstepd's sockets "
            f"in it would need {longest} characters, at most "
            f"{MAX_UNIX_SOCKET_PATH} work"
        )


def make_directories(cluster: "LocalSlurmCluster") -> None:
    """Create the cluster's directory and its subdirectories, mode 0700."""
    for path in [cluster.directory, *(cluster.path(d) for d in SUBDIRECTORIES)]:
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    for node_name in cluster.node_names:
        os.makedirs(cluster.path("spool", node_name), mode=0o700, exist_ok=True)


def config_lines(
    cluster: "LocalSlurmCluster", slurmctld_port: int, node_ports: list[int]
) -> list[str]:
    """
    The lines of the cluster's ``slurm.conf``.

    Parameters
    ----------
    cluster : LocalSlurmCluster
        Its directory, nodes, CPUs, ``max_array_size`` and ``extra_config``.
    slurmctld_port : int
        ``SlurmctldPort``.
    node_ports : list of int
        One ``Port`` per node, in the order of ``cluster.node_names``.

    Returns
    -------
    list of str
    """
    if len(node_ports) != len(cluster.node_names):
        raise ValueError("need one port per node")
    multi = cluster.num_nodes > 1
    slurmd_name = "%n" if multi else cluster.node_names[0]
    true = cluster.which_or_raise("true")
    settings = {
        "ClusterName": cluster.cluster_name,
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
        "JobCompLoc": cluster.path("log", "jobcomp.txt"),
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core",
        "SchedulerType": "sched/backfill",
        **scheduling_tuning(cluster),
        "MailProg": true,
        "ReturnToService": "1",
        "MaxArraySize": str(cluster.max_array_size),
        "SlurmdTimeout": "3",
        "MessageTimeout": "2",
        "SlurmdParameters": "config_overrides",
        "StateSaveLocation": cluster.path("state"),
        "SlurmdSpoolDir": cluster.path("spool", slurmd_name),
        "SlurmctldPidFile": cluster.path("run", "slurmctld.pid"),
        "SlurmdPidFile": cluster.path("run", f"slurmd-{slurmd_name}.pid"),
        "SlurmctldLogFile": cluster.slurmctld_log(),
        "SlurmdLogFile": cluster.slurmd_log(slurmd_name),
        "SlurmctldDebug": "info",
        "SlurmdDebug": "info",
        "PlugStackConfig": cluster.path("plugstack.conf"),
    }
    lower = {k.lower(): k for k in settings}
    for key, value in cluster.extra_config.items():
        settings[lower.get(key.lower(), key)] = str(value)
    lines = [f"# written by pypoolparty.testing.local_slurm for {cluster.directory}"]
    lines += [f"{k}={v}" for k, v in settings.items() if v != ""]
    memory_mb = max(1, _memory_mb() // cluster.num_nodes)
    c = cluster.cpus_per_node
    for node_name, port in zip(cluster.node_names, node_ports):
        host = " NodeHostname=localhost" if multi else ""
        lines.append(
            f"NodeName={node_name}{host} NodeAddr=127.0.0.1 Port={port} "
            f"CPUs={c} Boards=1 SocketsPerBoard=1 CoresPerSocket={c} "
            f"ThreadsPerCore=1 RealMemory={memory_mb} State=UNKNOWN"
        )
    lines.append(
        f"PartitionName=debug Nodes={','.join(cluster.node_names)} "
        "Default=YES MaxTime=INFINITE State=UP"
    )
    return lines


def scheduling_tuning(cluster: "LocalSlurmCluster") -> dict[str, str]:
    """
    The ``slurm.conf`` settings (:data:`TUNING_KEYS`) that start jobs sooner
    than SLURM's defaults do: none if ``cluster.stock``.
    """
    if cluster.stock:
        return {}
    return {"SchedulerParameters": SCHEDULER_PARAMETERS, "Epilog": cluster.which_or_raise("true")}


def tuning_of(lines: Iterable[str]) -> dict[str, str]:
    """The :data:`TUNING_KEYS` settings among lines of a ``slurm.conf``."""
    found = {}
    for line in lines:
        key, sep, value = line.strip().partition("=")
        if sep and key in TUNING_KEYS:
            found[key] = value
    return found


def check_running_cluster_matches(cluster: "LocalSlurmCluster") -> None:
    """
    Raise unless the cluster running in the directory has the nodes of
    ``cluster`` and its scheduling settings (tuned or ``stock``).

    Raises
    ------
    LocalSlurmClusterError
        Saying what differs.
    """
    running = sorted(r.name for r in cluster.records.all() if r.name.startswith("slurmd-"))
    if running != sorted("slurmd-" + n for n in cluster.node_names):
        raise cluster.error(
            f"a cluster with other nodes ({running}) runs in {cluster.directory}; stop it first"
        )
    with open(cluster.slurm_conf) as f:
        written = tuning_of(f)
    if written != tuning_of(config_lines(cluster, 0, [0] * cluster.num_nodes)):
        other = "tuned" if cluster.stock else "stock"
        raise cluster.error(
            f"a cluster with {other} scheduling runs in {cluster.directory}; stop it first"
        )


def write_files(cluster: "LocalSlurmCluster") -> None:
    """
    Write ``slurm.conf`` (on TCP ports free right now), ``plugstack.conf``
    (no SPANK plugins) and ``cgroup.conf`` (``cluster.cgroup_config``).
    """
    ports = _free_tcp_ports(1 + cluster.num_nodes)
    files = {
        "slurm.conf": config_lines(cluster, ports[0], ports[1:]),
        "plugstack.conf": ["# no SPANK plugins"],
        "cgroup.conf": [
            "# read by slurmd from the directory of slurm.conf",
            *(f"{k}={v}" for k, v in cluster.cgroup_config.items()),
        ],
    }
    for name, lines in files.items():
        daemons.write_text(cluster.path(name), "\n".join(lines) + "\n", mode=0o644)


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
    """This machine's memory (``MemTotal``) in MiB."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 1024
