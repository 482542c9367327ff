"""
The store on the real schedulers: a driver killed with SIGKILL in the middle
of a map leaves its workers running; the same call run again adopts them,
collects what they finished, submits nothing for the chunks they run, and
each job runs exactly once. Two drivers on one store run each job once.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import pypoolparty
from conftest import wait_until
from fake_jobs import runs_of
from pool_kinds import CLUSTER_POOLS, with_marks
from pypoolparty.core import event_log

pytestmark = pytest.mark.timeout(300)

TESTS = os.path.dirname(os.path.abspath(__file__))

#: The user's script: one map of ``counted`` jobs with a store.
DRIVER = textwrap.dedent(
    """\
    import functools
    import json
    import sys

    import fake_jobs
    import pypoolparty.core.event_log
    import pypoolparty.slurm
    import pypoolparty.slurm.array
    import pypoolparty.sun_grid_engine

    kind, options, store, work, runs, gate, out, num_jobs = sys.argv[1:]
    cls = {
        "slurm.array": pypoolparty.slurm.array.Pool,
        "slurm": pypoolparty.slurm.Pool,
        "sun_grid_engine": pypoolparty.sun_grid_engine.Pool,
    }[kind]
    pool = cls(2, cache_dir=store, work_dir=work, polling_interval=1.0, **json.loads(options))
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


@pytest.fixture(params=with_marks(list(CLUSTER_POOLS)))
def kind(request):
    request.getfixturevalue(CLUSTER_POOLS[request.param][1])
    return request.param


class Call:
    """The same call of the user's script, run as processes of its own."""

    def __init__(self, kind, tmp_path, num_jobs=6):
        self.kind = kind
        self.tmp = tmp_path
        self.num_jobs = num_jobs
        for sub in ("runs", "gate", "work"):
            (tmp_path / sub).mkdir(exist_ok=True)
        self.script = tmp_path / "driver.py"
        self.script.write_text(DRIVER)
        self.procs = []

    def start(self, name):
        root = os.path.dirname(os.path.dirname(os.path.abspath(pypoolparty.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, TESTS, env.get("PYTHONPATH")) if p)
        options = {k: dict(v) for k, v in CLUSTER_POOLS[self.kind][2].items()}
        argv = [
            sys.executable, str(self.script), self.kind, json.dumps(options),
            str(self.tmp / "store"), str(self.tmp / "work"), str(self.tmp / "runs"),
            str(self.tmp / "gate"), str(self.tmp / (name + ".json")), str(self.num_jobs),
        ]
        with open(self.tmp / (name + ".stderr"), "w") as stderr:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, cwd=str(self.tmp), env=env)
        self.procs.append(proc)
        return proc

    def open_gate(self):
        (self.tmp / "gate" / "go").touch()

    def outcome(self, proc, name, timeout=180):
        proc.wait(timeout=timeout)
        stderr = (self.tmp / (name + ".stderr")).read_text()
        assert proc.returncode == 0, stderr
        with open(self.tmp / (name + ".json")) as f:
            return json.load(f)

    def pool_dirs(self):
        work = self.tmp / "work"
        return sorted(str(work / d) for d in os.listdir(str(work)) if d.startswith("pypoolparty-"))

    def kill_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def submitted(pool_dir):
    """Worker ids of every submission a pool's log records."""
    events = event_log.read(os.path.join(pool_dir, "log.jsonl"))
    return [w for e in events if e["event"] == "submitted" for w in e["workers"]]


def alive(kind, ids):
    """The ids the scheduler reports pending or running."""
    pool = CLUSTER_POOLS[kind][0](1)
    try:
        statuses = pool.scheduler.states(ids, event_log.EventLog())
    finally:
        pool.terminate()
    return [w for w in ids if w in statuses and statuses[w].state.is_alive]


