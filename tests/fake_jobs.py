"""
Jobs for the fast tests of the core, and the helpers that steer them.

The workers import this module by name (the driver's ``sys.path`` travels in
the manifest), so its functions are pickled by reference.

Gated jobs make the timing of a test explicit: a gated job notes that it
started (``started-<job>-<pid>`` in the gate's folder), prints a line to the
worker's log and waits until the test opens the gate (the file ``go``).
"""
import functools
import os
import re
import threading
import time
import typing

#: A gated job gives up after this long, so that no worker waits forever.
GATE_TIMEOUT = 60.0


def square(x):
    return x * x


def add(a, b):
    return a + b


def negate(x):
    return -x


def fail_on(x, bad=3):
    if x == bad:
        raise ValueError("bad job", x)
    return x * x


def return_lock(x):
    """A value that cannot be pickled."""
    return threading.Lock()


def failing_initializer():
    raise RuntimeError("initializer failed on purpose")


def note_init(folder):
    """An initializer that leaves ``init-<pid>`` in ``folder``."""
    open(os.path.join(folder, "init-{:d}".format(os.getpid())), "w").close()


def pid_of_worker(x):
    """The worker process that ran the job."""
    return os.getpid()


def wait_for_gate(folder):
    """Wait until ``folder/go`` exists (at most GATE_TIMEOUT)."""
    deadline = time.monotonic() + GATE_TIMEOUT
    while not os.path.exists(os.path.join(folder, "go")):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.005)


def counted(x, folder, bad=(), gate=None):
    """``x * x``, leaving ``run-<x>-<random>`` in ``folder`` each time it runs
    (and first waiting for ``gate/go`` if a gate is given); jobs in ``bad``
    raise ValueError."""
    open(os.path.join(folder, "run-{:d}-{:s}".format(x, os.urandom(6).hex())), "w").close()
    if gate is not None:
        wait_for_gate(gate)
    if x in bad:
        raise ValueError("bad job", x)
    return x * x


def noisy_run(x, folder, gate=None, fail_while=None, gate_from=0):
    """One run of a decorated function: ``x`` plus draws of numpy's global
    generator; notes ``run-<run index>-<random>`` in ``folder``, waits for
    ``gate/go`` if a gate is given (runs from ``gate_from`` on), and raises
    in every third run while the file ``fail_while`` exists."""
    import numpy

    from pypoolparty.runs import current_run

    index = current_run().index
    open(os.path.join(folder, "run-{:d}-{:s}".format(index, os.urandom(6).hex())), "w").close()
    if gate is not None and index >= gate_from:
        wait_for_gate(gate)
    if fail_while is not None and os.path.exists(fail_while) and index % 3 == 0:
        raise ValueError("run failed", index)
    return {"value": x + numpy.random.random(), "vector": numpy.random.random(3)}


def runs_of(folder) -> typing.Dict[int, int]:
    """How often each job of :func:`counted` ran."""
    out: typing.Dict[int, int] = {}
    for name in os.listdir(folder):
        if name.startswith("run-"):
            job = int(name.split("-")[1])
            out[job] = out.get(job, 0) + 1
    return out


def slow_square(x, seconds=0.5):
    time.sleep(seconds)
    return x * x


def gated(x, folder, which=None, fail=(), fail_after_starts=0):
    """``x * x``, once ``folder/go`` exists (only jobs in ``which`` wait).

    Jobs in ``fail`` raise ValueError("bad job", x), once ``fail_after_starts``
    other jobs noted their start.
    """
    if x in fail:
        deadline = time.monotonic() + GATE_TIMEOUT
        while sum(n.startswith("started-") for n in os.listdir(folder)) < fail_after_starts:
            if time.monotonic() > deadline:
                raise TimeoutError("too few jobs started")
            time.sleep(0.005)
        raise ValueError("bad job", x)
    if which is None or x in which:
        open(os.path.join(folder, "started-{:d}-{:d}".format(x, os.getpid())), "w").close()
        print("job {:d} waits for the gate".format(x), flush=True)
        wait_for_gate(folder)
        open(os.path.join(folder, "done-{:d}-{:d}".format(x, os.getpid())), "w").close()
    return x * x


class Gate:
    """A folder that gated jobs of one test wait on."""

    def __init__(self, folder):
        self.folder = str(folder)
        os.makedirs(self.folder, exist_ok=True)

    def job(self, which: typing.Optional[typing.Iterable[int]] = None, fail=(), fail_after_starts=0):
        """The gated job function (only ``which`` jobs wait, if given)."""
        return functools.partial(
            gated,
            folder=self.folder,
            which=None if which is None else set(which),
            fail=set(fail),
            fail_after_starts=fail_after_starts,
        )

    def start_map(self, pool, jobs, started: int):
        """map_async of the gated job, one job a chunk; returns once
        ``started`` jobs wait at the gate."""
        res = pool.map_async(self.job(), jobs, chunksize=1)
        self.wait_started(started)
        return res

    def open(self) -> None:
        open(os.path.join(self.folder, "go"), "w").close()

    def marks(self, kind: str) -> typing.List[typing.Tuple[int, int]]:
        """(job, pid) of each ``"started"`` or ``"done"`` mark, sorted."""
        out = []
        for name in os.listdir(self.folder):
            m = re.fullmatch(kind + r"-(\d+)-(\d+)", name)
            if m:
                out.append((int(m.group(1)), int(m.group(2))))
        return sorted(out)

    def started(self) -> typing.List[int]:
        """Jobs that started, once per start."""
        return [job for job, _ in self.marks("started")]

    def wait_started(self, num: int, timeout: float = 10.0) -> typing.List[int]:
        """Wait until ``num`` job starts were noted; return the jobs."""
        assert wait_until(lambda: len(self.started()) >= num, timeout), (
            "only {} of {:d} job starts seen".format(self.started(), num)
        )
        return self.started()

    def pid_of(self, job: int) -> int:
        """The process that started ``job`` last."""
        return [pid for j, pid in self.marks("started") if j == job][-1]


def wait_until(predicate: typing.Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` every 10 ms; return whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def worker_of(fake, pid: int) -> str:
    """The id of the fake's worker that ran as process ``pid``."""
    (wid,) = [w for w in fake.worker_ids() if pid in fake.pids(w)]
    return wid


def pool_dirs(root) -> typing.List[str]:
    """The pools' folders in a work dir."""
    root = str(root)
    if not os.path.isdir(root):
        return []
    return sorted(
        os.path.join(root, n) for n in os.listdir(root) if n.startswith("pypoolparty-")
    )


def map_dirs(root) -> typing.List[str]:
    """The map folders in the pools' folders of a work dir."""
    return sorted(
        os.path.join(p, n) for p in pool_dirs(root) for n in os.listdir(p) if n.startswith("map-")
    )


def process_gone(pid: int) -> bool:
    """True if process ``pid`` ended (a zombie counts as ended)."""
    try:
        with open("/proc/{:d}/stat".format(pid)) as f:
            return f.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True
