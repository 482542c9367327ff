"""
The SLURM adapter: submit workers as job arrays, read their states, cancel.

It only translates the core's three requests into ``sbatch``, ``squeue``
and ``scancel`` calls (plus ``scontrol show config`` for MaxArraySize and
``sinfo`` for a default number of processes), each through
:meth:`pypoolparty.core.scheduler.Scheduler.run`.
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

#: sbatch options the pool sets itself.
RESERVED_OPTIONS = ("array", "wrap", "parsable", "output", "error")

#: sbatch's options (SLURM 22.05) that a per-call ``resource_dict`` may set,
#: by their long name; a name not here is looked up in ``sbatch --help``
#: once (newer SLURMs have more).
SBATCH_OPTIONS = frozenset(
    """account acctg-freq batch bb bbf begin chdir cluster-constraint clusters
    comment constraint container contiguous core-spec cores-per-socket cpu-freq
    cpus-per-gpu cpus-per-task deadline delay-boot dependency distribution
    exclude exclusive export export-file extra-node-info get-user-env gid
    gpu-bind gpu-freq gpus gpus-per-node gpus-per-socket gpus-per-task gres
    gres-flags hint hold ignore-pbs licenses mail-type mail-user mcs-label mem
    mem-bind mem-per-cpu mem-per-gpu mincpus network nice no-kill no-requeue
    nodefile nodelist nodes ntasks ntasks-per-core ntasks-per-gpu
    ntasks-per-node ntasks-per-socket open-mode overcommit oversubscribe
    partition power prefer priority profile propagate qos reboot requeue
    reservation signal sockets-per-node spread-job switches thread-spec
    threads-per-core time time-min tmp tres-per-task uid use-min-nodes wckey""".split()
)

#: The long names of sbatch's (and srun's) one-letter options.
SHORT_OPTIONS = {
    "A": "account", "C": "constraint", "D": "chdir", "F": "nodefile", "G": "gpus",
    "H": "hold", "J": "job-name", "L": "licenses", "M": "clusters", "N": "nodes",
    "O": "overcommit", "S": "core-spec", "a": "array", "b": "begin",
    "c": "cpus-per-task", "d": "dependency", "e": "error", "i": "input", "k": "no-kill",
    "m": "distribution", "n": "ntasks", "o": "output", "p": "partition", "q": "qos",
    "s": "oversubscribe", "t": "time", "w": "nodelist", "x": "exclude",
}


def long_name(key: str) -> str:
    """An option's long name: ``"c"`` and ``"cpus_per_task"`` are
    ``"cpus-per-task"``, so that one option given two ways is one key."""
    key = str(key).lstrip("-")
    return SHORT_OPTIONS.get(key, key.replace("_", "-"))

#: srun's options for the ranks of a call on several MPI ranks: a rank that
#: dies takes the others with it (rank 0 would wait for its part forever).
MPI_SRUN_OPTIONS = ("--kill-on-bad-exit=1",)

#: What SLURM's clients say when the controller is busy or away for a while.
TRANSIENT_PATTERNS = (
    r"unable to contact slurm controller",
    r"slurm_receive_msg",
    r"zero bytes were transmitted",
    r"controller.*(not responding|busy)",
)


@dataclasses.dataclass(frozen=True)
class SlurmCommands:
    """Paths of the SLURM commands."""

    sbatch: str = "sbatch"
    squeue: str = "squeue"
    scancel: str = "scancel"
    scontrol: str = "scontrol"
    sinfo: str = "sinfo"
    sacct: str = "sacct"
    srun: str = "srun"


def format_options(options: typing.Mapping[str, typing.Any]) -> typing.List[str]:
    """sbatch arguments from a dict of options.

    ``{"time": "0:10:00", "exclusive": True, "cpus_per_task": 4, "p": "debug"}``
    gives ``["--time=0:10:00", "--exclusive", "--cpus-per-task=4", "-p", "debug"]``.
    False and None leave an option out; a list's items are joined by commas
    (``{"gres": ["gpu:1", "tmp:10G"]}`` gives ``--gres=gpu:1,tmp:10G``).
    """
    out = []
    for key, value in options.items():
        key = str(key).lstrip("-")
        if value is None or value is False:
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        if len(key) == 1:
            out.append("-" + key)
            if value is not True:
                out.append(str(value))
            continue
        key = key.replace("_", "-")
        if value is True:
            out.append("--" + key)
        else:
            out.append("--{:s}={:s}".format(key, str(value)))
    return out


def check_options(options: typing.Mapping[str, typing.Any]) -> typing.Dict[str, typing.Any]:
    """Normalized copy of ``options``; ValueError for options the pool sets."""
    return checked_options(options, RESERVED_OPTIONS, "sbatch", normalize=long_name)


def with_shape(resources: Resources, options: typing.Mapping[str, typing.Any]) -> typing.Dict[str, typing.Any]:
    """``options`` (long names) and what ``cores``, ``threads_per_core`` and
    ``gpus_per_core`` ask of SLURM: ``--ntasks``, ``--cpus-per-task``,
    ``--gpus-per-task``.

    Raises
    ------
    ValueError
        If ``options`` set one of these too: one resource given two ways.
    """
    shape = {}
    if resources.is_mpi:
        shape["ntasks"] = (resources.cores, "cores")
    if resources.threads_per_core > 1:
        shape["cpus-per-task"] = (resources.threads_per_core, "threads_per_core")
    if resources.gpus_per_core > 0:
        shape["gpus-per-task"] = (resources.gpus_per_core, "gpus_per_core")
    out = dict(options)
    for option, (value, key) in shape.items():
        if option in out:
            raise ValueError(
                "resource_dict gives {!r} and {!r}, which is the same resource; "
                "give one of them".format(key, option)
            )
        out[option] = value
    return out


def partition_of(options: typing.Mapping[str, typing.Any]) -> typing.Optional[str]:
    for key in ("partition", "p"):
        if options.get(key):
            return str(options[key])
    return None


class SlurmScheduler(Scheduler):
    """What both SLURM adapters share: options, states, causes, cancel.

    Parameters
    ----------
    sbatch_options : dict
        Long options passed to sbatch, e.g. ``{"time": "01:00:00"}``.
    commands : SlurmCommands
        Paths of the commands.
    policy : RetryPolicy
        Retry policy for every command.
    """

    transient_patterns = TRANSIENT_PATTERNS

    def __init__(
        self,
        sbatch_options: typing.Optional[typing.Mapping[str, typing.Any]] = None,
        commands: SlurmCommands = SlurmCommands(),
        policy: RetryPolicy = RetryPolicy(),
    ):
        super().__init__(policy)
        self.sbatch_options = check_options(sbatch_options or {})
        self.commands = commands
        self._max_array_size: typing.Optional[int] = None
        self._array_sizes: typing.Dict[str, int] = {}
        self._accounting: typing.Optional[bool] = None
        self._help_options: typing.Optional[typing.FrozenSet[str]] = None

    # ---------------------------------------------------------- resources
    def known_option(self, key: str) -> bool:
        key = long_name(key)
        if key in RESERVED_OPTIONS:
            return False
        if key in SBATCH_OPTIONS:
            return True
        if self._help_options is None:
            try:
                proc = self.run([self.commands.sbatch, "--help"], EventLog.buffer(), single_try=True)
                self._help_options = frozenset(parsing.parse_help_options(proc.stdout))
            except errors.SchedulerCommandError:
                self._help_options = frozenset()
        return key in self._help_options

    def with_resources(self, resources: Resources) -> "SlurmScheduler":
        """A copy whose jobs ask for ``resources``: ``--ntasks`` ranks of
        ``--cpus-per-task`` CPUs and ``--gpus-per-task`` GPUs, and the options."""
        options = dict(self.sbatch_options)
        options.update(with_shape(resources, check_options(resources.option_dict())))
        copy = type(self)(sbatch_options=options, commands=self.commands, policy=self.policy)
        copy.resources = resources
        return copy

    def mpi_launcher(self) -> typing.List[str]:
        """``srun`` inside the job starts its ``--ntasks`` ranks."""
        argv = [self.commands.srun, "--ntasks={:d}".format(self.resources.cores), *MPI_SRUN_OPTIONS]
        cpus = self.sbatch_options.get("cpus-per-task")
        if cpus not in (None, False, True):
            # srun does not take it from the job's environment (SLURM >= 22.05)
            argv.append("--cpus-per-task={}".format(cpus))
        return argv + list(self.resources.launcher_args)

    # ------------------------------------------------------------- limits
    def time_limit(self) -> typing.Optional[float]:
        for key in ("time", "t"):
            if self.sbatch_options.get(key):
                return parsing.time_limit_seconds(self.sbatch_options[key])
        return None

    def max_array_size(self, log: EventLog) -> int:
        """MaxArraySize of the cluster (read once): tasks per array."""
        if self._max_array_size is None:
            proc = self.run([self.commands.scontrol, "show", "config"], log)
            config = parsing.parse_config(proc.stdout)
            value = int(config.get("MaxArraySize", "1001"))
            self._max_array_size = max(1, value)
            log.event("max_array_size", value=self._max_array_size)
        return self._max_array_size

    def default_processes(self, log: EventLog) -> int:
        """The CPUs of the partition the jobs go to (``sinfo``)."""
        argv = [self.commands.sinfo, "--noheader", "--format=%C"]
        partition = partition_of(self.sbatch_options)
        if partition:
            argv.append("--partition=" + partition)
        proc = self.run(argv, log)
        cpus = parsing.parse_sinfo_cpus(proc.stdout)
        log.event("default_processes", cpus=cpus, partition=partition)
        return max(1, cpus)

    # ------------------------------------------------------------- submit
    def _sbatch_argv(self, request: SubmitRequest, extra: typing.List[str], worker_id: str, log_name: str) -> typing.List[str]:
        """sbatch's command line: ``extra`` options, the worker and its id."""
        wrap = "exec {:s} --worker-id {:s}".format(
            " ".join(shlex.quote(a) for a in self.worker_command(request)), worker_id
        )
        options = {"job-name": request.name, "chdir": request.cwd}
        options.update(self.sbatch_options)
        return (
            [self.commands.sbatch, "--parsable"]
            + extra
            + ["--output=" + os.path.join(request.log_dir, log_name)]
            + format_options(options)
            + ["--wrap", wrap]
        )

    def _sbatch(self, argv: typing.List[str], request: SubmitRequest, log: EventLog) -> str:
        """Run sbatch; return the job id."""
        proc = self.run(argv, log, env=request.env)
        return parsing.parse_sbatch_parsable(proc.stdout)

    # ------------------------------------------------------------- states
    def states(
        self, worker_ids: typing.Collection[str], log: EventLog
    ) -> typing.Dict[str, WorkerStatus]:
        """One squeue for all the arrays of these workers."""
        job_ids = sorted({w.split("_", 1)[0] for w in worker_ids}, key=int)
        if not job_ids:
            return {}
        argv = [
            self.commands.squeue,
            "--noheader",
            "--array",
            "--states=all",
            "--jobs=" + ",".join(job_ids),
            "--format=" + parsing.SQUEUE_FORMAT,
        ]
        try:
            proc = self.run(argv, log)
        except errors.SchedulerCommandError as err:
            if "invalid job id" in err.stderr.lower():
                return {}  # SLURM has forgotten every one of them
            raise
        return parsing.parse_squeue(proc.stdout)

    # ------------------------------------------------------------- causes
    def describe(self, worker_id: str, log: EventLog) -> str:
        """State, reason, exit code and node of an ended array task.

        From ``scontrol show job`` while SLURM remembers the job, else from
        ``sacct`` where accounting exists, else ''.
        """
        try:
            proc = self.run([self.commands.scontrol, "show", "job", worker_id], log, single_try=True)
            return parsing.describe_job(proc.stdout)
        except errors.SchedulerCommandError:
            pass
        if self._accounting is not False:
            try:
                argv = [
                    self.commands.sacct,
                    "--noheader",
                    "--parsable2",
                    "--jobs=" + worker_id,
                    "--format=State,ExitCode,NodeList,Elapsed",
                ]
                proc = self.run(argv, log, single_try=True)
                self._accounting = True
                return parsing.describe_sacct(proc.stdout)
            except errors.SchedulerCommandError:
                self._accounting = False
        return ""

    def hint(self, scheduler_state: str) -> str:
        time_limit = self.sbatch_options.get("time") or self.sbatch_options.get("t")
        mem = self.sbatch_options.get("mem")
        hints = {
            "TIMEOUT": "They ran out of time: raise sbatch_options['time'] "
            "(now {!r}) or use a smaller chunksize.".format(time_limit),
            "OUT_OF_MEMORY": "They ran out of memory: raise sbatch_options['mem'] "
            "(now {!r}) or use a smaller chunksize.".format(mem),
            "NODE_FAIL": "Their nodes failed; if it is always the same nodes, "
            "leave them out with sbatch_options['exclude'].",
            "CANCELLED": "Someone (an admin, a script, scancel) cancelled them.",
            "PREEMPTED": "Jobs of higher priority preempted them; a partition "
            "without preemption helps.",
            "BOOT_FAIL": "Their nodes failed to boot.",
            "DEADLINE": "They reached their deadline.",
        }
        hint = hints.get(scheduler_state.split()[0] if scheduler_state else "", "")
        if not hint and self.resources.is_mpi and not any(
            a.startswith("--mpi") for a in self.resources.launcher_args
        ):
            hint = (
                "Each call runs on {:d} MPI ranks started by srun: if the output "
                "speaks of PMI, the MPI library needs srun's --mpi=pmix (or pmi2; "
                "'srun --mpi=list' shows them): resource_dict={{'slurm_cmd_args': "
                "['--mpi=pmix'], ...}}.".format(self.resources.cores)
            )
        return hint

    # ------------------------------------------------------------- cancel
    def cancel_commands(self, worker_ids: typing.Collection[str]) -> typing.List[typing.List[str]]:
        """One scancel; whole arrays by their job id."""
        targets = cancel_targets(worker_ids, "_", self._array_sizes)
        return [[self.commands.scancel] + targets] if targets else []


