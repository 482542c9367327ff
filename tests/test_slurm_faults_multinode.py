"""
Faults of real SLURM clusters that this file starts itself: a node that
fails (with and without SLURM's requeue), a time limit, a memory limit (by
cgroups, v1 or v2, and by SLURM's own OverMemoryKill, which needs none).
Each map must end within a bounded time, with the right results or with a
JobsLostError that names SLURM's cause, and must leave nothing of the pool
in the queue.

Each cluster is a LocalSlurmCluster in a tmp dir of its own (own ports,
own daemons), stopped at the end of the module whatever happened.
"""
import functools
import json
import os
import random
import time
import uuid

import pytest

from pypoolparty import errors
from pypoolparty.core import event_log
from pypoolparty.testing.local_slurm import SCHEDULER_PARAMETERS, LocalSlurmCluster
from pypoolparty.slurm.array import Pool

from conftest import local_cluster, squeue_names, unique_name, use_slurm, wait_until
from fake_jobs import map_dirs

#: What makes a node failure quick (see clusters.md): NODE_FAIL ~10 s after
#: the node stops answering; a node set down stays down until resumed. A
#: requeued job may start cred_expire+1 s (11 s) later, but only a
#: scheduling pass starts it: SLURM's are 60 s (main) and 30 s (backfill)
#: apart.
FAST_NODE_FAILURE = {
    "SlurmdTimeout": "3",
    "MessageTimeout": "2",
    "ReturnToService": "1",
    "AuthInfo": "cred_expire=10",
    "SchedulerParameters": SCHEDULER_PARAMETERS + ",sched_interval=2,bf_interval=2",
}

CGROUP_V1_MEMORY = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
CGROUP_V2_CONTROLLERS = "/sys/fs/cgroup/cgroup.controllers"

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]


# ----------------------------------------------------------------------
# clusters


@pytest.fixture(scope="module")
def multinode(tmp_path_factory):
    """3 nodes of 1 CPU each: a node's failure hits exactly one worker."""
    cluster = LocalSlurmCluster(
        str(tmp_path_factory.mktemp("nodes")),
        num_nodes=3,
        cpus_per_node=1,
        extra_config=dict(FAST_NODE_FAILURE),
    )
    with local_cluster(cluster, "SLURM cluster") as running:  # stopped at the module's end
        yield running


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One node of 3 CPUs, for time limits: 2 + 1 workers at once."""
    cluster = LocalSlurmCluster(
        str(tmp_path_factory.mktemp("single")), num_nodes=1, cpus_per_node=3
    )
    with local_cluster(cluster, "SLURM cluster") as running:
        yield running


def cgroup_memory_controller():
    """'v1' or 'v2' where the kernel's memory controller is there to use, else ''."""
    if os.path.exists(CGROUP_V1_MEMORY):
        return "v1"
    try:
        with open(CGROUP_V2_CONTROLLERS) as f:
            return "v2" if "memory" in f.read().split() else ""
    except OSError:
        return ""


#: How each kind of memory limit is configured, and how SLURM ends a job over it.
#: Memory must be a consumable resource (CR_Core_Memory), else the job's
#: limit is the node's whole memory whatever --mem says.
MEMORY_LIMITS = {
    # The job's cgroup confines it: the kernel's OOM killer, OUT_OF_MEMORY.
    # Job ids start at a random number: a job's cgroup is named after the
    # node and the id, shared by every cluster on the machine whose node has
    # the same name. SLURM picks cgroup v1 or v2 (without systemd) itself.
    "cgroup": dict(
        extra_config={
            "ProctrackType": "proctrack/cgroup",
            "TaskPlugin": "task/cgroup",
            "SelectTypeParameters": "CR_Core_Memory",
            "DefMemPerCPU": "500",
            "FirstJobId": str(random.randint(10**6, 5 * 10**7)),
        },
        cgroup_config={
            "CgroupPlugin": "autodetect",
            "IgnoreSystemd": "yes",
            "CgroupAutomount": "yes",
            "ConstrainRAMSpace": "yes",
            "ConstrainSwapSpace": "yes",
        },
    ),
    # No cgroups: slurmstepd samples the job's memory each second and kills
    # it over its --mem. SLURM calls that FAILED.
    "over_memory_kill": dict(
        extra_config={
            "SelectTypeParameters": "CR_Core_Memory",
            "DefMemPerCPU": "500",
            "JobAcctGatherType": "jobacct_gather/linux",
            "JobAcctGatherParams": "OverMemoryKill",
            "JobAcctGatherFrequency": "task=1",
        },
    ),
}

