"""
The progress bar (:mod:`pypoolparty.core.progress`), as a person sees it:
a script maps on a ``pypoolparty.processes.Pool`` (real detached worker
processes) with its stderr a pseudo-terminal, and the test reads what the
terminal got. The bar shows where a person watches and not in a pipe, not
with ``progress=False``, not for a map shorter than its delay; it counts the
jobs to the total, the workers and the resubmitted chunks; it closes however
its map ends, and an error of the bar never reaches the map.
"""
import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time

import pytest

import pypoolparty
import pypoolparty.processes
from fake_jobs import fail_on, gated, square, wait_until
from pypoolparty.core import progress
from pypoolparty.testing import fake

pytestmark = pytest.mark.timeout(90)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pypoolparty.__file__)))

#: The user's script: argv is work_dir, the bar's delay, progress= and the
#: jobs ("slow": 10 of 0.3 s; "die_once": job 3 ends its worker the first
#: time; "gated": each waits for the file ``go`` in work_dir, 20 s at most).
SCRIPT = textwrap.dedent(
    """\
    import os, sys, time
    import pypoolparty.processes
    from pypoolparty.core import progress

    work_dir, delay, setting, jobs = sys.argv[1:5]
    progress.DELAY = float(delay)

    def slow(x):
        time.sleep(0.3)
        return x * x

    def die_once(x):
        marker = os.path.join(work_dir, "died")
        if x == 3 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(3)
        time.sleep(0.3)
        return x * x

    def gated(x):
        go = os.path.join(work_dir, "go")
        deadline = time.monotonic() + 20
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                open(go, "w").close()  # nobody opened it: open it for all
            time.sleep(0.01)
        return x * x

    func = {"slow": slow, "die_once": die_once, "gated": gated}[jobs]
    with pypoolparty.processes.Pool(2, work_dir=work_dir, progress=eval(setting)) as pool:
        print(pool.map(func, range(10), chunksize=1), flush=True)
    """
)

SQUARES = str([x * x for x in range(10)])

#: The bar at its end: all jobs done, then tqdm's rate and our postfix.
FULL_BAR = re.compile(
    r"map-000001: 100%\|[^|]*\| 10/10 \[[0-9:]+<[0-9:]+, +[0-9.]+job/s, "
    r"(\d+) running, (\d+) pending, (\d+) resubmitted\]"
)

#: The bar of a map whose two workers run and have not finished a job.
WAITING_BAR = re.compile(r"map-000001: +0%\|[^|]*\| 0/10 \[.*, 2 running, 0 pending, 0 resubmitted\]")


def env():
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, out.get("PYTHONPATH")) if p)
    return {k: v for k, v in out.items() if not k.startswith("TQDM_")}


def run_script(tmp_path, delay, setting, jobs="slow", terminal=True, on_output=None, text=SCRIPT):
    """Run ``text`` (SCRIPT); return (stdout, what its stderr got). With
    ``terminal`` its stderr is a pseudo-terminal of 120 columns, else a pipe.
    ``on_output(work_dir, text)`` is called with what came so far each time
    more came."""
    script = tmp_path / "script.py"
    script.write_text(text)
    work = tmp_path / "work"
    work.mkdir()
    argv = [sys.executable, str(script), str(work), str(delay), setting, jobs]
    if not terminal:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env(), timeout=80)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout, proc.stderr
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env())
    os.close(slave)
    got = b""
    try:
        deadline = time.monotonic() + 80
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not data:
                    break
                got += data
                if on_output is not None:
                    on_output(work, got.decode(errors="replace"))
            elif proc.poll() is not None:
                break  # exited, and nothing more came
        stdout = proc.communicate(timeout=10)[0].decode()
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, got.decode(errors="replace")
    return stdout, got.decode(errors="replace")


