"""
munge, the authentication every SLURM daemon and client of this machine
shares: one ``munged`` serves all local SLURM clusters.

A cluster starts ``munged`` only if ``munge -n | unmunge`` fails, and
records it as its own daemon ``munged``; see
:meth:`~pypoolparty.testing.local_slurm.LocalSlurmCluster.stop` for who
stops it.
"""
from __future__ import annotations

import grp
import os
import pwd
import subprocess
from typing import TYPE_CHECKING

from . import daemons, processes, slurm_config
from .daemons import DaemonRecord, DaemonRecords

if TYPE_CHECKING:
    from .local_slurm import LocalSlurmCluster

MUNGE_KEY_PATH = "/etc/munge/munge.key"
MUNGE_USER = "munge"

# The programs that may still need munged.
SLURM_DAEMON_NAMES = ("slurmctld", "slurmscriptd", "slurmd", "slurmstepd", "slurmdbd")

# Directories munged needs, with their modes, owned by MUNGE_USER.
MUNGE_DIRECTORIES = (
    ("/etc/munge", 0o700),
    ("/run/munge", 0o755),
    ("/var/lib/munge", 0o711),
    ("/var/log/munge", 0o700),
)


def munge_works() -> bool:
    """True if ``munge -n | unmunge`` succeeds."""
    munge, unmunge = daemons.which("munge"), daemons.which("unmunge")
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


def start_munged(cluster: "LocalSlurmCluster", deadline: float) -> None:
    """
    Start ``munged`` as the user ``munge`` for ``cluster`` (creating its
    directories and key where missing) and wait until munge works.

    Parameters
    ----------
    cluster : LocalSlurmCluster
        Records it as its daemon ``munged``.
    deadline : float
        In :func:`time.monotonic` seconds.

    Raises
    ------
    LocalSlurmClusterError
        If there is no user ``munge``, munged exits, or munge still fails
        at the deadline.
    """
    try:
        uid = pwd.getpwnam(MUNGE_USER).pw_uid
        gid = grp.getgrnam(MUNGE_USER).gr_gid
    except KeyError:
        raise cluster.error(
            f"there is no user {MUNGE_USER!r}: is the munge package installed?"
        ) from None
    for path, mode in MUNGE_DIRECTORIES:
        if not os.path.isdir(path):
            os.makedirs(path, mode=mode)
            os.chown(path, uid, gid)
    if not os.path.exists(MUNGE_KEY_PATH):
        mungekey = daemons.which("mungekey")
        if mungekey is not None:
            subprocess.run(
                [mungekey, "--create", "--keyfile", MUNGE_KEY_PATH],
                check=True, capture_output=True,
            )
        else:  # munge < 0.5.14
            daemons.write_text(MUNGE_KEY_PATH, os.urandom(128).hex(), mode=0o400)
    os.chown(MUNGE_KEY_PATH, uid, gid)
    os.chmod(MUNGE_KEY_PATH, 0o400)
    log_path = cluster.path("log", "munged.out")
    record = cluster.spawn(
        "munged", [cluster.which_or_raise("munged"), "--foreground"], dict(os.environ),
        log_path, user=uid, group=gid, extra_groups=[], cwd="/",
    )
    cluster.wait_until(
        munge_works, deadline, "munge -n | unmunge fails", daemon=record,
        logs=lambda: daemons.tail_file(log_path) + daemons.tail_file("/var/log/munge/munged.log"),
        interval=0.05,
    )


def release_munged(cluster: "LocalSlurmCluster", munged: DaemonRecord, deadline: float) -> None:
    """
    Stop the munged that ``cluster`` started, unless another SLURM daemon on
    the machine still runs: then hand its record to the first other running
    local cluster that has none, so that its stop stops munged. Either way,
    ``cluster`` forgets it.

    Parameters
    ----------
    cluster : LocalSlurmCluster
        The cluster that stops.
    munged : DaemonRecord
        Its record of munged.
    deadline : float
        In :func:`time.monotonic` seconds, for stopping munged.
    """
    if munged.is_alive():
        others = processes.live_pids_named(SLURM_DAEMON_NAMES)
        if others:
            _hand_over(cluster, munged, others)
        else:
            cluster.terminate([munged], deadline)
    cluster.records.forget("munged")


def _hand_over(cluster: "LocalSlurmCluster", munged: DaemonRecord, others: list[int]) -> None:
    """Save ``munged`` among the records of the first other local cluster
    (a slurmctld among ``others`` run with ``-f <its slurm.conf>``) that
    runs and has no live munged recorded."""
    for pid in others:
        argv = processes.read_cmdline(pid)
        if processes.read_comm(pid) != "slurmctld" or "-f" not in argv[:-1]:
            continue
        conf = argv[argv.index("-f") + 1]
        other = DaemonRecords(os.path.join(os.path.dirname(conf), slurm_config.RECORD_DIRECTORY))
        if (
            conf != cluster.slurm_conf
            and other.load("slurmctld") is not None
            and other.load_alive("munged") is None
        ):
            other.save(munged)
            return
