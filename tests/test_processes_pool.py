"""
``pypoolparty.processes.Pool``: the core on detached local processes.

Results as the stdlib's; workers in sessions of their own that a
terminate ends (with what they started); states and cancel by id alone,
from another adapter and from the reaper's command; no signal for a pid
whose start or boot differs from its id's; the store; and the resume after
a driver killed with SIGKILL, each job run once.
"""
import dataclasses
import functools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import pypoolparty
import pypoolparty.processes
import test_cluster_store
from fake_jobs import counted, fail_on, process_gone, runs_of, square, wait_until
from pypoolparty.core import event_log
from pypoolparty.core.scheduler import SubmitRequest, WorkerState
from pypoolparty.processes.adapter import ProcessScheduler
from pypoolparty.processes.detached import ProcessId
from test_cluster_store import map_events, submitted

pytestmark = pytest.mark.timeout(90)

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pypoolparty.__file__)))


def make_pool(tmp_path, processes=2, **kwargs):
    return pypoolparty.processes.Pool(processes, work_dir=str(tmp_path / "work"), **kwargs)


def alive(worker_ids):
    """The ids a fresh adapter (as another driver's) reports running."""
    statuses = ProcessScheduler().states(worker_ids, event_log.EventLog())
    return sorted(w for w, s in statuses.items() if s.state is WorkerState.RUNNING)


def request(tmp_path, code, num=1):
    """Workers that run ``python -c code`` (their argv ends in the id)."""
    return SubmitRequest(
        num_workers=num,
        max_running=num,
        worker_argv=[sys.executable, "-c", code],
        name="test",
        log_dir=str(tmp_path),
        cwd=str(tmp_path),
        env={"PYPOOLPARTY_TEST_VALUE": "seen"},
    )


#: A worker that prints what it was given, then waits to be ended.
SHOW_AND_WAIT = (
    "import os, sys, time; "
    "print(sys.argv[-1], os.environ['PYPOOLPARTY_TEST_VALUE'], os.getcwd(), flush=True); "
    "time.sleep(60)"
)


@pytest.fixture
def spare_processes():
    """Processes a test starts outside any pool; killed at its end."""
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ results
def every_call(pool):
    """What each of the pool's ways to call gives."""
    return [
        pool.map(square, range(10)),
        pool.starmap(pow, [(2, 3), (3, 2)]),
        list(pool.imap(square, range(7), chunksize=2)),
        sorted(pool.imap_unordered(square, range(7))),
        pool.apply(pow, (2, 10)),
        pool.apply_async(divmod, (17, 5)).get(timeout=30),
    ]


def test_results_are_those_of_the_stdlib(tmp_path):
    with multiprocessing.get_context("forkserver").Pool(2) as stdlib:
        expected = every_call(stdlib)
    with make_pool(tmp_path) as pool:
        assert every_call(pool) == expected
        with pytest.raises(ValueError, match="bad job"):
            pool.map(fail_on, range(5))


def test_the_default_processes_are_the_cpus_this_process_may_use(tmp_path):
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # fewer than the machine has, if it has more
    try:
        pool = make_pool(tmp_path, processes=None)
    finally:
        os.sched_setaffinity(0, cpus)
    pool.terminate()
    assert pool._processes == 1


# ---------------------------------------------------------------- processes
def note_and_wait(x, folder):
    """Start a child (``sleep``), note (job, own pid, session, child pid),
    wait until the test ends this worker."""
    child = subprocess.Popen(["sleep", "60"])
    with open(os.path.join(folder, ".job-{:d}".format(x)), "w") as f:
        json.dump([x, os.getpid(), os.getsid(0), child.pid], f)
    os.rename(f.name, os.path.join(folder, "job-{:d}".format(x)))  # whole when seen
    time.sleep(60)
    return x