def test_in_a_terminal_a_bar_counts_the_jobs_to_the_total_with_the_workers(tmp_path):
    stdout, terminal = run_script(tmp_path, delay=0.3, setting="None")
    assert stdout.strip() == SQUARES
    ends = FULL_BAR.findall(terminal)
    assert ends, terminal
    running, pending, resubmitted = map(int, ends[-1])
    assert running + pending <= 2 and resubmitted == 0
    # Drawn while it ran, too: the bar is live, not only a summary.
    assert re.search(r"map-000001: +\d+%\|[^|]*\| [1-9]/10 ", terminal), terminal


def test_the_bar_shows_before_any_job_is_done_and_counts_the_running_workers(tmp_path):
    seen = []

    def open_gate(work, text):
        # The workers run (a poll saw them), no job is done: the bar shows.
        if not seen and WAITING_BAR.search(text):
            seen.append(text)
            (work / "go").touch()

    stdout, terminal = run_script(tmp_path, delay=0.3, setting="None", jobs="gated", on_output=open_gate)
    assert seen, terminal
    assert stdout.strip() == SQUARES
    assert FULL_BAR.search(terminal), terminal


def test_a_chunk_whose_worker_died_counts_as_resubmitted(tmp_path):
    stdout, terminal = run_script(tmp_path, delay=0.3, setting="None", jobs="die_once")
    assert stdout.strip() == SQUARES
    ends = FULL_BAR.findall(terminal)
    assert ends and ends[-1][2] == "1", terminal


def test_with_stderr_a_pipe_there_is_no_bar(tmp_path):
    stdout, stderr = run_script(tmp_path, delay=0.3, setting="None", terminal=False)
    assert stdout.strip() == SQUARES
    assert stderr == ""


def test_progress_true_draws_the_bar_into_a_pipe_too(tmp_path):
    stdout, stderr = run_script(tmp_path, delay=0.3, setting="True", terminal=False)
    assert stdout.strip() == SQUARES
    assert FULL_BAR.search(stderr), stderr


def test_progress_false_shows_no_bar_in_a_terminal(tmp_path):
    stdout, terminal = run_script(tmp_path, delay=0.3, setting="False")
    assert stdout.strip() == SQUARES
    assert "map-000001" not in terminal and "10/10" not in terminal, terminal


def test_a_map_shorter_than_the_delay_shows_no_bar(tmp_path):
    stdout, terminal = run_script(tmp_path, delay=60, setting="None")
    assert stdout.strip() == SQUARES
    assert "map-000001" not in terminal and "/10" not in terminal, terminal


# ----------------------------------------------------- the bar and its map
class Bar:
    """Stands in for tqdm's bar; notes what the map did with it."""

    made = []

    def __init__(self, name, num_jobs, fail_in=None):
        self.name, self.total, self.n = name, num_jobs, 0
        self.leave = True
        self.closed = False
        self.postfix = ""
        self.fail_in = fail_in
        Bar.made.append(self)

    def update(self, num):
        if self.fail_in == "update":
            raise RuntimeError("the bar broke")
        self.n += num

    def set_postfix_str(self, text, refresh=True):
        self.postfix = text

    def close(self):
        self.closed = True


@pytest.fixture
def bars(monkeypatch):
    """The bars the maps make, each a :class:`Bar`."""
    Bar.made = []
    monkeypatch.setattr(progress, "new_bar", Bar)
    return Bar.made


def make_pool(tmp_path, **kwargs):
    return pypoolparty.processes.Pool(2, work_dir=str(tmp_path / "work"), progress=True, **kwargs)


def test_the_bar_closes_when_its_map_completes(tmp_path, bars):
    with make_pool(tmp_path) as pool:
        assert pool.map(square, range(6), chunksize=1) == [x * x for x in range(6)]
    (bar,) = bars
    assert bar.name == "map-000001" and bar.total == 6 and bar.n == 6
    assert bar.closed and bar.leave
    assert re.fullmatch(r"\d running, \d pending, 0 resubmitted", bar.postfix), bar.postfix


