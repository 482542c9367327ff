"""
What the core asks of a scheduler, and the typed values it gets back.

A scheduler adapter (SLURM arrays, SLURM single jobs, Grid Engine) only
translates three requests: submit N workers, report the workers' states,
cancel workers. Everything else (chunking, the work dir, polling,
resubmission, results) lives in the scheduler-neutral core.

A *worker* is one scheduler job or array task running
``python -m pypoolparty.core.worker``; its id is a string the scheduler's status
command prints for it (e.g. ``"4711_3"`` for SLURM array task 3 of job 4711).
"""
from __future__ import annotations

import abc
import dataclasses
import enum
import os
import subprocess
import typing

from .commands import GENERIC_TRANSIENT_PATTERNS, RetryPolicy, run_command
from .event_log import EventLog
from .resources import Resources, mpirun_argv


class WorkerState(enum.Enum):
    """Where a worker is, from the core's point of view."""

    PENDING = "pending"
    """Queued, will start by itself."""
    HELD = "held"
    """Queued in a state that will not clear by itself (held, launch failed)."""
    RUNNING = "running"
    """Started (or starting, or completing)."""
    ENDED = "ended"
    """No longer pending or running: completed, failed, cancelled, killed."""
    UNKNOWN = "unknown"
    """The scheduler does not know it (any more)."""

    @property
    def is_alive(self) -> bool:
        """Pending, held or running: it may still write results."""
        return self in (WorkerState.PENDING, WorkerState.HELD, WorkerState.RUNNING)


@dataclasses.dataclass(frozen=True)
class WorkerStatus:
    """A worker's state as the scheduler reported it.

    Parameters
    ----------
    state : WorkerState
        The core's view.
    scheduler_state : str
        The scheduler's own word (e.g. ``"TIMEOUT"``, ``"Eqw"``).
    reason : str
        The scheduler's reason, if it gave one.
    """

    state: WorkerState
    scheduler_state: str = ""
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class SubmitRequest:
    """Start ``num_workers`` workers of a pool.

    Parameters
    ----------
    num_workers : int
        How many workers (array tasks, jobs) to start.
    max_running : int
        At most this many of them may run at once.
    worker_argv : list of str
        The worker's command line, without its worker id; the adapter
        appends ``--worker-id ID`` with an id it can later report.
    name : str
        A job name for the scheduler's listing.
    log_dir : str
        Directory for the workers' stdout and stderr, one file per worker,
        named ``<worker id>.log``.
    cwd : str
        Working directory of the workers.
    env : dict
        Environment variables the workers need on top of the submitting
        process's.
    """

    num_workers: int
    max_running: int
    worker_argv: typing.List[str]
    name: str
    log_dir: str
    cwd: str
    env: typing.Dict[str, str]


