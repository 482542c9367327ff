"""
The local machine as a scheduler: workers are detached processes.

It translates the core's three requests and nothing else:

- submit: start each worker as ``<worker argv> --worker-id ID`` in a session
  of its own (so that it outlives a killed driver, as a cluster job does),
  with the request's environment, working directory and log file
  ``<log_dir>/<ID>.log``. The id is ``<host>-<pid>-<start>``
  (:mod:`.detached` says how the worker learns it before it starts);
- states: RUNNING while the process of the id lives, else ended:
  COMPLETED or FAILED (exit code) or KILLED (signal) for workers this
  adapter started and collected, EXITED (status unknown) for workers of
  another driver, whose exit status went to their new parent. A worker is
  never pending: there is no queue;
- cancel: SIGTERM to the worker's process group, SIGKILL after a grace
  period, only while the pid has the start of the id.

Any adapter, in any process on the host, answers for any id: a driver that
adopts a dead driver's map knows its workers by the ids in that pool's log.
There are no scheduler commands, so nothing goes through
:meth:`~pypoolparty.core.scheduler.Scheduler.run` and no retry policy is
used; ``cancel_commands`` gives the reaper ``python .../detached.py cancel
ID...``, the same code as :meth:`ProcessScheduler.cancel`.

The core asks for at most ``processes`` workers alive at once, so a request
stays within its ``max_running``; should one ask for more, they are all
started (a machine has no queue to keep them in) and the log says so.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import typing

from .. import errors
from ..core.commands import RetryPolicy
from ..core.event_log import EventLog
from ..core.resources import Resources
from ..core.scheduler import Scheduler, SubmitRequest, WorkerState, WorkerStatus
from . import detached
from .detached import Life, ProcessId

#: The script that launches and cancels workers (run by its path, see :mod:`.detached`) ...
DETACHED_SCRIPT = os.path.abspath(detached.__file__)
#: ... with the standard library only: no site-packages, no PYTHON* variables,
#: not its own folder on the path (half the time of a plain start).
SCRIPT_FLAGS = ["-I", "-S"]

HINTS = {
    "KILLED": "A signal ended them: the kernel's out-of-memory killer (see "
    "'dmesg'), or someone's kill. Fewer processes or smaller chunks need "
    "less memory at once.",
    "FAILED": "Their process exited with an error; its output is above.",
    "EXITED": "They ended while another driver watched them; their output is above.",
    "CANCELLED": "The pool cancelled them.",
}


def cluster_option(key: str) -> bool:
    """Whether ``key`` is a submit option of SLURM or Grid Engine: on this
    machine they are accepted, so that code written for a cluster runs here
    unchanged, and mean nothing."""
    from ..slurm.adapter import SBATCH_OPTIONS
    from ..sun_grid_engine.adapter import QSUB_OPTIONS

    return key.replace("_", "-") in SBATCH_OPTIONS or key in QSUB_OPTIONS


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ProcessScheduler(Scheduler):
    """Workers as detached processes of this machine.

    Its :attr:`name` is ``processes@<host>``: a driver on another host
    (with a store on a shared filesystem) does not adopt maps whose workers
    it cannot see, and runs their jobs anew.

    Parameters
    ----------
    grace : float
        Seconds a cancelled worker has between SIGTERM and SIGKILL.
    python : str
        The interpreter that runs the launcher.
    policy : RetryPolicy
        Kept as every adapter keeps one; no command runs here.
    """

    name = "processes"

    def __init__(
        self,
        grace: float = detached.GRACE_SECONDS,
        python: str = sys.executable,
        policy: RetryPolicy = RetryPolicy(),
    ):
        super().__init__(policy)
        # A driver on another host cannot see these processes: with a store
        # on a shared filesystem, it must not adopt their maps.
        self.name = "processes@" + socket.gethostname()
        self.grace = grace
        self.python = python
        self._children: typing.Dict[str, subprocess.Popen] = {}
        self._exit_codes: typing.Dict[str, int] = {}
        self._cancelled: typing.Set[str] = set()

    # ---------------------------------------------------------- resources
    def known_option(self, key: str) -> bool:
        return cluster_option(key)

    def with_resources(self, resources: Resources) -> "ProcessScheduler":
        """A copy whose workers get ``resources``: ``mpirun`` starts the
        ranks of a call on several cores; CPUs and GPUs per rank are this
        machine's, and a cluster's submit options are ignored."""
        copy = type(self)(grace=self.grace, python=self.python, policy=self.policy)
        copy.resources = resources
        return copy

    # ------------------------------------------------------------- limits
    def default_processes(self, log: EventLog) -> int:
        """The CPUs this process may use."""
        cpus = available_cpus()
        log.event("default_processes", cpus=cpus)
        return cpus

    # ------------------------------------------------------------- submit
    def submit(self, request: SubmitRequest, log: EventLog) -> typing.List[str]:
        """Start the workers now; return their ids."""
        if request.num_workers > request.max_running:
            log.warning(
                "over_budget", workers=request.num_workers, max_running=request.max_running
            )
        env = dict(os.environ)
        env.update(request.env)
        return [self._start(request, env) for _ in range(request.num_workers)]

    def _start(self, request: SubmitRequest, env: typing.Mapping[str, str]) -> str:
        """Start one worker; its log gets its name once its id is known."""
        argv = [self.python] + SCRIPT_FLAGS + [DETACHED_SCRIPT, "launch"] + self.worker_command(request)
        starting = os.path.join(request.log_dir, ".starting-{:s}.log".format(secrets.token_hex(6)))
        try:
            fd = os.open(starting, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as err:
            raise errors.SchedulerCommandError(argv, None, str(err)) from err
        try:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=request.cwd,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                start_new_session=True,
            )
        except OSError as err:
            os.unlink(starting)
            raise errors.SchedulerCommandError(argv, None, str(err)) from err
        finally:
            os.close(fd)
        # Not collected yet, the child keeps its pid and start.
        worker_id = str(ProcessId.of(proc.pid))
        self._children[worker_id] = proc
        os.rename(starting, os.path.join(request.log_dir, worker_id + ".log"))
        return worker_id

    # ------------------------------------------------------------- states
    def states(
        self, worker_ids: typing.Collection[str], log: EventLog
    ) -> typing.Dict[str, WorkerStatus]:
        """Each worker of this host from ``/proc``; those of other hosts,
        and ids that are no process id, are left out."""
        self._collect()
        out = {}
        for wid, pid in detached.parse_ids(worker_ids).items():
            life = pid.life()
            if life is Life.RUNNING:
                out[wid] = WorkerStatus(WorkerState.RUNNING, "RUNNING")
            elif life is not Life.ELSEWHERE:
                word, reason = self._end_of(wid)
                out[wid] = WorkerStatus(WorkerState.ENDED, word, reason)
        return out

    def _collect(self) -> None:
        """Collect the exit status of the workers this adapter started."""
        for wid, proc in list(self._children.items()):
            if proc.poll() is not None:
                self._exit_codes[wid] = proc.returncode
                self._children.pop(wid, None)

    def _end_of(self, worker_id: str) -> typing.Tuple[str, str]:
        """The word and reason of an ended worker."""
        if worker_id in self._cancelled:
            return "CANCELLED", "cancelled by the pool"
        code = self._exit_codes.get(worker_id)
        if code is None:
            return "EXITED", "exit status unknown: another driver started it"
        if code == 0:
            return "COMPLETED", ""
        if code < 0:
            return "KILLED", "signal " + signal.Signals(-code).name
        return "FAILED", "exit code {:d}".format(code)

    # ------------------------------------------------------------- cancel
    def cancel(self, worker_ids: typing.Collection[str], log: EventLog) -> None:
        """SIGTERM, then SIGKILL after the grace period; ended ones are fine."""
        ids = detached.parse_ids(worker_ids)
        self._collect()  # a worker that ended on its own was not cancelled
        signalled = detached.end(ids.values(), self.grace)
        self._cancelled.update(str(p) for p in signalled)
        self._collect()
        elsewhere = [w for w, p in ids.items() if p.life() is Life.ELSEWHERE]
        if elsewhere:
            log.warning("cancel_elsewhere", workers=elsewhere, host=socket.gethostname())

    def cancel_commands(self, worker_ids: typing.Collection[str]) -> typing.List[typing.List[str]]:
        """The detached script's ``cancel``, for the reaper."""
        if not worker_ids:
            return []
        return [[self.python] + SCRIPT_FLAGS + [DETACHED_SCRIPT, "cancel"] + sorted(worker_ids)]

    # ------------------------------------------------------------- causes
    def describe(self, worker_id: str, log: EventLog) -> str:
        """Which process it was (its end is in its state and reason)."""
        pid = detached.parse_ids([worker_id]).get(worker_id)
        if pid is None:
            return ""
        text = "process {:d} on {:s}".format(pid.pid, pid.host)
        if pid.life() is Life.ELSEWHERE:
            text += ", which this host cannot see"
        return text

    def hint(self, scheduler_state: str) -> str:
        return HINTS.get(scheduler_state, "")