#: What the pool reports of a job over its memory, per kind of limit.
MEMORY_LOSS = {
    "cgroup": dict(
        state="OUT_OF_MEMORY",
        words=[
            "ended OUT_OF_MEMORY",
            "JobState=OUT_OF_MEMORY",
            "oom-kill",  # the tail of the worker's output
            "Hint: They ran out of memory: raise sbatch_options['mem'] (now '100M')",
        ],
    ),
    "over_memory_kill": dict(
        state="FAILED",
        words=["ended FAILED", "JobState=FAILED", "exceeded memory limit"],
    ),
}


@pytest.fixture(scope="module", params=sorted(MEMORY_LIMITS))
def memory_cluster(request, tmp_path_factory):
    """One node of 2 CPUs whose jobs are held to their --mem."""
    kind = request.param
    if kind == "cgroup" and not cgroup_memory_controller():
        pytest.skip(
            "no cgroup memory controller here (neither {:s} nor 'memory' in "
            "{:s})".format(CGROUP_V1_MEMORY, CGROUP_V2_CONTROLLERS)
        )
    cluster = LocalSlurmCluster(
        str(tmp_path_factory.mktemp("memory")),
        num_nodes=1,
        cpus_per_node=2,
        **MEMORY_LIMITS[kind],
    )
    with local_cluster(cluster, "SLURM cluster") as running:
        running.memory_limit = kind
        yield running


@pytest.fixture
def on_multinode(multinode, monkeypatch, tmp_path):
    """The multi-node cluster for this test; every node back in service after it."""
    yield use_slurm(multinode, monkeypatch, tmp_path)
    running = multinode.daemon_pids()
    for node, state in multinode.node_states().items():
        if "slurmd-" + node not in running or state not in ("idle", "alloc", "mix"):
            multinode.resume_node(node, timeout=30)


@pytest.fixture
def on_single(single, monkeypatch, tmp_path):
    return use_slurm(single, monkeypatch, tmp_path)


@pytest.fixture
def on_memory_limit(memory_cluster, monkeypatch, tmp_path):
    return use_slurm(memory_cluster, monkeypatch, tmp_path)


# ----------------------------------------------------------------------
# helpers


def _queue_empties(name, cluster):
    """The pool's name is gone from the cluster's queue within ~10 s."""
    return wait_until(lambda: squeue_names(name, env=cluster.env()) == [], timeout=10)


def _events(work_dir):
    (map_dir,) = map_dirs(work_dir)
    return event_log.read(os.path.join(str(work_dir), map_dir, "log.jsonl"))


def _named(events, name):
    return [e for e in events if e["event"] == name]


def _wait_for_text(path, timeout):
    def ready():
        return os.path.exists(path)

    assert wait_until(ready, timeout=timeout, interval=0.1), "{:s} did not appear".format(
        str(path)
    )
    with open(path) as f:
        return f.read()


def _first_time(state_dir, what):
    """True exactly once per ``what`` across every run of every worker."""
    marker = os.path.join(state_dir, what)
    tmp = "{:s}.{:s}".format(marker, uuid.uuid4().hex)
    with open(tmp, "w") as f:
        f.write(os.environ.get("SLURMD_NODENAME", "?"))
    try:
        os.link(tmp, marker)
    except FileExistsError:
        return False
    finally:
        os.remove(tmp)
    return True


