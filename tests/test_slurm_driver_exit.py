"""
How a driver's end cancels its jobs on the real SLURM, each way on its own:

* Ctrl-C: the map cancels its jobs before the KeyboardInterrupt reaches
  the caller (seen while the driver still runs, so neither ``atexit`` nor
  the reaper can have done it);
* a normal exit with a map still running: ``atexit`` cancels (the reaper is
  killed first, so it cannot);
* SIGKILL or SIGTERM: the process dies without running ``atexit``, so only
  the reaper can cancel.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import pypoolparty

from conftest import squeue_names, unique_name, wait_until

#: A user's script: a map of six 300 s jobs, two at a time. argv: the mode
#: and a directory where it meets the test.
DRIVER = textwrap.dedent(
    """\
    import faulthandler
    import os
    import signal
    import subprocess
    import sys
    import time

    import pypoolparty.slurm.array

    mode, meet = sys.argv[1], sys.argv[2]
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # stacks, should it hang
    # Ctrl-C as in a terminal, also where the tests run in the background
    # (there SIGINT is ignored, and so it would be in this process too).
    signal.signal(signal.SIGINT, signal.default_int_handler)


    def wait_for(name):
        while not os.path.exists(os.path.join(meet, name)):
            time.sleep(0.05)


    def write(name, text):
        with open(os.path.join(meet, name + ".part"), "w") as f:
            f.write(text)
        os.rename(os.path.join(meet, name + ".part"), os.path.join(meet, name))


    pool = pypoolparty.slurm.array.Pool(
        processes=2, job_name={name!r}, verbose=True,
        sbatch_options={{"time": "00:10:00"}}, polling_interval=1.0,
    )
    if mode == "ctrl-c":
        try:
            pool.map(time.sleep, [300] * 6, chunksize=1)
        except KeyboardInterrupt:
            # The moment the interrupt reaches the caller: what SLURM says.
            queue = subprocess.run(
                ["squeue", "--noheader", "--array", "--states=all",
                 "--name={name}", "--format=%i %T"],
                stdout=subprocess.PIPE, text=True, check=True,
            ).stdout
            write("queue", queue)
            wait_for("go")
            raise
    elif mode == "exit":
        pool.map_async(time.sleep, [300] * 6, chunksize=1)
        wait_for("go")  # then ends, the map still running
    else:
        pool.map(time.sleep, [300] * 6, chunksize=1)
    """
)


def worktree_env():
    """This process's environment, importing the pypoolparty under test."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(pypoolparty.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class Driver:
    """The user's script, run as a process of its own."""

    def __init__(self, tmp_path, mode):
        self.name = unique_name(mode)
        self.meet = tmp_path / "meet"
        self.meet.mkdir()
        script = tmp_path / "driver.py"
        script.write_text(DRIVER.format(name=self.name))
        self.stderr = tmp_path / "driver.stderr"  # a file: a full pipe would block it
        with open(self.stderr, "w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), mode, str(self.meet)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=str(tmp_path),
                env=worktree_env(),
            )

    def running_tasks(self):
        return [i for i, s in squeue_names(self.name) if s == "RUNNING"]

    def wait_until_both_tasks_run(self):
        assert wait_until(lambda: len(self.running_tasks()) == 2, timeout=60), (
            "the map never ran"
        )
        return self.running_tasks()

    def release(self):
        (self.meet / "go").touch()

    def finish(self, timeout=30):
        """Wait for the driver's end (after ``timeout``: its stacks, then kill it); its stderr."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
            self.proc.kill()
            self.proc.wait()
        return self.stderr.read_text()

    def queue_is_empty(self, timeout):
        return wait_until(lambda: squeue_names(self.name) == [], timeout=timeout)

    def clean_up(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["scancel", "--name=" + self.name], check=False)


@pytest.fixture
def driver(slurm, tmp_path):
    made = []

    def start(mode):
        made.append(Driver(tmp_path, mode))
        return made[-1]

    yield start
    for d in made:
        d.clean_up()


def reaper_of(pid):
    """Pids of the reaper processes that ``pid`` started."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/{:s}/stat".format(entry)) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/{:s}/cmdline".format(entry), "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"pypoolparty.core.reaper" in argv:
            found.append(int(entry))
    return found


def test_ctrl_c_cancels_the_maps_jobs_before_the_caller_sees_it(driver):
    d = driver("ctrl-c")
    running = d.wait_until_both_tasks_run()
    d.proc.send_signal(signal.SIGINT)
    snapshot = wait_until(lambda: (d.meet / "queue").exists(), timeout=60)
    assert snapshot, d.finish(timeout=0)
    # The driver still waits in its except block: no atexit, no reaper yet.
    assert d.proc.poll() is None
    states = dict(line.split() for line in (d.meet / "queue").read_text().splitlines())
    assert set(running) <= set(states)
    assert set(states.values()) <= {"CANCELLED", "COMPLETING"}, states
    assert d.queue_is_empty(timeout=10)
    assert d.proc.poll() is None
    d.release()
    stderr = d.finish()
    assert d.proc.returncode != 0
    assert "KeyboardInterrupt" in stderr


def test_a_normal_exit_cancels_what_still_runs_by_atexit(driver):
    d = driver("exit")
    d.wait_until_both_tasks_run()
    reapers = reaper_of(d.proc.pid)
    assert len(reapers) == 1, "the pool started no reaper to rule out"
    os.kill(reapers[0], signal.SIGKILL)
    assert wait_until(lambda: reaper_of(d.proc.pid) == [], timeout=10)
    d.release()
    stderr = d.finish()
    assert d.proc.returncode == 0, stderr
    assert d.queue_is_empty(timeout=10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_driver_leaves_its_jobs_to_the_reaper(driver, sig):
    d = driver("killed")
    d.wait_until_both_tasks_run()
    d.proc.send_signal(sig)
    d.finish()
    assert d.proc.returncode == -sig  # died of the signal: no atexit ran
    assert d.queue_is_empty(timeout=15)
