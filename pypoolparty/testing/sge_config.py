"""
The local Grid Engine cell: its files and its configuration.

The packages create the cell when installed after
:func:`debconf_selections`. Before its qmaster starts, the cell's files
name this host (:func:`prepare_cell`); once it answers, :func:`configure`
brings the cell's configuration to what
:meth:`~pypoolparty.testing.local_sge.LocalSgeCluster.start` promises,
changing only what differs, through ``qconf``'s ``key value`` texts.
"""
from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from typing import TYPE_CHECKING, Sequence

from . import daemons

if TYPE_CHECKING:
    from .local_sge import LocalSgeCluster

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

# A parallel environment for calls on several cores (``-pe mpi N``): the
# slots of one job on as few hosts as they fit, ``mpirun`` in the job starts
# its ranks (``qrsh -inherit`` on other hosts, hence control_slaves).
PARALLEL_ENVIRONMENT = "mpi"
PE_TEMPLATE = (
    ("pe_name", "{pe}"),
    ("slots", "9999"),
    ("user_lists", "NONE"),
    ("xuser_lists", "NONE"),
    ("start_proc_args", "NONE"),
    ("stop_proc_args", "NONE"),
    ("allocation_rule", "$fill_up"),
    ("control_slaves", "TRUE"),
    ("job_is_first_task", "FALSE"),
    ("urgency_slots", "min"),
    ("accounting_summary", "FALSE"),
    ("qsort_args", "NONE"),
)

# What `qconf -aq` offers in Grid Engine 8.1.9, with pe_list our own PE (the
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
    ("pe_list", "{pe}"),
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


# Grid Engine's own host name resolver.
GETHOSTNAME = "/usr/lib/gridengine/gethostname"


# ----------------------------------------------------------------------
# creating the cell


def debconf_selections(cluster: "LocalSgeCluster") -> str:
    """
    Lines for ``debconf-set-selections`` that let the packages create the
    cell ``cluster.sge_cell`` with this host as its master. The packages
    start no daemon on a machine without systemd or init scripts allowed to
    run.
    """
    return "".join(
        f"gridengine-common {key} {kind} {value}\n"
        for key, kind, value in (
            ("shared/gridengineconfig", "boolean", "true"),
            ("shared/gridenginecell", "string", cluster.sge_cell),
            ("shared/gridenginemaster", "string", socket.gethostname()),
        )
    )


def check_cell(cluster: "LocalSgeCluster") -> None:
    """
    Raise if the cell's ``bootstrap`` file is missing.

    Raises
    ------
    LocalSgeClusterError
        Saying how to let the packages create the cell.
    """
    if not os.path.isfile(os.path.join(cluster.common_dir, "bootstrap")):
        raise cluster.error(
            f"{cluster.common_dir}/bootstrap is missing: the packages did not "
            "create the cell (was gridengine-common configured before without "
            "shared/gridengineconfig=true? Then run: dpkg-reconfigure gridengine-common)"
        )


# ----------------------------------------------------------------------
# host names