def test_workers_are_sessions_of_their_own_and_terminate_ends_them_all(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    pool = make_pool(tmp_path)
    pool.map_async(functools.partial(note_and_wait, folder=str(notes)), range(2), chunksize=1)
    assert wait_until(lambda: len(list(notes.glob("job-*"))) == 2, timeout=30)
    marks = [json.loads(path.read_text()) for path in notes.glob("job-*")]
    processes = [ProcessId.of(p) for _, pid, _, child in marks for p in (pid, child)]
    try:
        ids = submitted(pool._pool_dir.path)
        assert sorted(ProcessId.parse(w).pid for w in ids) == sorted(pid for _, pid, _, _ in marks)
        for _, pid, session, _ in marks:
            assert session == pid != os.getsid(0)  # each leads a session of its own
        started = time.monotonic()
        pool.terminate()
        assert time.monotonic() - started < 3  # SIGTERM sufficed, no grace waited
        for _, pid, _, child in marks:
            assert process_gone(pid) and process_gone(child)
    finally:
        pool.terminate()
        for p in processes:  # should the test fail: none left behind
            p.signal(signal.SIGKILL)


def test_states_and_cancel_by_id_alone_from_another_adapter(tmp_path):
    first = ProcessScheduler()
    log = event_log.EventLog()
    ids = first.submit(request(tmp_path, SHOW_AND_WAIT, num=2), log)
    for wid in ids:
        # The worker got the id the adapter returned, the request's
        # environment and working directory, and its log is named by its id.
        assert wait_until(lambda: (tmp_path / (wid + ".log")).read_text().strip() != "")
        assert (tmp_path / (wid + ".log")).read_text().split() == [wid, "seen", str(tmp_path)]
    other = ProcessScheduler()
    assert alive(ids) == sorted(ids)
    other.cancel(ids[:1], log)
    statuses = other.states(ids, log)
    assert statuses[ids[0]].state is WorkerState.ENDED
    assert statuses[ids[1]].state is WorkerState.RUNNING
    # The reaper's way: the cancel command, run by a process of its own
    # with an environment that does not name pypoolparty.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for argv in other.cancel_commands(ids[1:]):
        subprocess.run(argv, env=env, cwd="/", check=True, timeout=30)
    assert alive(ids) == []
    # The adapter that started them knows how they ended.
    assert {first.states(ids, log)[w].scheduler_state for w in ids} == {"KILLED"}
    assert all(process_gone(ProcessId.parse(w).pid) for w in ids)


def test_the_starting_adapter_tells_an_exit_code_another_cannot(tmp_path):
    first = ProcessScheduler()
    log = event_log.EventLog()
    (wid,) = first.submit(request(tmp_path, "import sys; sys.exit(3)"), log)
    assert wait_until(lambda: first.states([wid], log)[wid].state is WorkerState.ENDED)
    status = first.states([wid], log)[wid]
    assert (status.scheduler_state, status.reason) == ("FAILED", "exit code 3")
    assert first.describe(wid, log) == "process {:d} on {:s}".format(
        ProcessId.parse(wid).pid, ProcessId.parse(wid).host
    )
    assert ProcessScheduler().states([wid], log)[wid].scheduler_state == "EXITED"


def test_workers_over_max_running_are_started_and_logged(tmp_path):
    log = event_log.EventLog(str(tmp_path / "log.jsonl"))
    over = dataclasses.replace(request(tmp_path, "pass", num=2), max_running=1)
    ids = ProcessScheduler().submit(over, log)
    log.close()
    assert len(set(ids)) == 2
    (warning,) = [e for e in event_log.read(str(tmp_path / "log.jsonl")) if e["event"] == "over_budget"]
    assert (warning["workers"], warning["max_running"]) == (2, 1)


def test_a_pid_of_another_start_boot_or_host_is_neither_alive_nor_signalled(tmp_path, spare_processes):
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    spare_processes.append(proc)
    real = ProcessId.of(proc.pid)
    other_boot = ("1" if real.boot[:1] != "1" else "2") + real.boot[1:]
    # The same pid: started later (reused), or in an earlier boot of this host.
    ended = [str(real._replace(start=real.start + 1)), str(real._replace(boot=other_boot))]
    elsewhere = str(real._replace(host="another-" + real.host, boot=other_boot))
    adapter = ProcessScheduler(grace=0.1)
    log = event_log.EventLog()
    statuses = adapter.states(ended + [elsewhere, str(real)], log)
    assert statuses[str(real)].state is WorkerState.RUNNING
    assert [statuses[w].state for w in ended] == [WorkerState.ENDED] * 2
    assert elsewhere not in statuses  # unknown: this host cannot see it
    adapter.cancel(ended + [elsewhere], log)
    subprocess.run(adapter.cancel_commands(ended + [elsewhere])[0], check=True, timeout=30)
    time.sleep(0.2)
    assert proc.poll() is None  # neither SIGTERM nor SIGKILL reached it
    adapter.cancel([str(real)], log)
    assert proc.wait(timeout=5) == -signal.SIGTERM


# -------------------------------------------------------------------- store
def pool_submissions(pool):
    """Worker ids the pool's log records as submitted (none if it made no folder)."""
    return [] if pool._pool_dir is None else submitted(pool._pool_dir.path)


def test_a_stored_map_returns_with_no_submission(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    f = functools.partial(counted, folder=str(runs))
    with make_pool(tmp_path, cache_dir=str(tmp_path / "store")) as pool:
        assert pool.map(f, range(6)) == [x * x for x in range(6)]
        assert len(pool_submissions(pool)) >= 1
    with make_pool(tmp_path, cache_dir=str(tmp_path / "store")) as pool:
        assert pool.map(f, range(6)) == [x * x for x in range(6)]
        assert pool_submissions(pool) == []
    assert runs_of(runs) == {x: 1 for x in range(6)}


# ------------------------------------------------------------------- resume
#: The user's script: one map of ``counted`` jobs, with or without a store.
DRIVER = textwrap.dedent(
    """\
    import functools
    import json
    import sys

    import fake_jobs
    import pypoolparty.core.event_log
    import pypoolparty.processes

    store, work, runs, gate, out, num_jobs = sys.argv[1:]
    pool = pypoolparty.processes.Pool(2, cache_dir=store or None, work_dir=work)
    job = functools.partial(fake_jobs.counted, folder=runs, gate=gate)
    results = pool.map(job, range(int(num_jobs)), chunksize=1)
    events = pypoolparty.core.event_log.read(pool._pool_dir.log_path)
    submitted = [e["workers"] for e in events if e["event"] == "submitted"]
    pool.close()
    pool.join()
    with open(out, "w") as f:
        json.dump({"results": results, "submitted": submitted}, f)
    """
)


class Call(test_cluster_store.Call):
    """The same call of the user's script on a processes pool, run as
    processes of its own, each in a session of its own."""

    def __init__(self, tmp_path, store=True, num_jobs=6):
        super().__init__("processes", tmp_path, num_jobs)
        self.store = str(tmp_path / "store") if store else ""
        self.script.write_text(DRIVER)

    def start(self, name):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, TESTS, env.get("PYTHONPATH")) if p)
        argv = [sys.executable, str(self.script), self.store] + [
            str(self.tmp / n) for n in ("work", "runs", "gate", name + ".json")
        ] + [str(self.num_jobs)]
        with open(str(self.tmp / (name + ".stderr")), "w") as stderr:
            proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=stderr, cwd=str(self.tmp), env=env,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def stderr(self, name):
        return (self.tmp / (name + ".stderr")).read_text()

    def started_and_killed(self, name):
        """Start the script; once two jobs wait at the gate, SIGKILL its
        process group, as a closed terminal or a dropped ssh session would.
        Returns the dead pool's folder and its workers."""
        proc = self.start(name)
        assert wait_until(lambda: len(runs_of(self.tmp / "runs")) == 2, timeout=30), self.stderr(name)
        (pool_dir,) = self.pool_dirs()
        workers = submitted(pool_dir)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return pool_dir, workers

    def end_all(self):
        """Kill the scripts; end every worker their pools' logs name."""
        self.kill_all()
        logs = [d for d in self.pool_dirs() if os.path.exists(os.path.join(d, "log.jsonl"))]
        workers = [w for d in logs for w in submitted(d)]
        ProcessScheduler(grace=1.0).cancel(workers, event_log.EventLog())


