"""
Reading what Grid Engine's commands print. Pure functions, tested on
captured output.
"""
from __future__ import annotations

import typing
import xml.etree.ElementTree as ElementTree

from ..core.scheduler import WorkerState, WorkerStatus, expand_index_ranges


def worker_state(state: str, error_indicator: str = "E") -> WorkerState:
    """The core's state for a ``qstat`` state code (``r``, ``qw``, ``Eqw``, ...).

    Error (``E``) and hold (``h``) states do not clear by themselves: HELD.
    Pending is ``qw`` (and ``Rq``); everything else still runs or is being
    deleted.
    """
    if error_indicator and error_indicator in state:
        return WorkerState.HELD
    if "h" in state:
        return WorkerState.HELD
    if "q" in state:
        return WorkerState.PENDING
    return WorkerState.RUNNING


def expand_tasks(tasks: str) -> typing.List[int]:
    """``"3-5:1"`` -> ``[3, 4, 5]``; ``"1,4-6:2"`` -> ``[1, 4, 6]``; ``"7"`` -> ``[7]``."""
    return expand_index_ranges(tasks)


def parse_qstat_xml(text: str, error_indicator: str = "E") -> typing.Dict[str, WorkerStatus]:
    """Statuses from ``qstat -xml``, by worker id ``"<job>.<task>"``.

    A job without tasks (not an array) is reported under ``"<job>"``.
    """
    out: typing.Dict[str, WorkerStatus] = {}
    if not text.strip():
        return out
    root = ElementTree.fromstring(text)
    for job in root.iter("job_list"):
        number = (job.findtext("JB_job_number") or "").strip()
        state = (job.findtext("state") or "").strip()
        if not number:
            continue
        status = WorkerStatus(worker_state(state, error_indicator), state, "")
        tasks = (job.findtext("tasks") or "").strip()
        if not tasks:
            out[number] = status
            continue
        for task in expand_tasks(tasks):
            out["{:s}.{:d}".format(number, task)] = status
    return out


def parse_qsub_terse(stdout: str) -> str:
    """The job id from ``qsub -terse`` (``"12"`` or ``"12.1-3:1"`` for arrays)."""
    for line in stdout.splitlines():
        line = line.strip()
        if line:
            job_id = line.split(".", 1)[0]
            if job_id.isdigit():
                return job_id
    raise ValueError("qsub -terse printed no job id: {!r}".format(stdout))


def parse_global_config(stdout: str) -> typing.Dict[str, str]:
    """``qconf -sconf`` as a dict of its ``name value`` lines."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and not line.startswith("#"):
            out[parts[0]] = parts[1].strip()
    return out


def parse_qstat_gc_slots(stdout: str, queue: typing.Optional[str] = None) -> int:
    """Total slots from ``qstat -g c`` (of one cluster queue if given)."""
    lines = stdout.splitlines()
    header = None
    total = 0
    for line in lines:
        cols = line.split()
        if not cols or set(line.strip()) <= {"-"}:
            continue
        if header is None:
            if "TOTAL" in cols:
                header = cols
            continue
        # "CLUSTER QUEUE" is one column in the header but one word in rows.
        index = header.index("TOTAL") - 1
        if len(cols) > index and cols[index].isdigit():
            if queue is None or cols[0] == queue:
                total += int(cols[index])
    return total


def describe_qstat_j(stdout: str) -> str:
    """The error reason(s) from ``qstat -j ID``, on one line."""
    reasons = []
    for line in stdout.splitlines():
        if line.strip().lower().startswith("error reason"):
            reasons.append(line.split(":", 1)[1].strip() if ":" in line else line.strip())
    return "; ".join(reasons)


def describe_qacct(stdout: str) -> str:
    """``failed``, ``exit_status``, host and memory from ``qacct -j ID``."""
    fields = {}
    for line in stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            fields.setdefault(parts[0], parts[1].strip())
    keep = [(k, fields[k]) for k in ("failed", "exit_status", "hostname", "maxvmem") if k in fields]
    return " ".join("{:s}={:s}".format(k, "_".join(v.split())) for k, v in keep)


def time_limit_seconds(resources: typing.Any) -> typing.Optional[float]:
    """Seconds of ``h_rt`` (or ``s_rt``) in qsub's ``-l`` values, or None.

    ``resources`` is the value of the ``l`` option: ``"h_rt=1:00:00,h_vmem=2G"``
    or a list of such. Grid Engine reads ``H:M:S`` or plain seconds.
    """
    values = resources if isinstance(resources, (list, tuple)) else [resources]
    limits = []
    for value in values:
        if not isinstance(value, str):
            continue
        for item in value.replace(" ", ",").split(","):
            key, _, text = item.partition("=")
            if key.strip() not in ("h_rt", "s_rt"):
                continue
            parts = text.strip().split(":")
            if not parts or not all(p.isdigit() for p in parts) or len(parts) > 3:
                continue
            numbers = [0] * (3 - len(parts)) + [int(p) for p in parts]
            limits.append(float((numbers[0] * 60 + numbers[1]) * 60 + numbers[2]))
    return min(limits) if limits else None
