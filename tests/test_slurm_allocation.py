"""
``pypoolparty.slurm.allocation`` on a real SLURM cluster of two nodes with
two CPUs each, started by this file (and stopped at its end).

A driver script runs inside one allocation (``sbatch -N 2 -n 4``) and maps
with ``allocation.Pool`` and ``allocation.Executor``. Its workers must be
job steps of that very allocation, on both nodes, with no other job
submitted, and nothing of them may outlive the driver: not after a normal
end, not after Ctrl-C (the driver cancels the steps itself), not after a
SIGKILL of the driver (the reaper does).
"""
import json
import os
import re
import signal
import subprocess
import textwrap

import pytest

import pypoolparty
from pypoolparty.testing.local_slurm import LocalSlurmCluster

from conftest import local_cluster, unique_name, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]

#: The user's script. argv: the mode and a directory where it meets the test.
DRIVER = textwrap.dedent(
    """\
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from pypoolparty.slurm import allocation

    mode, meet = sys.argv[1], sys.argv[2]
    # Ctrl-C as in a terminal: the batch script ignores SIGINT, this process must not.
    signal.signal(signal.SIGINT, signal.default_int_handler)


    def write(name, value):
        with open(os.path.join(meet, name + ".part"), "w") as f:
            json.dump(value, f)
        os.rename(os.path.join(meet, name + ".part"), os.path.join(meet, name))


    def steps():
        return subprocess.run(
            ["scontrol", "-o", "show", "step", os.environ["SLURM_JOB_ID"]],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ).stdout


    def together(x, meet, count=4, timeout=15):
        # Wait until `count` jobs have started (or `timeout`); how many did.
        open(os.path.join(meet, "started-{{:d}}".format(x)), "w").close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            started = [n for n in os.listdir(meet) if n.startswith("started-")]
            if len(started) >= count:
                break
            time.sleep(0.05)
        return len(started)


    def where(x, meet=None):
        at_once = together(x, meet) if meet else None
        time.sleep(0.3)
        queue = subprocess.run(
            ["squeue", "--noheader", "--format=%i"], stdout=subprocess.PIPE, text=True, check=True
        ).stdout.split()
        return dict(
            square=x * x, job=os.environ.get("SLURM_JOB_ID"), step=os.environ.get("SLURM_STEP_ID"),
            node=os.environ.get("SLURMD_NODENAME"), queue=queue, at_once=at_once,
        )


    def on_ranks(x):
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        return dict(
            size=comm.Get_size(), rank=comm.Get_rank(), total=comm.allreduce(x),
            job=os.environ.get("SLURM_JOB_ID"), step=os.environ.get("SLURM_STEP_ID"),
        )


    def hold(x, meet):
        open(os.path.join(meet, "running-{{:d}}".format(x)), "w").close()
        time.sleep(120)


    write("pid", [os.getpid(), os.getpgid(0)])
    if mode == "map":
        record = {{}}
        with allocation.Pool(job_name={name!r}) as pool:
            record["processes"] = pool._processes
            record["map"] = pool.starmap(where, [(x, meet) for x in range(8)], chunksize=1)
        # Six workers on four CPUs: two steps wait for a CPU.
        with allocation.Executor(max_workers=6, job_name={name!r}, verbose=True) as ex:
            futures = [ex.submit(where, i) for i in range(12)]
            record["executor"] = [f.result() for f in futures]
        # A call on two MPI ranks: one step of two tasks (on CPUs the
        # executor above no longer holds). On one node: PMIx's servers of
        # two slurmds on one machine would share a folder in /tmp.
        with allocation.Executor(max_workers=1, job_name={name!r}) as ex:
            mpi = {{"cores": 2, "slurm_cmd_args": ["--mpi=pmix", "--nodes=1"]}}
            record["mpi"] = ex.submit(on_ranks, 3, resource_dict=mpi).result()
        write("record", record)
    else:
        pool = allocation.Pool(processes=4, job_name={name!r}, verbose=True)
        try:
            pool.starmap(hold, [(x, meet) for x in range(4)], chunksize=1)
        except KeyboardInterrupt:
            # The moment the interrupt reaches the caller: what SLURM lists.
            write("steps", steps())
            while not os.path.exists(os.path.join(meet, "go")):
                time.sleep(0.05)
            raise
    """
)