class SlurmArrayScheduler(SlurmScheduler):
    """Workers as tasks of SLURM job arrays: one sbatch per MaxArraySize."""

    name = "slurm.array"

    def submit(self, request: SubmitRequest, log: EventLog) -> typing.List[str]:
        ids: typing.List[str] = []
        for num in array_sizes(request.num_workers, self.max_array_size(log)):
            spec = "0-{:d}".format(num - 1)
            if request.max_running < num:
                # Only where it holds tasks back: slurmctld starts a
                # throttled array later than a plain one, often a pass later.
                spec += "%{:d}".format(request.max_running)
            argv = self._sbatch_argv(
                request,
                ["--array=" + spec],
                '"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"',
                "%A_%a.log",
            )
            job_id = self._sbatch(argv, request, log)
            self._array_sizes[job_id] = num
            ids.extend("{:s}_{:d}".format(job_id, i) for i in range(num))
        return ids


class SlurmJobScheduler(SlurmScheduler):
    """Workers as single SLURM jobs, for sites without job arrays."""

    name = "slurm"

    def submit(self, request: SubmitRequest, log: EventLog) -> typing.List[str]:
        ids = []
        for _ in range(request.num_workers):
            argv = self._sbatch_argv(request, [], '"${SLURM_JOB_ID}"', "%j.log")
            ids.append(self._sbatch(argv, request, log))
        return ids