class Scheduler(abc.ABC):
    """The interface of a scheduler adapter.

    An adapter fills in :meth:`submit`, :meth:`states` and
    :meth:`cancel_commands`, and may refine the rest. Every command it runs
    goes through :meth:`run`, with the adapter's retry ``policy`` and its
    scheduler's :attr:`transient_patterns`.
    """

    #: Short name used in logs and messages, e.g. ``"slurm"``.
    name: str = "scheduler"
    #: Phrases (regular expressions, matched lower-case against stderr) of
    #: this scheduler's clients that mean "try again later", on top of
    #: :data:`~pypoolparty.core.commands.GENERIC_TRANSIENT_PATTERNS`.
    transient_patterns: typing.Tuple[str, ...] = ()

    #: What each worker of this adapter gets (see :meth:`with_resources`).
    resources: Resources = Resources()

    def __init__(self, policy: RetryPolicy):
        self.policy = policy

    def run(
        self,
        argv: typing.Sequence[str],
        log: EventLog,
        *,
        env: typing.Optional[typing.Mapping[str, str]] = None,
        single_try: bool = False,
        **kwargs,
    ) -> subprocess.CompletedProcess:
        """Run one of the scheduler's commands.

        Parameters
        ----------
        argv : sequence of str
            The command line.
        log : EventLog
            Where the attempts are logged.
        env : mapping, optional
            Variables on top of this process's environment.
        single_try : bool
            One short attempt without retries, for look-ups that are worth
            a try but not a wait (e.g. why a worker ended).
        **kwargs
            Passed on to :func:`~pypoolparty.core.commands.run_command`.
        """
        merged = None
        if env:
            merged = dict(os.environ)
            merged.update(env)
        return run_command(
            argv,
            policy=self.policy.single_try() if single_try else self.policy,
            log=log,
            env=merged,
            transient_patterns=GENERIC_TRANSIENT_PATTERNS + self.transient_patterns,
            **kwargs,
        )

    @abc.abstractmethod
    def submit(self, request: SubmitRequest, log: EventLog) -> typing.List[str]:
        """Submit the workers; return their ids."""

    @abc.abstractmethod
    def states(
        self, worker_ids: typing.Collection[str], log: EventLog
    ) -> typing.Dict[str, WorkerStatus]:
        """Report the status of the given workers in one call.

        Workers the scheduler does not know are left out of the result.
        """

    @abc.abstractmethod
    def cancel_commands(self, worker_ids: typing.Collection[str]) -> typing.List[typing.List[str]]:
        """The command lines that cancel the given workers (few, short)."""

    # ---------------------------------------------------------- resources
    def known_option(self, key: str) -> bool:
        """Whether ``key`` is one of this scheduler's submit options that a
        ``resource_dict`` may set (not one the pool sets itself)."""
        return False

    def with_resources(self, resources: Resources) -> "Scheduler":
        """A copy of this adapter whose workers get ``resources``.

        Raises
        ------
        ValueError
            If this scheduler cannot give them.
        """
        raise ValueError("the {:s} scheduler takes no per-call resources".format(self.name))

    def mpi_launcher(self) -> typing.List[str]:
        """The command that starts a worker's ``resources.cores`` MPI ranks."""
        return mpirun_argv(self.resources)

    def worker_command(self, request: SubmitRequest) -> typing.List[str]:
        """The command line of a worker, without ``--worker-id``: under the
        MPI launcher when each call runs on several ranks."""
        argv = list(request.worker_argv)
        if self.resources.is_mpi:
            argv = self.mpi_launcher() + argv + ["--ranks", str(self.resources.cores)]
        return argv

    def cancel(self, worker_ids: typing.Collection[str], log: EventLog) -> None:
        """Cancel the given workers."""
        for argv in self.cancel_commands(worker_ids):
            self.run(argv, log)

    def hint(self, scheduler_state: str) -> str:
        """Advice for jobs lost in this scheduler state, or ''."""
        return ""

    def describe(self, worker_id: str, log: EventLog) -> str:
        """More about an ended worker (exit code, node, ...), or ''.

        Called only for workers that ended without a result, so it may cost
        a scheduler call.
        """
        return ""

    def time_limit(self) -> typing.Optional[float]:
        """The workers' time limit in seconds, from the submit options, or None.

        A worker takes no chunk it may not finish before this limit.
        """
        return None

    def default_processes(self, log: EventLog) -> int:
        """How many workers may run at once when the user did not say."""
        return os.cpu_count() or 1


def array_sizes(num_workers: int, max_array_size: int) -> typing.List[int]:
    """Split ``num_workers`` into arrays of at most ``max_array_size`` tasks."""
    full, rest = divmod(num_workers, max(1, max_array_size))
    return [max_array_size] * full + ([rest] if rest else [])


def checked_options(
    options: typing.Mapping[str, typing.Any],
    reserved: typing.Collection[str],
    command: str,
    normalize: typing.Callable[[str], str] = lambda key: key,
) -> typing.Dict[str, typing.Any]:
    """A copy of the user's submit options, keys without leading dashes.

    Raises
    ------
    ValueError
        For an option the pool sets itself (in ``reserved``).
    """
    out = {}
    for key, value in options.items():
        norm = normalize(str(key).lstrip("-"))
        if norm in reserved:
            raise ValueError(
                "{:s} option {!r} is set by the pool itself and cannot be "
                "passed in {:s}_options".format(command, key, command)
            )
        out[norm] = value
    return out


def cancel_targets(
    worker_ids: typing.Collection[str],
    separator: str,
    array_sizes: typing.Mapping[str, int],
) -> typing.List[str]:
    """The fewest ids to cancel: a whole array by its job id, else its tasks.

    ``worker_ids`` are ``"<job><separator><task>"``; ``array_sizes`` gives
    the number of tasks each array job was submitted with. An array of
    unknown size (another driver's, adopted) is cancelled task by task.
    """
    by_job: typing.Dict[str, typing.List[str]] = {}
    for w in worker_ids:
        by_job.setdefault(w.split(separator, 1)[0], []).append(w)
    targets = []
    for job_id, tasks in sorted(by_job.items()):
        size = array_sizes.get(job_id)
        if size is not None and len(tasks) >= size:
            targets.append(job_id)
        else:
            targets.extend(sorted(tasks))
    return targets


def expand_index_ranges(spec: str) -> typing.List[int]:
    """Indices of a scheduler's range list: ``"1,4-8:2"`` -> ``[1, 4, 6, 8]``.

    SLURM (``7_[1-3,5]``) and Grid Engine (``3-5:1``) print array tasks so.
    """
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        step = 1
        if ":" in part:
            part, step_s = part.split(":", 1)
            step = int(step_s)
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1, step))
        else:
            out.append(int(part))
    return out