#: The batch script: the driver, then wait until the test has looked.
BATCH = textwrap.dedent(
    """\
    #!/bin/bash
    trap "" INT
    python driver.py {mode} meet
    echo "driver exit status $?" >&2
    while [ ! -e meet/done ]; do sleep 0.1; done
    """
)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """2 nodes of 2 CPUs: an allocation of 4 CPUs spread over both."""
    cluster = LocalSlurmCluster(str(tmp_path_factory.mktemp("alloc")), num_nodes=2, cpus_per_node=2)
    with local_cluster(cluster, "SLURM cluster") as running:
        yield running


def worktree_env(cluster):
    """The environment of a job that imports the pypoolparty under test."""
    env = dict(os.environ)
    env["SLURM_CONF"] = cluster.slurm_conf
    root = os.path.dirname(os.path.dirname(os.path.abspath(pypoolparty.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    for key in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        del env[key]
    # Open MPI refuses to run as root without these (the MPI call's ranks).
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def slurm(argv, cluster, check=True):
    return subprocess.run(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=worktree_env(cluster), check=check
    )


class Allocation:
    """A driver script submitted as one batch job of 2 nodes and 4 tasks."""

    def __init__(self, cluster, tmp_path, mode):
        self.cluster = cluster
        self.name = unique_name(mode)
        self.dir = tmp_path
        self.meet = tmp_path / "meet"
        self.meet.mkdir()
        (tmp_path / "driver.py").write_text(DRIVER.format(name=self.name))
        (tmp_path / "batch.sh").write_text(BATCH.format(mode=mode))
        self.output = tmp_path / "batch.out"
        proc = slurm(
            ["sbatch", "--parsable", "-N", "2", "-n", "4", "--time=5", "--chdir=" + str(tmp_path),
             "--output=" + str(self.output), str(tmp_path / "batch.sh")],
            cluster,
        )
        self.job_id = int(proc.stdout.strip().split(";")[0])

    def read(self, name, timeout=60):
        path = self.meet / name
        assert wait_until(path.exists, timeout=timeout), "no {:s} from the driver: {:s}".format(
            name, self.log()
        )
        return json.loads(path.read_text())

    def log(self):
        return self.output.read_text() if self.output.exists() else "(no output yet)"

    def steps(self):
        """Each listed step of the pool's workers: (step id, state)."""
        proc = slurm(["scontrol", "-o", "show", "step", str(self.job_id)], self.cluster, check=False)
        return pool_steps(proc.stdout, self.name)

    def sruns(self):
        """srun processes of this machine that start steps in the allocation."""
        return sruns_of(self.job_id)

    def finish(self, timeout=30):
        """Let the batch script end; True once SLURM says it completed."""
        (self.meet / "done").touch()
        return wait_until(lambda: self.state() == "COMPLETED", timeout=timeout)

    def state(self):
        proc = slurm(["squeue", "--noheader", "--states=all", "--jobs=" + str(self.job_id), "--format=%T"],
                     self.cluster, check=False)
        return proc.stdout.strip()

    def clean_up(self):
        (self.meet / "done").touch()
        slurm(["scancel", str(self.job_id)], self.cluster, check=False)


def pool_steps(scontrol_output, name):
    steps = []
    for line in scontrol_output.splitlines():
        fields = dict(t.split("=", 1) for t in line.split() if "=" in t)
        if fields.get("Name") == name or (fields.get("State") == "PENDING" and "SrunHost:Pid" in fields):
            steps.append((fields["StepId"], fields["State"]))
    return steps


def sruns_of(job_id):
    """srun processes of this machine that lead a process group (srun forks a
    helper of its own) and start steps in allocation ``job_id``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/{:s}/cmdline".format(entry), "rb") as f:
                argv = f.read().split(b"\0")
            with open("/proc/{:s}/stat".format(entry)) as f:
                group = int(f.read().rsplit(")", 1)[1].split()[2])
        except (OSError, NotADirectoryError, IndexError, ValueError):
            continue
        srun = argv and os.path.basename(argv[0]) == b"srun"
        if srun and group == int(entry) and "--jobid={:d}".format(job_id).encode() in argv:
            found.append(int(entry))
    return found


@pytest.fixture
def allocation(two_nodes, tmp_path):
    made = []

    def submit(mode):
        made.append(Allocation(two_nodes, tmp_path, mode))
        return made[-1]

    yield submit
    for a in made:
        a.clean_up()


def test_pool_and_executor_run_as_steps_of_the_drivers_allocation_on_both_nodes(allocation, two_nodes, mpi):
    a = allocation("map")
    record = a.read("record")
    assert "driver exit status 0" in a.log() or wait_until(lambda: "driver exit status 0" in a.log(), 10), a.log()

    # processes=None: the allocation's CPUs, one per step.
    assert record["processes"] == 4
    assert [r["square"] for r in record["map"]] == [x * x for x in range(8)]
    assert [r["square"] for r in record["executor"]] == [x * x for x in range(12)]
    results = record["map"] + record["executor"]
    # Every worker was a step of the driver's own allocation ...
    assert {r["job"] for r in results} == {str(a.job_id)}
    assert all(r["step"] is not None and r["step"].isdigit() for r in results)
    assert len({r["step"] for r in record["map"]}) == 4
    # ... four at once (each step took one CPU, not a node's all), spread over both nodes ...
    assert [r["at_once"] for r in record["map"]][:4] == [4] * 4
    assert {r["node"] for r in record["map"]} == {"n1", "n2"}
    # ... and no job but the driver's was ever in the queue.
    assert all(r["queue"] == [str(a.job_id)] for r in results), [r["queue"] for r in results]
    # The MPI call ran on two ranks of one step of the same allocation.
    assert [(r["rank"], r["size"], r["total"]) for r in record["mpi"]] == [(0, 2, 6), (1, 2, 6)]
    assert {(r["job"], r["step"]) for r in record["mpi"]} == {(str(a.job_id), record["mpi"][0]["step"])}
    # Six workers on four CPUs: two steps were pending until CPUs were free
    # (verbose=True's line for a worker the scheduler reports PENDING).
    assert re.search(r"worker \S+ pending", a.log()), a.log()

    # Nothing left: no step of the pool, no srun; and the next job id is the
    # driver's plus one, so no job was submitted in between.
    assert a.steps() == []
    assert a.sruns() == []
    assert a.finish()
    probe = slurm(["sbatch", "--parsable", "--time=1", "--hold", "--wrap", "true"], two_nodes)
    probe_id = int(probe.stdout.strip().split(";")[0])
    slurm(["scancel", str(probe_id)], two_nodes, check=False)
    assert probe_id == a.job_id + 1


def wait_for_four_running_jobs(a):
    """Until four jobs run, each in a step of its own: a stop file no longer
    ends the workers, only a cancel does."""
    running = lambda: len(list(a.meet.glob("running-*"))) == 4  # noqa: E731
    assert wait_until(running, timeout=60), a.log()
    assert [s for _, s in a.steps()] == ["RUNNING"] * 4
    assert len(a.sruns()) == 4


def test_ctrl_c_cancels_the_steps_before_the_caller_sees_it(allocation):
    a = allocation("interrupt")
    pid, pgid = a.read("pid")
    wait_for_four_running_jobs(a)
    os.killpg(pgid, signal.SIGINT)  # as a terminal does: the driver's whole group
    listed = a.read("steps")
    # Still in the driver's except block: no atexit, no reaper yet.
    assert pool_steps(listed, a.name) == [], listed
    assert a.sruns() == []
    # The driver asked SLURM to cancel the running steps, and it could
    # (verbose=True's lines: the cancel, and no failed scancel).
    log = a.log()
    assert re.search(r"cancelling \d+ workers", log), log
    assert "scancel failed" not in log and "cancel_failed" not in log
    (a.meet / "go").touch()
    assert a.finish()
    assert "KeyboardInterrupt" in a.log()


def test_a_killed_drivers_steps_are_cancelled_by_the_reaper(allocation):
    a = allocation("kill")
    pid, _ = a.read("pid")
    wait_for_four_running_jobs(a)
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: a.steps() == [] and a.sruns() == [], timeout=20), (a.steps(), a.sruns())
    assert a.finish()
    assert "driver exit status 137" in a.log()