def resolve_hostname(cluster: "LocalSgeCluster") -> str:
    """
    This host's name as Grid Engine resolves it (``gethostname -aname``,
    which applies the cell's ``host_aliases``).

    Returns
    -------
    str
        ``""`` if the tool or the cell is missing or it fails.
    """
    if not (os.access(GETHOSTNAME, os.X_OK) and os.path.isdir(cluster.common_dir)):
        return ""
    try:
        proc = subprocess.run(
            [GETHOSTNAME, "-aname"], env=cluster.env(), capture_output=True,
            text=True, timeout=10, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""



def prepare_cell(cluster: "LocalSgeCluster") -> None:
    """
    Make the cell's ``host_aliases`` name this host's reverse-DNS names
    (e.g. ``localhost``) as aliases of its hostname, without which every
    client is refused, and ``act_qmaster`` name this host.

    Raises
    ------
    LocalSgeClusterError
        If the cell's ``common`` directory is missing.
    """
    if not os.path.isdir(cluster.common_dir):
        raise cluster.error(
            f"{cluster.common_dir} is missing: the Grid Engine cell was not created"
        )
    host = socket.gethostname()
    aliases = _reverse_names(host) - {host}
    if aliases:
        _ensure_host_aliases(cluster.host_aliases_path, host, aliases)
    act_qmaster = os.path.join(cluster.common_dir, "act_qmaster")
    try:
        with open(act_qmaster) as f:
            current = f.read().strip()
    except OSError:
        current = ""
    if current != host:
        _write_like_directory(act_qmaster, [host])


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
    """Make ``host_aliases`` name ``aliases`` as aliases of ``host`` (a line
    ``host alias...``), keeping whatever else it says."""
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
    _write_like_directory(path, lines)


def _write_like_directory(path: str, lines: list[str]) -> None:
    """Write a file of the cell, owned like its directory (``sgeadmin``)."""
    daemons.write_text(path, "\n".join(lines) + "\n", mode=0o644)
    try:
        st = os.stat(os.path.dirname(path))
        os.chown(path, st.st_uid, st.st_gid)
    except OSError:
        pass


# ----------------------------------------------------------------------
# once the qmaster answers


def configure(cluster: "LocalSgeCluster") -> None:
    """
    Bring the cell to what ``cluster.start()`` promises, changing only what
    differs: this host as admin, submit and execution host;
    :data:`GLOBAL_SETTINGS`; :data:`SCHEDULER_SETTINGS`; the host group
    ``@allhosts`` holding this host; the parallel environment
    :data:`PARALLEL_ENVIRONMENT`; the queue ``cluster.queue`` on it with
    ``cluster.slots`` slots, ``load_thresholds NONE`` and that environment.
    """
    host = cluster.hostname
    for show, add in (("-sh", "-ah"), ("-ss", "-as")):
        # "no submit host defined" exits 1
        if host not in cluster.run(["qconf", show], check=False).stdout.split():
            cluster.run(["qconf", add, host])
    _modify(cluster, ["-sconf", "global"], "-Mconf", "global", GLOBAL_SETTINGS)
    _modify(cluster, ["-ssconf"], "-Msconf", "sched_config", SCHEDULER_SETTINGS)

    if cluster.run(["qconf", "-se", host], check=False).returncode != 0:
        _qconf_from_file(cluster, "-Ae", "exechost", _render(EXEC_HOST_TEMPLATE, host=host))

    hgrp = cluster.run(["qconf", "-shgrp", HOST_GROUP], check=False)
    if hgrp.returncode != 0:
        text = _render((("group_name", HOST_GROUP), ("hostlist", host)))
        _qconf_from_file(cluster, "-Ahgrp", "hostgroup", text)
    elif host not in attribute(hgrp.stdout, "hostlist").split():
        cluster.run(["qconf", "-aattr", "hostgroup", "hostlist", host, HOST_GROUP])

    if cluster.run(["qconf", "-sp", PARALLEL_ENVIRONMENT], check=False).returncode != 0:
        _qconf_from_file(cluster, "-Ap", "pe", _render(PE_TEMPLATE, pe=PARALLEL_ENVIRONMENT))

    queue = cluster.run(["qconf", "-sq", cluster.queue], check=False)
    if queue.returncode != 0:
        text = _render(
            QUEUE_TEMPLATE, queue=cluster.queue, host_group=HOST_GROUP, slots=str(cluster.slots),
            pe=PARALLEL_ENVIRONMENT,
        )
        _qconf_from_file(cluster, "-Aq", "queue", text)
        return
    hostlist = attribute(queue.stdout, "hostlist").split()
    if HOST_GROUP not in hostlist and host not in hostlist:
        cluster.run(["qconf", "-aattr", "queue", "hostlist", HOST_GROUP, cluster.queue])
    for key, value in (("slots", str(cluster.slots)), ("load_thresholds", "NONE")):
        if attribute(queue.stdout, key) != value:
            cluster.run(["qconf", "-mattr", "queue", key, value, cluster.queue])
    if PARALLEL_ENVIRONMENT not in attribute(queue.stdout, "pe_list").split():
        cluster.run(["qconf", "-aattr", "queue", "pe_list", PARALLEL_ENVIRONMENT, cluster.queue])


def _modify(
    cluster: "LocalSgeCluster", show: list[str], flag: str, name: str, settings: dict[str, str]
) -> None:
    """Apply ``settings`` to what ``qconf <show>`` prints, with ``qconf <flag>``
    if anything changes."""
    new_text, changed = _set_attributes(cluster.run(["qconf", *show]).stdout, settings)
    if changed:
        _qconf_from_file(cluster, flag, name, new_text)


def _qconf_from_file(cluster: "LocalSgeCluster", flag: str, name: str, text: str) -> None:
    """``qconf <flag> <file>`` with ``text`` in a temporary file called
    ``name`` (``-Mconf`` takes the configuration's name from it)."""
    with tempfile.TemporaryDirectory(prefix="pypoolparty-sge-") as tmp:
        path = os.path.join(tmp, name)
        daemons.write_text(path, text, mode=0o644)
        cluster.run(["qconf", flag, path])


def _render(template: Sequence[tuple[str, str]], **values: str) -> str:
    """A ``key value`` text for ``qconf -A...`` from a template."""
    return "".join(f"{key:<22}{value.format(**values)}\n" for key, value in template)


# ----------------------------------------------------------------------
# qconf's key value texts


def attribute(text: str, key: str) -> str:
    """
    The value of ``key`` in a text ``qconf`` printed.

    Parameters
    ----------
    text : str
        Lines ``key value``; a line ending in a backslash goes on on the next.
    key : str
        The key.

    Returns
    -------
    str
        Its value; ``""`` if there is none.
    """
    for line in _logical_lines(text):
        found, value = _key_value(line)
        if found == key:
            return value
    return ""


def _key_value(line: str) -> tuple[str, str]:
    parts = line.split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


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
    """qconf's ``key value`` text with ``settings`` applied; and whether it changed."""
    lines = _logical_lines(text)
    seen, changed = set(), False
    for i, line in enumerate(lines):
        key, value = _key_value(line)
        if key in settings:
            seen.add(key)
            if value != settings[key]:
                lines[i] = f"{key:<33} {settings[key]}"
                changed = True
    for key, value in settings.items():
        if key not in seen:
            lines.append(f"{key:<33} {value}")
            changed = True
    return "\n".join(lines) + "\n", changed