def test_the_bar_closes_and_stays_when_its_map_fails(tmp_path, bars):
    with make_pool(tmp_path) as pool:
        with pytest.raises(ValueError):
            pool.map(fail_on, range(6), chunksize=1)
    (bar,) = bars
    assert bar.closed and bar.leave  # where it stopped stays on screen


def test_the_bar_closes_when_its_map_is_cancelled(tmp_path, bars):
    gate = tmp_path / "gate"
    gate.mkdir()
    pool = make_pool(tmp_path)
    result = pool.starmap_async(gated, [(x, str(gate)) for x in range(4)], chunksize=1)
    wait_until(lambda: bars and not bars[0].closed)
    pool.terminate()
    with pytest.raises(pypoolparty.errors.CancelledError):
        result.get(timeout=30)
    (bar,) = bars
    assert bar.closed and bar.n == 0


def test_in_a_loop_of_maps_each_bar_is_cleared_at_its_end(tmp_path, bars):
    with make_pool(tmp_path) as pool:
        for _ in range(3):
            assert pool.map(square, range(4)) == [0, 1, 4, 9]
    assert [b.closed for b in bars] == [True] * 3
    assert [b.leave for b in bars] == [True, False, False]


def test_a_bar_that_breaks_is_dropped_and_the_map_goes_on(tmp_path, monkeypatch, bars):
    monkeypatch.setattr(progress, "new_bar", lambda name, num: Bar(name, num, fail_in="update"))
    with make_pool(tmp_path) as pool:
        assert pool.map(square, range(6), chunksize=1) == [x * x for x in range(6)]
        assert bars[0].closed  # the first update broke it: closed, then left alone

    def no_bar(name, num):
        raise RuntimeError("no bar today")

    monkeypatch.setattr(progress, "new_bar", no_bar)
    with make_pool(tmp_path) as pool:
        assert pool.map(square, range(6), chunksize=1) == [x * x for x in range(6)]


# ------------------------------------------------------------ the setting
def test_none_means_a_bar_where_a_person_watches(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.setattr(sys, "stderr", Stream(True))
    assert progress.wanted(None) and progress.wanted(True) and not progress.wanted(False)
    monkeypatch.setattr(sys, "stderr", Stream(False))
    assert not progress.wanted(None) and progress.wanted(True)


def test_every_pool_takes_progress_and_its_siblings_get_it(tmp_path):
    import pypoolparty.slurm
    import pypoolparty.slurm.allocation
    import pypoolparty.slurm.array
    import pypoolparty.sun_grid_engine
    import inspect

    for cls in (
        pypoolparty.slurm.array.Pool,
        pypoolparty.slurm.Pool,
        pypoolparty.slurm.allocation.Pool,
        pypoolparty.sun_grid_engine.Pool,
        pypoolparty.processes.Pool,
        pypoolparty.processes.Executor,
    ):
        assert inspect.signature(cls.__init__).parameters["progress"].default is None, cls
    for cls in (pypoolparty.slurm.array.Pool, pypoolparty.sun_grid_engine.Pool, pypoolparty.processes.Pool):
        pool = cls(1, work_dir=str(tmp_path), progress=False)
        assert pool._launcher.settings.map.progress is False
        pool.terminate()
    with fake.pool(1, work_dir=str(tmp_path), progress=True) as pool:
        sibling = pool._sibling(pool.scheduler)
        assert sibling._launcher.settings.map.progress is True
        sibling.terminate()


def test_the_local_pool_leaves_progress_out_and_says_so(monkeypatch, caplog):
    monkeypatch.setenv("PYPOOLPARTY_SCHEDULER", "local")
    with caplog.at_level("INFO", logger="pypoolparty"):
        with pypoolparty.Pool(1, progress=True) as pool:
            assert pool.map(square, [3]) == [9]
    assert "ignoring progress" in caplog.text
