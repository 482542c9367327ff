"""
The processes of a local SLURM cluster's jobs.

slurmd and slurmctld start with markers in their environment
(:func:`daemon_env`) that every slurmstepd and slurmscriptd they fork
inherits; job processes carry the cluster's ``SLURM_CONF``. So the
processes of one cluster, or of one of its nodes, can be found in ``/proc``
(:func:`job_processes`): to kill what is left of them when the cluster
stops, and to let a node die (:func:`kill_node`).
"""
from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

from . import daemons, processes

if TYPE_CHECKING:
    from .local_slurm import LocalSlurmCluster

CONF_MARKER_ENV = "PYPOOLPARTY_LOCAL_SLURM_CONF"
NODE_MARKER_ENV = "PYPOOLPARTY_LOCAL_SLURM_NODE"


def daemon_env(cluster: "LocalSlurmCluster", node_name: str | None = None) -> dict[str, str]:
    """
    The environment of a daemon of ``cluster`` (slurmd of ``node_name``, or
    slurmctld if None): the cluster's client environment, the search path
    with the sbin directories, and the markers.
    """
    env = cluster.env()
    env["PATH"] = daemons.search_path()
    env[CONF_MARKER_ENV] = cluster.slurm_conf
    if node_name is not None:
        env[NODE_MARKER_ENV] = node_name
    return env


def job_processes(
    cluster: "LocalSlurmCluster", node_name: str | None = None, helpers: bool = True
) -> list[tuple[int, int]]:
    """
    The processes of a cluster's jobs.

    Parameters
    ----------
    cluster : LocalSlurmCluster
        The cluster.
    node_name : str or None
        Only those of this node; all by default.
    helpers : bool
        Also the slurmstepd and slurmscriptd processes themselves (found by
        the markers they inherit), not only the jobs' processes.

    Returns
    -------
    list of tuple of (int, int)
        (pid, start time) for :func:`~pypoolparty.testing.processes.kill_all`:
        processes with the cluster's ``SLURM_CONF`` and a ``SLURM_JOB_ID``
        in their environment, and all descendants of its slurmstepds. Never
        the recorded daemons, nor this process or its ancestors.
    """
    me = processes.ancestors(os.getpid())
    recorded = {r.pid for r in cluster.records.all()}
    helper_pids: set[int] = set()
    roots: set[int] = set()
    for pid in processes.list_pids():
        if pid in me or pid in recorded:
            continue
        env = processes.read_environ(pid)
        if env.get(CONF_MARKER_ENV) == cluster.slurm_conf:
            node, into = env.get(NODE_MARKER_ENV), helper_pids
        elif env.get("SLURM_CONF") == cluster.slurm_conf and "SLURM_JOB_ID" in env:
            node, into = env.get("SLURMD_NODENAME"), roots
        else:
            continue
        if node_name is None or node == node_name:
            into.add(pid)
    found = roots | processes.descendants(roots | helper_pids, exclude=me)
    found = (found | helper_pids) if helpers else (found - helper_pids)
    return processes.with_start_times(found)


def kill_node(cluster: "LocalSlurmCluster", node_name: str) -> None:
    """
    Freeze (SIGSTOP) and then SIGKILL a node's slurmd, its slurmstepds and
    their job processes, so that none of them can report anything: see
    :meth:`~pypoolparty.testing.local_slurm.LocalSlurmCluster.fail_node`.
    """
    frozen: set[tuple[int, int]] = set()
    slurmd = cluster.records.load_alive("slurmd-" + node_name)
    if slurmd is not None:
        processes.send_signal(slurmd.pid, signal.SIGSTOP)
        frozen.add((slurmd.pid, slurmd.start_time))
    for _ in range(20):  # until nothing new forked
        new = [p for p in job_processes(cluster, node_name) if p not in frozen]
        if not new:
            break
        for pid, start_time in new:
            if processes.is_same(pid, start_time):
                processes.send_signal(pid, signal.SIGSTOP)
                frozen.add((pid, start_time))
    processes.kill_all(sorted(frozen))
