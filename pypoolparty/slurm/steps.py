"""
The SLURM adapter inside an allocation: workers as ``srun`` job steps.

When the driver runs inside an allocation (an ``sbatch`` script or an
``salloc`` shell: ``SLURM_JOB_ID`` is set), its workers need no queue: each
is one job step of that allocation, started at once on CPUs the allocation
already holds. The adapter translates the core's three requests:

- submit: start each worker as ::

      srun --jobid=<allocation> --ntasks=1 --nodes=1 --exact --job-name=<name>
           [srun_options] <worker argv> --worker-id <ID>

  as a detached process of this host (:mod:`pypoolparty.processes`, by
  composition): in a session of its own, so that a Ctrl-C in the driver's
  terminal does not reach it (the core decides what is cancelled), with
  its output (srun's messages and the worker's) in ``<log_dir>/<ID>.log``.
  ``--exact`` gives a step only the CPUs it asks for (one), so that steps
  share the allocation's CPUs instead of each taking all of a node's.
  The id is the srun process's own: ``<host>-<boot>-<pid>-<start>``
  (:mod:`pypoolparty.processes.detached`), so any process on this host --
  the driver, a later driver that adopts the map, the reaper -- can tell
  whether it runs and signal it;
- states: ended once its srun process is gone (with srun's exit status
  where this adapter started it). A live srun is RUNNING once SLURM lists
  a running step of its pid (``scontrol show step <allocation>`` prints
  ``SrunHost:Pid``), PENDING while its step waits for free CPUs ("step
  creation temporarily disabled") or is not created yet. A worker seen
  running stays so while its srun lives: steady polls cost no SLURM call;
- cancel: ``scancel`` of the steps known for the workers, then SIGTERM to
  their srun processes (srun cancels its step itself, and a pending srun
  just leaves), SIGKILL after a grace period. The reaper gets the same
  two commands.

The srun processes are started by ``Popen``, not through
:meth:`~pypoolparty.core.scheduler.Scheduler.run`: they run as long as
their worker. Every SLURM command that returns (``scontrol``, ``scancel``)
goes through it.
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys
import typing

from .. import errors
from ..core.commands import RetryPolicy
from ..core.event_log import EventLog
from ..core.resources import Resources
from ..core.scheduler import Scheduler, SubmitRequest, WorkerState, WorkerStatus, checked_options
from ..processes import detached
from ..processes.adapter import ProcessScheduler
from . import parsing
from .adapter import MPI_SRUN_OPTIONS, SBATCH_OPTIONS, TRANSIENT_PATTERNS, format_options, long_name, with_shape

#: srun options the pool sets itself (the allocation, the step's shape, its
#: output), by their long names.
RESERVED_OPTIONS = ("jobid", "ntasks", "output", "error", "input")

#: sbatch's options that srun does not take: a step cannot ask for them.
SBATCH_ONLY = ("array", "batch", "export-file", "get-user-env", "ignore-pbs", "requeue", "no-requeue", "wrap", "parsable")

#: What SLURM says of an allocation without any step (yet).
NO_STEPS_PATTERNS = (r"job step \S* not found", r"no job steps", r"invalid job id")

HINTS = {
    "FAILED": "srun or the worker exited with an error; the worker's log above "
    "has srun's messages too (an srun option the allocation cannot satisfy, "
    "the allocation's end, a failed node).",
    "KILLED": "A signal ended their srun processes (someone's kill, or the "
    "end of the allocation).",
    "EXITED": "They ended while another driver watched them; their output is above.",
    "CANCELLED": "The pool cancelled them.",
}


def task_options(ntasks: int = 1) -> typing.List[str]:
    """srun's options for the shape of one worker's step: ``ntasks`` tasks.

    One task runs on one node; several may spread over the allocation's
    nodes. Either way the step's node count is set, so that the
    allocation's ``SLURM_NNODES`` (which srun reads) does not ask for more
    nodes than tasks.
    """
    if ntasks == 1:
        return ["--ntasks=1", "--nodes=1"]
    return ["--ntasks={:d}".format(ntasks), "--nodes=1-{:d}".format(ntasks)]


def check_options(options: typing.Mapping[str, typing.Any]) -> typing.Dict[str, typing.Any]:
    """Normalized copy of ``srun_options``; ValueError for options the pool sets."""
    return checked_options(options, RESERVED_OPTIONS, "srun", normalize=long_name)


def allocation_of(environ: typing.Mapping[str, str]) -> str:
    """The job id of the allocation this process runs in.

    Raises
    ------
    PoolError
        If ``SLURM_JOB_ID`` is not set: this process runs in no allocation.
    """
    job_id = environ.get("SLURM_JOB_ID", "").strip()
    if not job_id:
        raise errors.PoolError(
            "pypoolparty.slurm.allocation runs its workers as job steps of the "
            "SLURM allocation the driver runs in, but SLURM_JOB_ID is not set: "
            "this process runs in no allocation. Start the driver in an sbatch "
            "script or an salloc shell, or use pypoolparty.slurm.array.Pool, "
            "which submits jobs of its own."
        )
    return job_id


def allocation_cpus(environ: typing.Mapping[str, str], cpus_per_step: int = 1) -> int:
    """How many steps of ``cpus_per_step`` CPUs fit at once in the allocation.

    From ``SLURM_JOB_CPUS_PER_NODE`` (``"2(x3),1"``: 2 CPUs on each of 3
    nodes, 1 on a fourth), the CPUs of every node of the allocation, which
    sbatch and salloc both set. ``SLURM_CPUS_ON_NODE`` counts the driver's
    node only; ``SLURM_NTASKS`` is set only when ``--ntasks`` was asked for,
    and counts tasks of the user's shape, not the steps of one CPU that fit.
    0 if the variable is missing or unreadable.
    """
    total = 0
    for part in environ.get("SLURM_JOB_CPUS_PER_NODE", "").split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m:
            return 0
        total += (int(m.group(1)) // max(1, cpus_per_step)) * int(m.group(2) or 1)
    return total


@dataclasses.dataclass(frozen=True)
class Step:
    """One line of ``scontrol -o show step``: a step and the srun that made it."""

    step_id: str
    """``<job>.<step>``; ``<job>.TBD`` while pending (SLURM spells it "TDB")."""
    state: str
    nodes: str
    srun_host: str
    srun_pid: int


def parse_steps(stdout: str) -> typing.List[Step]:
    """The steps in ``scontrol -o show step <job>`` (one step a line); steps
    without an srun (the batch and extern steps) are left out."""
    out = []
    for line in stdout.splitlines():
        fields = dict(token.split("=", 1) for token in line.split() if "=" in token)
        host, _, pid = fields.get("SrunHost:Pid", "").rpartition(":")
        if not pid.isdigit() or int(pid) == 0 or "StepId" not in fields:
            continue
        out.append(
            Step(
                step_id=fields["StepId"],
                state=fields.get("State", ""),
                nodes=fields.get("NodeList", ""),
                srun_host=host,
                srun_pid=int(pid),
            )
        )
    return out


def short_host(name: str) -> str:
    return name.split(".", 1)[0]


@dataclasses.dataclass(frozen=True)
class StepCommands:
    """Paths of the SLURM commands."""

    srun: str = "srun"
    scontrol: str = "scontrol"
    scancel: str = "scancel"


class StepScheduler(Scheduler):
    """Workers as ``srun`` job steps of the allocation the driver runs in.

    Its :attr:`name` is ``slurm.steps@<allocation>``: only a driver in the
    same allocation adopts its maps (with a store).

    Parameters
    ----------
    srun_options : dict
        Options passed to every srun, e.g. ``{"cpus-per-task": 2, "mem": "2G"}``.
    commands : StepCommands
        Paths of the commands.
    policy : RetryPolicy
        Retry policy for every scontrol and scancel.
    environ : mapping or None
        Where the allocation is read from (default: this process's environment).

    Raises
    ------
    PoolError
        If this process runs in no allocation.
    """

    transient_patterns = TRANSIENT_PATTERNS

    def __init__(
        self,
        srun_options: typing.Optional[typing.Mapping[str, typing.Any]] = None,
        commands: StepCommands = StepCommands(),
        policy: RetryPolicy = RetryPolicy(),
        environ: typing.Optional[typing.Mapping[str, str]] = None,
    ):
        super().__init__(policy)
        self.environ = dict(os.environ if environ is None else environ)
        self.allocation = allocation_of(self.environ)
        self.name = "slurm.steps@" + self.allocation
        self.srun_options = check_options(srun_options or {})
        self.commands = commands
        self.processes = ProcessScheduler(python=sys.executable, policy=policy)
        #: The step each worker was last seen in.
        self._steps: typing.Dict[str, Step] = {}

    # ---------------------------------------------------------- resources
    def known_option(self, key: str) -> bool:
        key = long_name(key)
        return key in SBATCH_OPTIONS and key not in RESERVED_OPTIONS and key not in SBATCH_ONLY

    def with_resources(self, resources: Resources) -> "StepScheduler":
        """A copy whose steps have ``resources.cores`` tasks (the MPI ranks,
        which the step's srun starts), ``--cpus-per-task`` and
        ``--gpus-per-task`` CPUs and GPUs, and the options."""
        options = dict(self.srun_options)
        shaped = with_shape(resources, check_options(resources.option_dict()))
        shaped.pop("ntasks", None)  # the step's own, from task_options
        options.update(shaped)
        copy = type(self)(
            srun_options=options, commands=self.commands, policy=self.policy, environ=self.environ
        )
        copy.resources = resources
        return copy

    def mpi_launcher(self) -> typing.List[str]:
        """None: the step's own srun starts the ranks (see :meth:`submit`)."""
        return []

    # ------------------------------------------------------------- limits
    def cpus_per_step(self) -> int:
        """CPUs of one worker's step (``cpus-per-task`` in the srun options, else 1)."""
        for key in ("cpus-per-task", "c"):
            value = self.srun_options.get(key)
            if value not in (None, False, True):
                return max(1, int(value))
        return 1

    def default_processes(self, log: EventLog) -> int:
        """The steps of one worker that fit at once in the allocation's CPUs."""
        steps = allocation_cpus(self.environ, self.cpus_per_step())
        log.event("default_processes", cpus=steps, allocation=self.allocation)
        return max(1, steps)

    def time_limit(self) -> typing.Optional[float]:
        for key in ("time", "t"):
            if self.srun_options.get(key):
                return parsing.time_limit_seconds(self.srun_options[key])
        return None

    # ------------------------------------------------------------- submit
    def srun_argv(self, name: str, ntasks: int = 1) -> typing.List[str]:
        """srun's command line up to the worker's own."""
        options = {"job-name": name}
        options.update(self.srun_options)
        return (
            [self.commands.srun, "--jobid=" + self.allocation]
            + task_options(ntasks)
            + ["--exact"]
            + format_options(options)
        )

    def submit(self, request: SubmitRequest, log: EventLog) -> typing.List[str]:
        """Start the workers' srun processes now; return their ids."""
        mpi = list(MPI_SRUN_OPTIONS) if self.resources.is_mpi else []
        argv = (
            self.srun_argv(request.name, self.resources.cores)
            + mpi
            + list(self.resources.launcher_args)
            + self.worker_command(request)
        )
        steps = dataclasses.replace(request, worker_argv=argv)
        return self.processes.submit(steps, log)

    # ------------------------------------------------------------- states
    def states(
        self, worker_ids: typing.Collection[str], log: EventLog
    ) -> typing.Dict[str, WorkerStatus]:
        """Ended or alive from the srun processes; pending or running from
        SLURM's steps, asked only while some srun has no running step."""
        out = self.processes.states(worker_ids, log)
        alive = [w for w, s in out.items() if s.state is WorkerState.RUNNING]
        listed: typing.Dict[str, Step] = {}
        if any(w not in self._steps for w in alive):
            listed = self._listed_steps(alive, log)
        for wid in alive:
            step = self._steps.get(wid) or listed.get(wid)
            if step is None:
                out[wid] = WorkerStatus(WorkerState.PENDING, "STARTING", "no step created yet")
            elif step.state == "PENDING":
                out[wid] = WorkerStatus(
                    WorkerState.PENDING, "PENDING", "step waits for free CPUs of the allocation"
                )
            else:
                out[wid] = WorkerStatus(
                    WorkerState.RUNNING, "RUNNING", "step {:s} on {:s}".format(step.step_id, step.nodes)
                )
        return out

    def _listed_steps(self, worker_ids: typing.Collection[str], log: EventLog) -> typing.Dict[str, Step]:
        """The steps SLURM lists of these workers, by worker; those not
        pending are remembered (a step never goes back to pending)."""
        by_pid = {}
        for wid, pid in detached.parse_ids(worker_ids).items():
            by_pid[(short_host(pid.host), pid.pid)] = wid
        out = {}
        for step in self.list_steps(log):
            wid = by_pid.get((short_host(step.srun_host), step.srun_pid))
            if wid is not None:
                out[wid] = step
                if step.state != "PENDING":
                    self._steps[wid] = step
        return out

    def list_steps(self, log: EventLog) -> typing.List[Step]:
        """The allocation's steps now; none if SLURM has none or did not answer."""
        argv = [self.commands.scontrol, "-o", "show", "step", self.allocation]
        try:
            proc = self.run(argv, log, single_try=True)
        except errors.SchedulerCommandError as err:
            if not any(re.search(p, err.stderr.lower() + " " + str(err).lower()) for p in NO_STEPS_PATTERNS):
                log.warning("steps_unknown", error=str(err))
            return []
        return parse_steps(proc.stdout)

    # ------------------------------------------------------------- cancel
    def _known_steps(self, worker_ids: typing.Collection[str]) -> typing.List[str]:
        return sorted(self._steps[w].step_id for w in worker_ids if w in self._steps)

    def cancel(self, worker_ids: typing.Collection[str], log: EventLog) -> None:
        """scancel the workers' steps, then end their srun processes
        (pending ones have no step yet)."""
        unknown = [w for w in worker_ids if w not in self._steps]
        if unknown:
            self._listed_steps(unknown, log)
        steps = self._known_steps(worker_ids)
        if steps:
            try:
                self.run([self.commands.scancel] + steps, log, single_try=True)
            except errors.SchedulerCommandError as err:
                # A step that ended by itself is an "invalid job id" now.
                log.event("scancel_incomplete", steps=steps, error=str(err))
        self.processes.cancel(worker_ids, log)

    def cancel_commands(self, worker_ids: typing.Collection[str]) -> typing.List[typing.List[str]]:
        """The same as :meth:`cancel`, for the reaper: ``scancel`` of the
        known steps and the detached script's ``cancel`` of the srun processes."""
        out = []
        steps = self._known_steps(worker_ids)
        if steps:
            out.append([self.commands.scancel] + steps)
        return out + self.processes.cancel_commands(worker_ids)

    # ------------------------------------------------------------- causes
    def describe(self, worker_id: str, log: EventLog) -> str:
        """Which srun it was, and the step and nodes it ran in, if seen."""
        text = self.processes.describe(worker_id, log)
        if text:
            text = "srun " + text
        step = self._steps.get(worker_id)
        if step is not None:
            text += ", step {:s} on {:s}".format(step.step_id, step.nodes)
        return text

    def hint(self, scheduler_state: str) -> str:
        return HINTS.get(scheduler_state, "")