def _record_run(state_dir, x):
    """One file per run of job ``x``: where and as which worker it ran."""
    runs = os.path.join(state_dir, "runs")
    os.makedirs(runs, exist_ok=True)
    env = os.environ
    run = {
        "job": x,
        "node": env.get("SLURMD_NODENAME", ""),
        "worker": "{}_{}".format(env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")),
        "restarts": int(env.get("SLURM_RESTART_COUNT", "0")),
    }
    with open(os.path.join(runs, "{:d}-{:s}".format(x, uuid.uuid4().hex)), "w") as f:
        json.dump(run, f)


def _runs(state_dir):
    runs = os.path.join(str(state_dir), "runs")
    out = {}
    for entry in os.listdir(runs):
        with open(os.path.join(runs, entry)) as f:
            run = json.load(f)
        out.setdefault(run["job"], []).append(run)
    return out


# ----------------------------------------------------------------------
# job functions (run in the workers)


def hang_on_first_run_of_job_0(state_dir, x):
    """Job 0's first run writes its node to ``hang_node`` and hangs."""
    _record_run(state_dir, x)
    if x == 0 and _first_time(state_dir, "hang_node"):
        time.sleep(600)
    time.sleep(0.2)
    return x * x


def too_slow_on_first_run_of_job_0(state_dir, x):
    if x == 0 and _first_time(state_dir, "slow"):
        time.sleep(600)
    return x + 100


def always_too_slow(x):
    time.sleep(600)
    return x


def _hog_memory(megabytes):
    block = bytearray(megabytes * 2**20)
    for i in range(0, len(block), 4096):  # touch every page
        block[i] = 1
    time.sleep(3)  # OverMemoryKill looks once a second
    return len(block)


def hog_on_first_run_of_job_1(state_dir, x):
    if x == 1 and _first_time(state_dir, "hog"):
        _hog_memory(500)
    return -x


def always_hog(x):
    return _hog_memory(500)


# ----------------------------------------------------------------------
# node failure


def _fail_the_node_of_job_0(cluster, pool, state_dir, num_jobs, timeout):
    """Start the map, fail the node where job 0 hangs, return (node, results)."""
    func = functools.partial(hang_on_first_run_of_job_0, str(state_dir))
    result = pool.map_async(func, range(num_jobs), chunksize=1)
    node = _wait_for_text(os.path.join(str(state_dir), "hang_node"), timeout=60)
    assert node in cluster.node_names
    cluster.fail_node(node)
    return node, result.get(timeout=timeout)


def test_node_fail_without_requeue_resubmits_the_lost_jobs(on_multinode, tmp_path):
    cluster = on_multinode
    name = unique_name("ppnf")
    wd = tmp_path / "wd"
    t0 = time.monotonic()
    with Pool(
        processes=2,
        sbatch_options={"time": "5", "no-requeue": True},
        polling_interval=1.0,
        max_num_resubmissions=2,
        job_name=name,
        work_dir=str(wd),
        keep_work_dir=True,
    ) as pool:
        node, results = _fail_the_node_of_job_0(cluster, pool, tmp_path, 8, timeout=90)
    assert results == [x * x for x in range(8)]
    assert time.monotonic() - t0 < 90
    assert _queue_empties(name, cluster)

    events = _events(wd)
    lost = _named(events, "chunk_lost")
    assert [(e["chunk"], e["scheduler_state"], e["attempt"]) for e in lost] == [
        (0, "NODE_FAIL", 1)
    ]
    assert len(_named(events, "completed")) == 1

    runs = _runs(tmp_path)
    assert len(runs[0]) == 2
    first, second = sorted(runs[0], key=lambda r: r["node"] != node)
    assert first["node"] == node
    # Elsewhere: the other worker if it was free by then, else a new one.
    assert second["node"] != node
    assert second["worker"] != first["worker"]
    assert all(len(runs[x]) == 1 for x in range(1, 8))


def test_node_fail_with_requeue_reruns_the_jobs_of_the_same_worker(on_multinode, tmp_path):
    cluster = on_multinode
    name = unique_name("ppnr")
    wd = tmp_path / "wd"
    t0 = time.monotonic()
    with Pool(
        processes=2,
        sbatch_options={"time": "5"},  # SLURM's default: requeue on node failure
        polling_interval=1.0,
        max_num_resubmissions=2,
        job_name=name,
        work_dir=str(wd),
        keep_work_dir=True,
    ) as pool:
        node, results = _fail_the_node_of_job_0(cluster, pool, tmp_path, 8, timeout=120)
    assert results == [x * x for x in range(8)]  # each job's result, once
    assert time.monotonic() - t0 < 120
    assert _queue_empties(name, cluster)

    events = _events(wd)
    assert _named(events, "chunk_lost") == []
    assert len(_named(events, "submitted")) == 1
    assert len(_named(events, "completed")) == 1

    runs = _runs(tmp_path)
    assert len(runs[0]) == 2
    first, second = sorted(runs[0], key=lambda r: r["restarts"])
    assert (first["node"], first["restarts"]) == (node, 0)
    assert second["node"] != node
    assert second["restarts"] == 1
    assert second["worker"] == first["worker"]  # requeued, same id
    assert all(len(runs[x]) == 1 for x in range(1, 8))


# ----------------------------------------------------------------------
# time limit


@pytest.mark.timeout(360)  # SLURM takes 60-90 s to end a job over its time limit
def test_time_limit_resubmits_once_and_raises_when_always_too_slow(on_single, tmp_path):
    """Two maps at once (a time limit takes 60-90 s to bite on SLURM)."""
    cluster = on_single
    once_name, always_name = unique_name("ppto"), unique_name("ppta")
    once_wd = tmp_path / "once"
    options = {"time": "1"}  # minutes
    t0 = time.monotonic()
    # Two workers: one hangs on chunk 0, the other does chunk 1 and ends, so
    # the lost chunk 0 is the only thing left to resubmit.
    with Pool(
        processes=2,
        sbatch_options=options,
        polling_interval=1.0,
        max_num_resubmissions=1,
        job_name=once_name,
        work_dir=str(once_wd),
        keep_work_dir=True,
    ) as once_pool, Pool(
        processes=1,
        sbatch_options=options,
        polling_interval=1.0,
        max_num_resubmissions=0,
        job_name=always_name,
        work_dir=str(tmp_path / "always"),
    ) as always_pool:
        once = once_pool.map_async(
            functools.partial(too_slow_on_first_run_of_job_0, str(tmp_path)),
            range(4),
            chunksize=2,
        )
        always = always_pool.map_async(always_too_slow, range(2), chunksize=2)
        with pytest.raises(errors.JobsLostError) as info:
            always.get(timeout=150)
        t_always = time.monotonic() - t0
        assert once.get(timeout=max(1.0, 170 - t_always)) == [100, 101, 102, 103]
    assert t_always < 130
    assert time.monotonic() - t0 < 170
    assert _queue_empties(once_name, cluster)
    assert _queue_empties(always_name, cluster)

    msg = str(info.value)
    print(msg)
    assert "jobs 0 to 1 (chunk 0)" in msg
    assert "max_num_resubmissions=0" in msg
    assert "ended TIMEOUT" in msg
    assert "JobState=TIMEOUT" in msg
    assert "DUE TO TIME LIMIT" in msg  # the tail of the worker's output
    assert "Hint: They ran out of time: raise sbatch_options['time'] (now '1')" in msg
    assert info.value.job_indices == [0, 1]
    assert os.path.isdir(info.value.work_dir)

    events = _events(once_wd)
    lost = _named(events, "chunk_lost")
    assert [(e["chunk"], e["scheduler_state"]) for e in lost] == [(0, "TIMEOUT")]
    assert len(_named(events, "submitted")) == 2


# ----------------------------------------------------------------------
# memory limit


def test_out_of_memory_once_is_resubmitted(on_memory_limit, tmp_path):
    cluster = on_memory_limit
    name = unique_name("ppmo")
    wd = tmp_path / "wd"
    t0 = time.monotonic()
    with Pool(
        processes=2,
        sbatch_options={"time": "5", "mem": "100M"},
        polling_interval=1.0,
        max_num_resubmissions=1,
        job_name=name,
        work_dir=str(wd),
        keep_work_dir=True,
    ) as pool:
        func = functools.partial(hog_on_first_run_of_job_1, str(tmp_path))
        result = pool.map_async(func, range(6), chunksize=1)
        assert result.get(timeout=60) == [-x for x in range(6)]
    assert time.monotonic() - t0 < 60
    assert _queue_empties(name, cluster)
    lost = _named(_events(wd), "chunk_lost")
    state = MEMORY_LOSS[cluster.memory_limit]["state"]
    assert [(e["chunk"], e["scheduler_state"]) for e in lost] == [(1, state)]


def test_out_of_memory_always_raises_with_slurms_cause(on_memory_limit, tmp_path):
    cluster = on_memory_limit
    name = unique_name("ppma")
    t0 = time.monotonic()
    with Pool(
        processes=1,
        sbatch_options={"time": "5", "mem": "100M"},
        polling_interval=1.0,
        max_num_resubmissions=0,
        job_name=name,
        work_dir=str(tmp_path / "wd"),
    ) as pool:
        result = pool.map_async(always_hog, range(3), chunksize=3)
        with pytest.raises(errors.JobsLostError) as info:
            result.get(timeout=60)
    assert time.monotonic() - t0 < 60
    assert _queue_empties(name, cluster)
    msg = str(info.value)
    print(msg)
    assert "jobs 0 to 2 (chunk 0)" in msg
    for words in MEMORY_LOSS[cluster.memory_limit]["words"]:
        assert words in msg
    assert info.value.job_indices == [0, 1, 2]