def test_a_killed_driver_is_resumed_and_each_job_runs_once(kind, tmp_path):
    call = Call(kind, tmp_path)
    try:
        first = call.start("first")
        assert wait_until(lambda: len(runs_of(tmp_path / "runs")) == 2, timeout=120), (
            (tmp_path / "first.stderr").read_text()
        )
        (dead_pool,) = call.pool_dirs()
        workers = submitted(dead_pool)
        first.send_signal(signal.SIGKILL)
        first.wait()
        # With a store the reaper lets the workers finish instead of
        # cancelling them: they still run, waiting at the gate.
        assert wait_until(lambda: os.path.exists(os.path.join(dead_pool, "open", "closed")), timeout=10)
        assert sorted(alive(kind, workers)) == sorted(workers)

        again = call.start("again")
        assert wait_until(
            lambda: any(e["event"] == "adopted" for e in map_events(dead_pool)), timeout=60
        ), (tmp_path / "again.stderr").read_text()
        call.open_gate()
        out = call.outcome(again, "again")
        assert out["results"] == [x * x for x in range(6)]
        assert runs_of(tmp_path / "runs") == {x: 1 for x in range(6)}
        # The dead driver's workers ran it all: the second made no submission.
        assert out["submitted"] == []
        assert wait_until(lambda: alive(kind, workers) == [], timeout=30)
    finally:
        call.kill_all()


def map_events(pool_dir):
    """Events of the maps in a pool dir (the adopted one logs its adoption)."""
    out = []
    for name in os.listdir(pool_dir):
        path = os.path.join(pool_dir, name, "log.jsonl")
        if name.startswith("map-") and os.path.exists(path):
            out += event_log.read(path)
    return out


def test_two_drivers_on_one_store_run_each_job_once(kind, tmp_path):
    call = Call(kind, tmp_path, num_jobs=4)
    try:
        a = call.start("a")
        assert wait_until(lambda: len(runs_of(tmp_path / "runs")) == 2, timeout=120)
        b = call.start("b")
        assert wait_until(lambda: len(call.pool_dirs()) == 2, timeout=30)
        call.open_gate()
        out_a, out_b = call.outcome(a, "a"), call.outcome(b, "b")
        assert out_a["results"] == out_b["results"] == [x * x for x in range(4)]
        assert runs_of(tmp_path / "runs") == {x: 1 for x in range(4)}
        assert len(out_a["submitted"]) == 1 and out_b["submitted"] == []
    finally:
        call.kill_all()


#: The decorator flow: argv kind, options, path, folder, gate, action, out.
DECORATED = textwrap.dedent(
    """\
    import json
    import sys
    import time
    import warnings

    import fake_jobs
    import pypoolparty
    import pypoolparty.slurm
    import pypoolparty.slurm.array
    import pypoolparty.sun_grid_engine

    kind, options, path, folder, gate, action, out = sys.argv[1:]
    cls = {
        "slurm.array": pypoolparty.slurm.array.Pool,
        "slurm": pypoolparty.slurm.Pool,
        "sun_grid_engine": pypoolparty.sun_grid_engine.Pool,
    }[kind]
    options = json.loads(options)
    settings = dict(N_runs=6, N_tasks=2, path=path, seed=11, pool=cls, **options.get("sbatch_options", {}))
    average = pypoolparty.parallel_average(**settings)(fake_jobs.noisy_run)
    runs = pypoolparty.parallel(**settings)(fake_jobs.noisy_run)


    def call(f):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = f(1.0, folder, gate=gate, gate_from=3)
        return result, [str(w.message) for w in caught]


    report = {}
    if action == "first":
        result, report["warnings"] = call(average)
        report["result"] = repr(result)
    elif action == "partial":
        result, report["warnings"] = call(average)
        report["mean"] = float(result["value"])
        report["num_runs"] = result.num_runs
    else:
        getattr(pypoolparty, action)(average)(1.0, folder, gate=gate, gate_from=3)
        deadline = time.monotonic() + 150
        while True:
            result, said = call(average)
            if not said or time.monotonic() > deadline:
                break
            time.sleep(1)
        report["warnings"] = said
        report["mean"] = float(result["value"])
        report["variance"] = float(result["value"].variance)
        report["error"] = float(result["value"].estimated_error)
        values, _ = call(runs.dont_submit)
        report["values"] = [r["value"] for r in values]
    with open(out, "w") as f:
        json.dump(report, f)
    """
)


