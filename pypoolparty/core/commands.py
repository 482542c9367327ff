"""
The one way pypoolparty runs a scheduler command.

Every call of sbatch, squeue, scancel, scontrol, qsub, ... goes through
:func:`run_command` with one retry policy: a failure that looks transient
(the controller does not answer, a socket timed out, the command itself timed
out) is retried with exponential back-off until the policy's deadline; any
other failure raises at once with the command and its stderr.
"""
from __future__ import annotations

import dataclasses
import re
import subprocess
import time
import typing

from .. import errors
from .event_log import EventLog


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How long and how often a transiently failing command is retried.

    Parameters
    ----------
    timeout : float
        Seconds one call may take before it is killed and counted as a
        transient failure.
    first_delay : float
        Seconds to wait before the first retry.
    factor : float
        Each further wait is this much longer ...
    max_delay : float
        ... up to this many seconds.
    deadline : float
        Seconds after the first attempt when no further retry starts; the
        last transient failure is then raised as
        :class:`~pypoolparty.errors.SchedulerUnavailableError`.
    """

    timeout: float = 60.0
    first_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0
    deadline: float = 600.0

    def single_try(self) -> "RetryPolicy":
        """One attempt, no retries, at most 20 s: for look-ups worth a try, not a minute."""
        return dataclasses.replace(self, deadline=0.0, timeout=min(self.timeout, 20.0))

    def delays(self) -> typing.Iterator[float]:
        """The waits between attempts, forever."""
        delay = self.first_delay
        while True:
            yield delay
            delay = min(delay * self.factor, self.max_delay)


#: Failures of any client-server command that mean "try again later". Each
#: adapter adds the phrases of its own scheduler's clients.
GENERIC_TRANSIENT_PATTERNS = (
    r"socket timed out",
    r"connection refused",
    r"connection reset",
    r"resource temporarily unavailable",
    r"transport endpoint",
    r"try again",
    r"temporarily",
    r"communication error",
)


def is_transient(stderr: str, patterns: typing.Iterable[str]) -> bool:
    """True when ``stderr`` matches one of the transient ``patterns``."""
    text = stderr.lower()
    return any(re.search(p, text) for p in patterns)


def run_command(
    argv: typing.Sequence[str],
    *,
    policy: RetryPolicy,
    log: typing.Optional[EventLog] = None,
    env: typing.Optional[typing.Mapping[str, str]] = None,
    transient_patterns: typing.Iterable[str] = GENERIC_TRANSIENT_PATTERNS,
    ok_returncodes: typing.Iterable[int] = (0,),
    should_stop: typing.Callable[[], bool] = lambda: False,
    sleep: typing.Callable[[float], None] = time.sleep,
    input: typing.Optional[str] = None,
) -> subprocess.CompletedProcess:
    """Run a scheduler command with pypoolparty's retry policy.

    Parameters
    ----------
    argv : sequence of str
        The command and its arguments; no shell is involved.
    policy : RetryPolicy
        Time-out per call, back-off and deadline for transient failures.
    log : EventLog, optional
        Every attempt and its outcome is written here.
    env : mapping, optional
        Environment of the command (default: this process's).
    transient_patterns : iterable of str
        Regular expressions (matched lower-case against stderr) that mark a
        failure as transient.
    ok_returncodes : iterable of int
        Exit statuses that count as success.
    should_stop : callable
        Checked before each retry; when it returns True the retries end and
        the last failure is raised.
    sleep : callable
        Used to wait between attempts.
    input : str, optional
        Written to the command's stdin (e.g. a job script for qsub).

    Returns
    -------
    subprocess.CompletedProcess
        With ``stdout`` and ``stderr`` as text.

    Raises
    ------
    SchedulerCommandError
        At once, for a failure that is not transient or a missing command.
    SchedulerUnavailableError
        When transient failures last past ``policy.deadline``.
    """
    argv = [str(a) for a in argv]
    ok = set(ok_returncodes)
    patterns = tuple(transient_patterns)
    start = time.monotonic()
    delays = policy.delays()
    attempt = 0
    while True:
        attempt += 1
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                **({"input": input} if input is not None else {"stdin": subprocess.DEVNULL}),
                env=None if env is None else dict(env),
                timeout=policy.timeout,
                text=True,
            )
        except FileNotFoundError as err:
            if log:
                log.event("command_missing", argv=argv, error=str(err))
            raise errors.SchedulerCommandError(
                argv,
                None,
                str(err),
                hint="The command is not installed or not on PATH here. "
                "Run this on a machine that can submit to the cluster, or "
                "pass the command's path to the pool (e.g. sbatch_path=).",
            ) from None
        except subprocess.TimeoutExpired:
            proc = subprocess.CompletedProcess(
                argv,
                None,
                "",
                "timed out after {:.1f} s".format(policy.timeout),
            )
            transient = True
        else:
            if proc.returncode in ok:
                if log:
                    log.event(
                        "command",
                        argv=argv,
                        returncode=proc.returncode,
                        seconds=round(time.monotonic() - t0, 4),
                        attempt=attempt,
                    )
                return proc
            transient = is_transient(proc.stderr, patterns)
        if log:
            log.event(
                "command_failed",
                argv=argv,
                returncode=proc.returncode,
                stderr=proc.stderr[-2000:],
                transient=transient,
                attempt=attempt,
            )
        if not transient:
            raise errors.SchedulerCommandError(
                argv, proc.returncode, proc.stderr
            )
        delay = next(delays)
        out_of_time = time.monotonic() - start + delay > policy.deadline
        if out_of_time or should_stop():
            raise errors.SchedulerUnavailableError(
                argv,
                proc.returncode,
                proc.stderr,
                hint="It failed transiently {:d} times over {:.0f} s; the "
                "scheduler seems unavailable. Check that its controller "
                "answers.".format(
                    attempt, time.monotonic() - start
                ),
            )
        sleep(delay)
