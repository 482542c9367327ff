"""
A fake scheduler: the real worker code on this machine, faults on demand.

What it is for: fast tests of the core's decisions (results, lost workers,
resubmission, held workers, the pool's budget, polls, failing commands,
cancellation) without root, daemons or a cluster, and faults that a real
scheduler produces only when it pleases. Each worker is a subprocess of the
real worker module, ``<worker argv> --worker-id ID``, with the request's
environment, working directory and log file, as the adapters start it. A
controller thread starts pending workers as the request's ``max_running``
(and the fake's ``slots``) allow and notices when they end. Tests can lose,
hold, requeue or forget a worker, keep workers pending, and make commands
fail transiently or for good.

What it is not: a replacement for the tests on real SLURM and Grid Engine.
Their command lines, state words, array limits, delays and failure modes
are the adapters' business and only a real scheduler proves them.

Its commands are small shell scripts in a folder of its own, run through
:meth:`pypoolparty.core.scheduler.Scheduler.run` with the fake's retry policy,
so an injected failure takes a real one's path: retried with back-off while
transient, :class:`~pypoolparty.errors.SchedulerCommandError` at once when
permanent. The cancel script only notes its arguments (``cancel-requests``),
so the reaper may run it any time; :meth:`FakeScheduler.cancel` kills the
processes itself. ::

    with pypoolparty.testing.fake.pool(2, work_dir=tmp) as pool:
        pool.scheduler.hold(1)
        assert pool.map(abs, [-1, -2]) == [1, 2]
        assert pool.scheduler.calls["submit"] == 2
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import typing

from ..core.commands import RetryPolicy
from ..core.event_log import EventLog
from ..core.pool import ClusterPool
from ..core.resources import Resources
from ..core.scheduler import Scheduler, SubmitRequest, WorkerState, WorkerStatus
from . import fake_commands

#: The fake's words, and what they mean to the core.
STATES = {
    "PENDING": WorkerState.PENDING,
    "HELD": WorkerState.HELD,
    "RUNNING": WorkerState.RUNNING,
    "COMPLETING": WorkerState.RUNNING,  # the process ended, the epilog runs
    "COMPLETED": WorkerState.ENDED,
    "FAILED": WorkerState.ENDED,
    "KILLED": WorkerState.ENDED,
    "CANCELLED": WorkerState.ENDED,
    "TIMEOUT": WorkerState.ENDED,
}
ALIVE = ("PENDING", "HELD", "RUNNING", "COMPLETING")
IN_A_SLOT = ("RUNNING", "COMPLETING")
@dataclasses.dataclass
class Call:
    """A call of submit, states or cancel: the ids submitted, asked about or
    cancelled, the states replied, the request submitted, the error raised."""

    kind: str
    time: float
    worker_ids: typing.List[str]
    reply: typing.Dict[str, WorkerStatus] = dataclasses.field(default_factory=dict)
    request: typing.Optional[SubmitRequest] = None
    error: typing.Optional[BaseException] = None


@dataclasses.dataclass
class FakeWorker:
    """One worker: its request, its word and its process (while it runs)."""

    worker_id: str
    submission: int
    request: SubmitRequest
    word: str = "PENDING"
    reason: str = ""
    not_before: float = 0.0
    forgotten: bool = False
    process: typing.Optional[subprocess.Popen] = None
    pids: typing.List[int] = dataclasses.field(default_factory=list)
    returncode: typing.Optional[int] = None
    ended_at: float = 0.0
    started_at: float = 0.0


class FakeScheduler(Scheduler):
    """Runs each worker as a local subprocess; can be told to misbehave.

    Parameters
    ----------
    slots : int or None
        At most this many workers run at once over all submissions (the
        cluster's size); None: only each request's ``max_running`` limits.
    policy : RetryPolicy or None
        Retry policy of its commands; the default gives up after a second.
    state_dir : str or None
        Folder of the command scripts; None: a temporary one, removed by
        :meth:`shutdown`.
    time_limit : float or None
        Seconds a worker may run before it is killed with the word
        ``TIMEOUT`` (and what :meth:`time_limit` tells the pool).

    Attributes
    ----------
    calls : collections.Counter
        Calls of ``"submit"``, ``"states"`` and ``"cancel"``, failed ones too.
    history : list of Call
        Every call, in order.
    max_alive, max_running : int
        Most workers alive (pending, held, running) and running at once.
    """

    name = "fake"
    transient_patterns = fake_commands.TRANSIENT_PATTERNS

    def __init__(
        self,
        slots: typing.Optional[int] = None,
        policy: typing.Optional[RetryPolicy] = None,
        state_dir: typing.Optional[str] = None,
        time_limit: typing.Optional[float] = None,
    ):
        super().__init__(
            policy or RetryPolicy(timeout=10.0, first_delay=0.01, factor=2.0, max_delay=0.1, deadline=1.0)
        )
        self.slots = slots
        self._time_limit = time_limit
        self._own_state_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="pypoolparty-fake-")
        self._scripts = fake_commands.FakeCommands(self.state_dir)
        self.calls: typing.Counter[str] = collections.Counter()
        self.history: typing.List[Call] = []
        self.max_alive = self.max_running = 0
        self._workers: typing.Dict[str, FakeWorker] = {}
        self._hold_next = 0
        self._start_delay = self._epilog = 0.0
        self._gate_open = True
        self._cond = threading.Condition()
        self._command_lock = threading.Lock()
        self._stopping = False
        self._thread: typing.Optional[threading.Thread] = None
        #: The fakes :meth:`with_resources` made.
        self.derived: typing.List["FakeScheduler"] = []

    # ------------------------------------------------------ the interface
    def submit(self, request: SubmitRequest, log: EventLog) -> typing.List[str]:
        """Queue ``request.num_workers`` workers; the controller starts them."""
        call = self._new_call("submit", [])
        call.request = request
        argv = [self._scripts.path("submit"), "--workers={:d}".format(request.num_workers)]
        self._commands(call, [argv], log)
        with self._cond:
            submission = len([c for c in self.history if c.kind == "submit" and not c.error]) + 1
            for index in range(request.num_workers):
                worker = FakeWorker("{:d}_{:d}".format(submission, index), submission, request)
                worker.not_before = time.monotonic() + self._start_delay
                if self._hold_next > 0:
                    self._hold_next -= 1
                    worker.word, worker.reason = "HELD", "held by the test"
                self._workers[worker.worker_id] = worker
                call.worker_ids.append(worker.worker_id)
            self.history.append(call)
            self._count_alive()
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._control, name="pypoolparty-fake-scheduler", daemon=True
                )
                self._thread.start()
        return list(call.worker_ids)

    def known_option(self, key: str) -> bool:
        """The fake knows a few of SLURM's options: ``mem``, ``time``, ``partition``."""
        return key in ("mem", "time", "partition")

    def with_resources(self, resources: Resources) -> "FakeScheduler":
        """Another fake, shut down with this one, whose workers get ``resources``."""
        copy = FakeScheduler(self.slots, self.policy, time_limit=self._time_limit)
        copy.resources = resources
        self.derived.append(copy)
        return copy

    def states(
        self, worker_ids: typing.Collection[str], log: EventLog
    ) -> typing.Dict[str, WorkerStatus]:
        """The status of the given workers the fake still knows."""
        call = self._new_call("states", worker_ids)
        self._commands(call, [[self._scripts.path("states"), ",".join(worker_ids)]], log)
        with self._cond:
            self._reap()
            for wid in worker_ids:
                worker = self._workers.get(wid)
                if worker is not None and not worker.forgotten:
                    call.reply[wid] = WorkerStatus(STATES[worker.word], worker.word, worker.reason)
            self.history.append(call)
        return dict(call.reply)

    def cancel_commands(self, worker_ids: typing.Collection[str]) -> typing.List[typing.List[str]]:
        """One call of the cancel script, which only notes the ids."""
        return [[self._scripts.path("cancel")] + sorted(worker_ids)] if worker_ids else []

    def cancel(self, worker_ids: typing.Collection[str], log: EventLog) -> None:
        """Run the cancel command, then kill the workers' processes."""
        call = self._new_call("cancel", worker_ids)
        self._commands(call, self.cancel_commands(worker_ids), log)
        with self._cond:
            for wid in worker_ids:
                worker = self._workers.get(wid)
                if worker is not None and worker.word in ALIVE:
                    self._stop(worker, "CANCELLED", "cancelled by the pool")
            self.history.append(call)

    def describe(self, worker_id: str, log: EventLog) -> str:
        worker = self._workers.get(worker_id)
        if worker is None or worker.returncode is None:
            return ""
        return "fake: exit code {:d}, pids {}".format(worker.returncode, worker.pids)

    def hint(self, scheduler_state: str) -> str:
        return {
            "KILLED": "The test killed them (FakeScheduler.lose).",
            "HELD": "The test held them (FakeScheduler.hold).",
        }.get(scheduler_state, "")

    def time_limit(self) -> typing.Optional[float]:
        return self._time_limit

    def default_processes(self, log: EventLog) -> int:
        return self.slots or 2

    # ---------------------------------------------------------- faults
    def lose(self, worker_id: str, state: str = "KILLED") -> None:
        """SIGKILL a running worker: it ends in ``state`` without a result."""
        with self._cond:
            self._stop(self._running(worker_id), state, "lost (the test killed it)")

    def requeue(self, worker_id: str) -> None:
        """Kill a running worker and queue it again under the same id."""
        with self._cond:
            self._stop(self._running(worker_id), "PENDING", "requeued by the test")

    def hold(self, workers: typing.Union[int, typing.Iterable[str]] = 1) -> None:
        """Hold the next ``workers`` submitted ones, or these pending ids.

        A held worker stays HELD until it is cancelled.
        """
        with self._cond:
            if isinstance(workers, int):
                self._hold_next += workers
                return
            for wid in workers:
                worker = self._workers[wid]
                if worker.word != "PENDING":
                    raise ValueError("worker {:s} is {:s}, not PENDING".format(wid, worker.word))
                worker.word, worker.reason = "HELD", "held by the test"

    def forget(self, worker_id: str) -> None:
        """From now on states() leaves this worker out, as if unknown."""
        with self._cond:
            self._workers[worker_id].forgotten = True

    def fail_next(
        self, command: str, times: int = 1, transient: bool = True, message: str = ""
    ) -> None:
        """Make the next ``times`` runs of ``"submit"``, ``"states"`` or ``"cancel"`` fail.

        Retries count as runs. A ``transient`` failure asks to try again:
        the retry policy retries, and raises SchedulerUnavailableError if the
        failures outlast its deadline; else SchedulerCommandError at once.
        ``message`` replaces what the command writes to stderr.
        """
        with self._command_lock:
            self._scripts.arm(command, times, transient, message)

    def failures_left(self, command: str) -> int:
        """Injected failures of ``command`` that did not happen yet."""
        return self._scripts.failures_left(command)

    def delay_start(self, seconds: float) -> None:
        """Workers submitted from now on start no earlier than this after."""
        with self._cond:
            self._start_delay = float(seconds)

    def epilog(self, seconds: float) -> None:
        """Workers whose process ended stay COMPLETING this long, in their slot."""
        with self._cond:
            self._epilog = float(seconds)

    def close_gate(self) -> None:
        """Keep every pending worker pending until :meth:`open_gate`."""
        with self._cond:
            self._gate_open = False

    def open_gate(self) -> None:
        """Let pending workers start again."""
        with self._cond:
            self._gate_open = True
            self._cond.notify_all()

    # ---------------------------------------------------------- records
    def calls_of(self, kind: str) -> typing.List[Call]:
        """The calls of ``"submit"``, ``"states"`` or ``"cancel"``, in order."""
        with self._cond:
            return [c for c in self.history if c.kind == kind]

    @property
    def submitted(self) -> typing.List[typing.List[str]]:
        """The ids of each successful submit call."""
        return [c.worker_ids for c in self.calls_of("submit") if c.error is None]

    @property
    def cancelled(self) -> typing.List[typing.List[str]]:
        """The ids of each successful cancel call."""
        return [c.worker_ids for c in self.calls_of("cancel") if c.error is None]

    def word(self, worker_id: str) -> str:
        """The fake's word for a worker now (``"RUNNING"``, ...)."""
        with self._cond:
            self._reap()
            return self._workers[worker_id].word

    def pids(self, worker_id: str) -> typing.List[int]:
        """The process ids the worker had, one per start."""
        with self._cond:
            return list(self._workers[worker_id].pids)

    def worker_ids(self, *words: str) -> typing.List[str]:
        """Ids of the workers in one of ``words`` (all if none given)."""
        with self._cond:
            self._reap()
            return [w for w, r in self._workers.items() if not words or r.word in words]

    def shutdown(self) -> None:
        """Kill every worker process and stop the controller thread (also
        of the fakes :meth:`with_resources` made)."""
        for derived in self.derived:
            derived.shutdown()
        with self._cond:
            self._stopping = True
            for worker in self._workers.values():
                if worker.word in ALIVE:
                    self._stop(worker, "CANCELLED", "the fake scheduler shut down")
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # ------------------------------------------------------- internals
    def _new_call(self, kind: str, worker_ids: typing.Iterable[str]) -> Call:
        with self._cond:
            self.calls[kind] += 1
        return Call(kind, time.monotonic(), list(worker_ids))

    def _commands(self, call: Call, argvs: typing.List[typing.List[str]], log: EventLog) -> None:
        """Run a call's commands; a failure is recorded with the call."""
        try:
            for argv in argvs:
                with self._command_lock:
                    self.run(argv, log)
        except BaseException as err:
            call.error = err
            with self._cond:
                self.history.append(call)
            raise

    def _running(self, worker_id: str) -> FakeWorker:
        self._reap()
        worker = self._workers[worker_id]
        if worker.word != "RUNNING":
            raise ValueError("worker {:s} is {:s}, not RUNNING".format(worker_id, worker.word))
        return worker

    def _stop(self, worker: FakeWorker, word: str, reason: str) -> None:
        """Kill the worker's process group, if it runs; give it ``word``."""
        if worker.process is not None:
            try:
                os.killpg(worker.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            worker.returncode = worker.process.wait()
            worker.process = None
        worker.word, worker.reason = word, reason
        self._count_alive()
        self._cond.notify_all()

    def _reap(self) -> None:
        """Notice processes that ended, and epilogs that are over."""
        now = time.monotonic()
        for worker in self._workers.values():
            if worker.process is not None:
                code = worker.process.poll()
                if code is None:
                    if self._time_limit is not None and now > worker.started_at + self._time_limit:
                        self._stop(worker, "TIMEOUT", "the time limit was reached")
                    continue
                worker.process, worker.returncode = None, code
                worker.word, worker.ended_at = "COMPLETING", now
            if worker.word == "COMPLETING" and now >= worker.ended_at + self._epilog:
                if worker.returncode == 0:
                    worker.word, worker.reason = "COMPLETED", ""
                else:
                    worker.word = "FAILED"
                    worker.reason = "exit code {:d}".format(worker.returncode)
        self._count_alive()

    def _start_due(self) -> None:
        """Start pending workers as far as the limits allow."""
        if not self._gate_open:
            return
        now = time.monotonic()
        busy = collections.Counter(
            w.submission for w in self._workers.values() if w.word in IN_A_SLOT
        )
        for worker in self._workers.values():
            if self.slots is not None and sum(busy.values()) >= self.slots:
                break
            if worker.word != "PENDING" or worker.not_before > now:
                continue
            if busy[worker.submission] < worker.request.max_running:
                self._start(worker)
                busy[worker.submission] += 1
        self._count_alive()

    def _start(self, worker: FakeWorker) -> None:
        """Start the worker's process as a job: own session, output to its log."""
        request = worker.request
        env = dict(os.environ)
        env.update(request.env)
        argv = self.worker_command(request) + ["--worker-id", worker.worker_id]
        try:
            with open(os.path.join(request.log_dir, worker.worker_id + ".log"), "ab") as out:
                worker.process = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=request.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as err:  # as a job whose command cannot start
            worker.word, worker.reason, worker.returncode = "FAILED", str(err), 127
            return
        worker.pids.append(worker.process.pid)
        worker.started_at = time.monotonic()
        worker.word, worker.reason = "RUNNING", ""

    def _count_alive(self) -> None:
        words = collections.Counter(w.word for w in self._workers.values())
        self.max_alive = max(self.max_alive, sum(words[w] for w in ALIVE))
        self.max_running = max(self.max_running, sum(words[w] for w in IN_A_SLOT))

    def _control(self) -> None:
        """The controller: reap ended workers, start due ones, every 5 ms."""
        with self._cond:
            while not self._stopping:
                self._reap()
                self._start_due()
                self._cond.wait(0.005)


@contextlib.contextmanager
def pool(
    processes: int = 2,
    *,
    work_dir: str,
    scheduler: typing.Optional[FakeScheduler] = None,
    polling_interval: float = 0.05,
    **kwargs,
) -> typing.Iterator[ClusterPool]:
    """A :class:`~pypoolparty.core.pool.ClusterPool` on a fake scheduler.

    Its ``scheduler`` attribute is the fake; other keywords go to the pool.
    On leaving, the pool is terminated and the fake shut down: no worker
    outlives the block.
    """
    fake = scheduler if scheduler is not None else FakeScheduler()
    try:
        the_pool = ClusterPool(
            processes,
            scheduler=fake,
            work_dir=str(work_dir),
            polling_interval=polling_interval,
            **kwargs,
        )
        try:
            yield the_pool
        finally:
            the_pool.terminate()
    finally:
        fake.shutdown()