def test_the_decorator_flow_survives_its_driver_and_re_submits_a_killed_run(kind, tmp_path):
    import numpy

    from fake_jobs import noisy_run
    from pypoolparty.runs import seeding

    script = tmp_path / "decorated.py"
    script.write_text(DECORATED)
    for sub in ("marks", "gate"):
        (tmp_path / sub).mkdir()
    root = os.path.dirname(os.path.dirname(os.path.abspath(pypoolparty.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, TESTS, env.get("PYTHONPATH")) if p)
    options = json.dumps({k: dict(v) for k, v in CLUSTER_POOLS[kind][2].items()})

    def run(action):
        out = tmp_path / (action + ".json")
        proc = subprocess.run(
            [sys.executable, str(script), kind, options, str(tmp_path / "project"),
             str(tmp_path / "marks"), str(tmp_path / "gate"), action, str(out)],
            cwd=str(tmp_path), env=env, stderr=subprocess.PIPE, text=True, timeout=240,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(out.read_text())

    first = run("first")
    assert first["result"] == "None"
    assert first["warnings"] == ["pypoolparty: 6 / 6 runs of noisy_run are not ready yet"]
    # The driver is gone; its workers go on: runs 0 to 2 finish, 3 and 4
    # wait at the gate, and one of their workers is killed.
    assert wait_until(lambda: len(runs_of(tmp_path / "marks")) == 5, timeout=120)
    work = tmp_path / "project" / "pypoolparty-parallel" / "work"
    (pool_dir,) = [str(work / d) for d in os.listdir(str(work)) if d.startswith("pypoolparty-")]
    workers = submitted(pool_dir)
    assert sorted(alive(kind, workers)) == sorted(workers)
    pool = CLUSTER_POOLS[kind][0](1)
    try:
        pool.scheduler.cancel(workers[:1], event_log.EventLog())
    finally:
        pool.terminate()
    assert wait_until(lambda: alive(kind, workers[:1]) == [], timeout=60)
    os.makedirs(str(tmp_path / "local"))
    local = [
        seeding.run_function(noisy_run, i, s, (1.0, str(tmp_path / "local")))
        for i, s in enumerate(seeding.run_seeds(11, 6))
    ]
    values = numpy.array([r["value"] for r in local])

    # Another session: the runs finished so far, with the warning.
    partial = run("partial")
    assert partial["warnings"] == ["pypoolparty: 3 / 6 runs of noisy_run are not ready yet"]
    assert partial["num_runs"] == 3
    assert partial["mean"] == pytest.approx(values[:3].mean(), rel=1e-12)

    (tmp_path / "gate" / "go").touch()
    again = run("re_submit")
    assert again["warnings"] == []
    assert again["values"] == list(values)
    assert again["mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert again["variance"] == pytest.approx(values.var(ddof=1), rel=1e-12)
    assert again["error"] == pytest.approx(values.std(ddof=1) / numpy.sqrt(6), rel=1e-12)
    runs = runs_of(tmp_path / "marks")
    assert sorted(runs) == list(range(6)) and sum(runs.values()) == 7  # the killed run twice
    assert wait_until(lambda: alive(kind, workers) == [], timeout=60)


def test_a_damaged_store_file_is_a_clear_error_and_loses_nothing_else(kind, tmp_path):
    import functools

    from fake_jobs import counted
    from pypoolparty import errors

    cls, _, options = CLUSTER_POOLS[kind]
    options = {k: dict(v) for k, v in options.items()}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = functools.partial(counted, folder=str(tmp_path / "a"))
    b = functools.partial(counted, folder=str(tmp_path / "b"))
    store = tmp_path / "store"
    with cls(2, cache_dir=str(store), work_dir=str(tmp_path / "w"), polling_interval=1.0, **options) as pool:
        assert pool.map(a, range(4)) == pool.map(b, range(4)) == [0, 1, 4, 9]
    shelf_of_a = [d for d in os.listdir(str(store)) if os.path.isdir(str(store / d))
                  and "counted" in (store / d / "function.json").read_text()]
    batches = sorted(str(store / d / n) for d in shelf_of_a for n in os.listdir(str(store / d)) if n.endswith(".pickle"))
    (store / "notes.txt").write_text("a stranger's file")  # ignored: not in a shelf
    with open(batches[0], "wb") as f:
        f.write(b"\x80\x04 truncated")
    with cls(2, cache_dir=str(store), work_dir=str(tmp_path / "w"), polling_interval=1.0, **options) as pool:
        outcomes = []
        for f in (a, b):
            try:
                outcomes.append(pool.map(f, range(4)))
            except errors.StoreError as err:
                assert batches[0] in str(err) and "Remove it" in str(err)
                outcomes.append("error")
        assert sorted(map(str, outcomes)) == ["[0, 1, 4, 9]", "error"]
        assert pool._pool_dir is None  # no map was needed: nothing submitted
