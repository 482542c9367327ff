"""
The Grid Engine adapter: workers as array tasks (``qsub -t``), states from
``qstat -xml``, cancel with ``qdel``. It only translates; every call goes
through :meth:`pypoolparty.core.scheduler.Scheduler.run`.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import typing

from .. import errors
from ..core.commands import RetryPolicy
from ..core.event_log import EventLog
from ..core.resources import Resources
from ..core.scheduler import (
    Scheduler,
    SubmitRequest,
    WorkerStatus,
    array_sizes,
    cancel_targets,
    checked_options,
)
from . import parsing

#: qsub options the pool sets itself.
RESERVED_OPTIONS = ("t", "tc", "terse", "o", "e", "j", "S", "b")

#: qsub's options that a per-call ``resource_dict`` may set (``-l`` resources,
#: ``-pe`` parallel environment, queue, project, ...).
QSUB_OPTIONS = frozenset(
    """a ac A ar binding c ckpt clear dc dl hard h hold_jid hold_jid_ad js l m
    masterq M notify now p P pe q r R sc soft v w""".split()
)

#: What Grid Engine's clients say when the qmaster is busy or away for a while.
TRANSIENT_PATTERNS = (
    r"can't contact qmaster",
    r"unable to contact qmaster",
    r"failed receiving gdi request",
)

#: Grid Engine's default of max_aj_tasks (tasks per array).
DEFAULT_MAX_ARRAY_TASKS = 75000


@dataclasses.dataclass(frozen=True)
class SgeCommands:
    """Paths of the Grid Engine commands."""

    qsub: str = "qsub"
    qstat: str = "qstat"
    qdel: str = "qdel"
    qconf: str = "qconf"
    qacct: str = "qacct"


def format_options(options: typing.Mapping[str, typing.Any]) -> typing.List[str]:
    """qsub arguments from a dict of options.

    ``{"l": "h_vmem=2G", "q": "all.q", "pe": "smp 4", "notify": True}`` gives
    ``["-l", "h_vmem=2G", "-q", "all.q", "-pe", "smp", "4", "-notify"]``;
    a list value repeats the option; False and None leave it out.
    """
    out = []
    for key, value in options.items():
        key = str(key).lstrip("-")
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v is None or v is False:
                continue
            out.append("-" + key)
            if v is not True:
                out.extend(shlex.split(str(v)))
    return out


def check_options(options: typing.Mapping[str, typing.Any]) -> typing.Dict[str, typing.Any]:
    """Normalized copy of ``options``; ValueError for options the pool sets."""
    return checked_options(options, RESERVED_OPTIONS, "qsub")


class SgeArrayScheduler(Scheduler):
    """Workers as tasks of Grid Engine job arrays.

    Parameters
    ----------
    qsub_options : dict
        Options passed to qsub, e.g. ``{"l": "h_vmem=2G", "q": "all.q"}``.
    commands : SgeCommands
        Paths of the commands.
    policy : RetryPolicy
        Retry policy of every command.
    error_state_indicator : str
        The letter of qstat's error states.
    """

    name = "sun_grid_engine"
    transient_patterns = TRANSIENT_PATTERNS

    def __init__(
        self,
        qsub_options: typing.Optional[typing.Mapping[str, typing.Any]] = None,
        commands: SgeCommands = SgeCommands(),
        policy: RetryPolicy = RetryPolicy(),
        error_state_indicator: str = "E",
    ):
        super().__init__(policy)
        self.qsub_options = check_options(qsub_options or {})
        self.commands = commands
        self.error_state_indicator = error_state_indicator
        self._max_array_tasks: typing.Optional[int] = None
        self._array_sizes: typing.Dict[str, int] = {}

    # ---------------------------------------------------------- resources
    def known_option(self, key: str) -> bool:
        return key in QSUB_OPTIONS and key not in RESERVED_OPTIONS

    def with_resources(self, resources: Resources) -> "SgeArrayScheduler":
        """A copy whose jobs ask for ``resources``: ``cores * threads_per_core``
        slots of a parallel environment (``-pe NAME``, which the resources or
        the pool's ``qsub_options`` must name), and the options."""
        options = dict(self.qsub_options)
        options.update(check_options(resources.option_dict()))
        slots = resources.cores * resources.threads_per_core
        if resources.gpus_per_core:
            raise ValueError(
                "Grid Engine has no common way to ask for GPUs: ask for your "
                "site's GPU resource with resource_dict={'l': 'gpu=1'} instead of "
                "'gpus_per_core'"
            )
        if slots > 1:
            pe = str(options.get("pe") or "").split()
            if not pe:
                raise ValueError(
                    "a call on {:d} cores runs in a parallel environment on Grid "
                    "Engine: name it, e.g. resource_dict={{'pe': 'mpi', 'cores': "
                    "{:d}}} ('qconf -spl' lists them)".format(slots, resources.cores)
                )
            options["pe"] = "{:s} {:s}".format(pe[0], pe[1] if len(pe) > 1 else str(slots))
        copy = type(self)(
            qsub_options=options,
            commands=self.commands,
            policy=self.policy,
            error_state_indicator=self.error_state_indicator,
        )
        copy.resources = resources
        return copy

    # ------------------------------------------------------------- limits
    def time_limit(self) -> typing.Optional[float]:
        return parsing.time_limit_seconds(self.qsub_options.get("l"))

    def max_array_tasks(self, log: EventLog) -> int:
        """``max_aj_tasks`` of the cell (read once): tasks per array."""
        if self._max_array_tasks is None:
            value = DEFAULT_MAX_ARRAY_TASKS
            try:
                proc = self.run([self.commands.qconf, "-sconf"], log, single_try=True)
                configured = parsing.parse_global_config(proc.stdout).get("max_aj_tasks", "")
                if configured.isdigit() and int(configured) > 0:
                    value = int(configured)
            except errors.SchedulerCommandError:
                pass
            self._max_array_tasks = value
            log.event("max_array_size", value=value)
        return self._max_array_tasks

    def default_processes(self, log: EventLog) -> int:
        """The slots of the queue the jobs go to (``qstat -g c``)."""
        proc = self.run([self.commands.qstat, "-g", "c"], log)
        queue = self.qsub_options.get("q")
        slots = parsing.parse_qstat_gc_slots(proc.stdout, str(queue) if queue else None)
        log.event("default_processes", slots=slots, queue=queue)
        return max(1, slots)

    # ------------------------------------------------------------- submit
    def submit(self, request: SubmitRequest, log: EventLog) -> typing.List[str]:
        """One qsub per array of at most max_aj_tasks tasks."""
        script = "exec {:s} --worker-id \"${{JOB_ID}}.${{SGE_TASK_ID}}\"\n".format(
            " ".join(shlex.quote(a) for a in self.worker_command(request))
        )
        ids: typing.List[str] = []
        for num in array_sizes(request.num_workers, self.max_array_tasks(log)):
            argv = (
                [self.commands.qsub, "-terse", "-V", "-S", "/bin/sh", "-j", "y"]
                + ["-t", "1-{:d}".format(num), "-tc", str(min(request.max_running, num))]
                + ["-o", os.path.join(request.log_dir, "$JOB_ID.$TASK_ID.log")]
                + ["-N", request.name, "-wd", request.cwd]
                + format_options(self.qsub_options)
            )
            proc = self.run(argv, log, env=request.env, input=script)
            job_id = parsing.parse_qsub_terse(proc.stdout)
            self._array_sizes[job_id] = num
            ids.extend("{:s}.{:d}".format(job_id, i) for i in range(1, num + 1))
        return ids

    # ------------------------------------------------------------- states
    def states(
        self, worker_ids: typing.Collection[str], log: EventLog
    ) -> typing.Dict[str, WorkerStatus]:
        """One ``qstat -xml`` (the user's own jobs); finished ones are absent."""
        proc = self.run([self.commands.qstat, "-xml"], log)
        wanted = set(worker_ids)
        return {
            w: s
            for w, s in parsing.parse_qstat_xml(proc.stdout, self.error_state_indicator).items()
            if w in wanted
        }

    # ------------------------------------------------------------- causes
    def describe(self, worker_id: str, log: EventLog) -> str:
        """The error reason (``qstat -j``) or the accounting (``qacct -j``)."""
        job, _, task = worker_id.partition(".")
        try:
            proc = self.run([self.commands.qstat, "-j", job], log, single_try=True)
            reason = parsing.describe_qstat_j(proc.stdout)
            if reason:
                return reason
        except errors.SchedulerCommandError:
            pass
        argv = [self.commands.qacct, "-j", job] + (["-t", task] if task else [])
        try:
            proc = self.run(argv, log, single_try=True)
            return parsing.describe_qacct(proc.stdout)
        except errors.SchedulerCommandError:
            return ""

    def hint(self, scheduler_state: str) -> str:
        if self.error_state_indicator and self.error_state_indicator in scheduler_state:
            return (
                "Grid Engine put them in an error state; the reason is above "
                "(from 'qstat -j'): often a work dir or log path the nodes "
                "cannot reach."
            )
        return ""

    # ------------------------------------------------------------- cancel
    def cancel(self, worker_ids: typing.Collection[str], log: EventLog) -> None:
        """qdel; tasks that ended meanwhile are fine.

        qdel exits 1 when any id no longer exists (``denied: job "7" does
        not exist``), although it deleted the others; any other complaint
        is an error.
        """
        for argv in self.cancel_commands(worker_ids):
            proc = self.run(argv, log, ok_returncodes=(0, 1))
            if proc.returncode == 0:
                continue
            complaints = [
                line
                for line in (proc.stdout + proc.stderr).splitlines()
                if "denied" in line.lower() or "error" in line.lower()
            ]
            if not complaints or any("does not exist" not in c for c in complaints):
                raise errors.SchedulerCommandError(argv, proc.returncode, proc.stdout + proc.stderr)

    def cancel_commands(self, worker_ids: typing.Collection[str]) -> typing.List[typing.List[str]]:
        """One qdel; whole arrays by their job id."""
        targets = cancel_targets(worker_ids, ".", self._array_sizes)
        return [[self.commands.qdel] + targets] if targets else []