def test_a_killed_driver_is_resumed_and_each_job_runs_once(tmp_path):
    call = Call(tmp_path)
    try:
        dead_pool, workers = call.started_and_killed("first")
        assert len(workers) == 2
        # With a store the reaper lets the workers finish instead of
        # ending them: they still run, waiting at the gate.
        assert wait_until(lambda: os.path.exists(os.path.join(dead_pool, "open", "closed")), timeout=10)
        assert alive(workers) == sorted(workers)

        again = call.start("again")
        assert wait_until(
            lambda: any(e["event"] == "adopted" for e in map_events(dead_pool)), timeout=30
        ), call.stderr("again")
        call.open_gate()
        out = call.outcome(again, "again", timeout=60)
        assert out["results"] == [x * x for x in range(6)]
        assert runs_of(tmp_path / "runs") == {x: 1 for x in range(6)}
        # The dead driver's workers ran it all: the second made no submission.
        assert out["submitted"] == []
        assert wait_until(lambda: alive(workers) == [], timeout=30)
    finally:
        call.end_all()


def test_without_a_store_the_reaper_ends_a_killed_drivers_workers(tmp_path):
    call = Call(tmp_path, store=False)
    try:
        _, workers = call.started_and_killed("first")
        assert len(workers) == 2
        assert wait_until(lambda: alive(workers) == [], timeout=15)
        assert all(process_gone(ProcessId.parse(w).pid) for w in workers)
    finally:
        call.end_all()
