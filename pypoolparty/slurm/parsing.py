"""
Reading what SLURM's commands print. Pure functions, tested on captured output.
"""
from __future__ import annotations

import re
import typing

from ..core.scheduler import WorkerState, WorkerStatus, expand_index_ranges

#: The squeue --format used by the adapter: id, long state, reason.
SQUEUE_FORMAT = "%i|%T|%r"

_RUNNING = {
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "STOPPED",
    "SIGNALING",
    "STAGE_OUT",
    "RESIZING",
}
_PENDING = {"PENDING", "REQUEUED", "REQUEUE_FED"}
_HELD = {"REQUEUE_HOLD", "SPECIAL_EXIT", "RESV_DEL_HOLD"}
_ENDED = {
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "PREEMPTED",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
    "REVOKED",
}
# Pending reasons that will not clear without someone acting.
_HELD_REASONS = ("held", "launch failed", "launchfailed")


def worker_state(slurm_state: str, reason: str = "") -> WorkerState:
    """The core's state for a SLURM job state and reason.

    Unknown states count as running, so that a job is never declared lost
    because of a word this code does not know.
    """
    s = slurm_state.strip().upper()
    if s in _ENDED:
        return WorkerState.ENDED
    if s in _HELD:
        return WorkerState.HELD
    if s in _PENDING:
        r = reason.lower()
        if any(h in r for h in _HELD_REASONS):
            return WorkerState.HELD
        return WorkerState.PENDING
    return WorkerState.RUNNING


def parse_squeue(stdout: str) -> typing.Dict[str, WorkerStatus]:
    """Parse ``squeue --noheader --array --format='%i|%T|%r'``.

    Returns a status per id as squeue prints it (``"4711_3"`` for an array
    task, ``"4712"`` for a plain job). Lines that still stand for several
    pending array tasks (``"4711_[4-9%2]"``) are expanded.
    """
    out: typing.Dict[str, WorkerStatus] = {}
    for line in stdout.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = line.split("|", 2)
        if len(parts) < 2:
            continue
        job_id, state = parts[0].strip(), parts[1].strip()
        reason = parts[2].strip() if len(parts) > 2 else ""
        if reason in ("None", "(null)"):
            reason = ""
        status = WorkerStatus(worker_state(state, reason), state, reason)
        for wid in expand_job_id(job_id):
            out[wid] = status
    return out


def expand_job_id(job_id: str) -> typing.List[str]:
    """``"7_[1-3,5%2]"`` -> ``["7_1", "7_2", "7_3", "7_5"]``; others as they are."""
    m = re.fullmatch(r"(\d+)_\[([^\]]*)\]", job_id)
    if not m:
        return [job_id]
    base, spec = m.group(1), m.group(2).split("%")[0]
    return ["{}_{}".format(base, i) for i in expand_index_ranges(spec)]


def parse_sbatch_parsable(stdout: str) -> str:
    """The job id from ``sbatch --parsable`` (``"4711"`` or ``"4711;cluster"``)."""
    for line in stdout.splitlines():
        line = line.strip()
        if line:
            job_id = line.split(";", 1)[0].strip()
            if job_id.isdigit():
                return job_id
    raise ValueError("sbatch --parsable printed no job id: {!r}".format(stdout))


def parse_help_options(stdout: str) -> typing.List[str]:
    """The long option names (without dashes) in a client's ``--help``."""
    return re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", stdout)


def parse_config(stdout: str) -> typing.Dict[str, str]:
    """``scontrol show config`` as a dict of its ``Key = Value`` lines."""
    out = {}
    for line in stdout.splitlines():
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if key and " " not in key:
            out[key] = value.strip()
    return out


def parse_sinfo_cpus(stdout: str) -> int:
    """Total CPUs from ``sinfo --noheader -o %C`` (lines ``A/I/O/T``)."""
    total = 0
    for line in stdout.split():
        parts = line.strip().split("/")
        if len(parts) == 4 and parts[3].isdigit():
            total += int(parts[3])
    return total


def describe_job(stdout: str) -> str:
    """A short line from ``scontrol show job ID``: state, reason, exit code, node."""
    fields = {}
    for token in stdout.split():
        if "=" in token:
            key, value = token.split("=", 1)
            fields.setdefault(key, value)
    parts = []
    for key in ("JobState", "Reason", "ExitCode", "NodeList", "RunTime", "TimeLimit"):
        value = fields.get(key)
        if value and value not in ("None", "(null)"):
            parts.append("{:s}={:s}".format(key, value))
    return " ".join(parts)


def describe_sacct(stdout: str) -> str:
    """A short line from ``sacct --parsable2 --format=State,ExitCode,NodeList,Elapsed``."""
    for line in stdout.splitlines():
        cols = line.strip().split("|")
        if len(cols) >= 4 and cols[0]:
            return "State={:s} ExitCode={:s} NodeList={:s} Elapsed={:s}".format(*cols[:4])
    return ""


def time_limit_seconds(value: typing.Any) -> typing.Optional[float]:
    """Seconds of an sbatch ``--time``, or None if unlimited or unreadable.

    SLURM reads ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M`` and ``D-H:M:S``.
    """
    text = str(value).strip()
    if text.upper() in ("", "UNLIMITED", "INFINITE", "-1"):
        return None
    days = 0
    if "-" in text:
        day_text, text = text.split("-", 1)
        if not day_text.isdigit():
            return None
        days = int(day_text)
    parts = text.split(":")
    if not all(p.isdigit() for p in parts) or len(parts) > 3:
        return None
    numbers = [int(p) for p in parts]
    if days:
        hours, minutes, seconds = (numbers + [0, 0])[:3]
    elif len(numbers) == 1:
        hours, minutes, seconds = 0, numbers[0], 0
    elif len(numbers) == 2:
        hours, minutes, seconds = 0, numbers[0], numbers[1]
    else:
        hours, minutes, seconds = numbers
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)
