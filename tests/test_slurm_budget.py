"""
One budget of ``processes`` per pool, and one squeue per poll for all its
maps, seen on a real SLURM cluster with room for more workers than the pool
may run: 4 CPUs, so that only the pool can hold its workers back.

What ran at once is seen twice: in squeue, sampled while the maps run, and
by the jobs themselves, which note when they started and ended.
"""
import functools
import os
import subprocess
import textwrap

import pytest

import pypoolparty.slurm
import pypoolparty.slurm.array
from pypoolparty.core import event_log
from pypoolparty.core.event_log import EventLog
from pypoolparty.slurm.adapter import SlurmArrayScheduler
from pypoolparty.testing.local_slurm import LocalSlurmCluster

from conftest import (
    Sampler,
    claimant,
    local_cluster,
    most_at_once,
    noted_run,
    sleeping_workers,
    squeue_names,
    unique_name,
    use_slurm,
    wait_until,
)
from fake_jobs import map_dirs

POOLS = {"array": pypoolparty.slurm.array.Pool, "jobs": pypoolparty.slurm.Pool}
CPUS = 4

pytestmark = [pytest.mark.cluster, pytest.mark.slurm]


@pytest.fixture(scope="module")
def roomy(tmp_path_factory):
    """One node with more CPUs than any test here lets a pool use."""
    cluster = LocalSlurmCluster(
        str(tmp_path_factory.mktemp("roomy")), num_nodes=1, cpus_per_node=CPUS
    )
    with local_cluster(cluster, "SLURM cluster") as running:
        yield running


@pytest.fixture
def on_roomy(roomy, monkeypatch, tmp_path):
    return use_slurm(roomy, monkeypatch, tmp_path)


def running_in_squeue(name):
    """How many jobs with this name run."""
    out = subprocess.run(
        ["squeue", "--noheader", "--array", "--states=RUNNING", "--name=" + name, "--format=%i"],
        stdout=subprocess.PIPE, text=True, check=True,
    ).stdout
    return len(out.split())


def map_logs(work_dir):
    """{number of jobs: events} of each map in ``work_dir``."""
    out = {}
    for path in map_dirs(work_dir):
        events = event_log.read(os.path.join(path, "log.jsonl"))
        (start,) = [e for e in events if e["event"] == "map"]
        out[start["num_jobs"]] = events
    return out


def named(events, name):
    return [e for e in events if e["event"] == name]


@pytest.mark.parametrize("kind", sorted(POOLS))
def test_a_cancelled_worker_is_replaced_within_processes(on_roomy, tmp_path, kind):
    """Ten chunks, two workers at once; someone else cancels one of them."""
    name = unique_name(kind)
    wd, notes = tmp_path / "wd", tmp_path / "notes"
    notes.mkdir()
    pool = POOLS[kind](
        processes=2, job_name=name, polling_interval=1.0, work_dir=str(wd),
        keep_work_dir=True, sbatch_options={"time": "5"},
    )
    sampler = Sampler(lambda: running_in_squeue(name))
    try:
        result = pool.map_async(functools.partial(noted_run, str(notes), 2), range(10), chunksize=1)
        # Someone else cancels the worker of chunk 0 while it runs job 0.
        victim = claimant(str(wd), chunk=0)
        subprocess.run(["scancel", victim], check=True)
        assert result.get(timeout=120) == list(range(10))
    finally:
        most_in_squeue = sampler.stop()
        pool.terminate()
    assert most_in_squeue == 2
    assert most_at_once(str(notes)) == 2
    (events,) = map_logs(str(wd)).values()
    lost = named(events, "chunk_lost")
    assert [(e["worker"], e["scheduler_state"]) for e in lost] == [(victim, "CANCELLED")]
    assert len(named(events, "submitted")) == 2  # the replacement
    assert wait_until(lambda: squeue_names(name) == [], timeout=10)


def test_an_array_runs_at_most_max_running_tasks(on_roomy, tmp_path):
    """The adapter asked for more tasks than may run: the %N throttle holds them back."""
    name = unique_name("throttle")
    request = sleeping_workers(name, tmp_path, num_workers=6, max_running=2)
    sampler = Sampler(lambda: running_in_squeue(name))
    ids = []
    try:
        ids = SlurmArrayScheduler(sbatch_options={"time": "5"}).submit(request, EventLog())
        assert wait_until(lambda: squeue_names(name) == [], timeout=60)
    finally:
        most_in_squeue = sampler.stop()
        subprocess.run(["scancel", "--name=" + name])
    assert len(ids) == 6
    assert most_in_squeue == 2
    assert len(os.listdir(tmp_path)) == 6  # each task ran and wrote its log


def counting_squeue(tmp_path):
    """squeue that first notes the time and its arguments, one line per call."""
    calls = tmp_path / "squeue-calls"
    path = tmp_path / "counting-squeue"
    path.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            echo "$(date +%s.%N) $*" >> {calls}
            exec squeue "$@"
            """.format(calls=calls)
        )
    )
    path.chmod(0o755)
    return str(path), calls


def test_overlapping_maps_share_each_squeue_and_the_budget(on_roomy, tmp_path):
    squeue, calls = counting_squeue(tmp_path)
    name = unique_name("overlap")
    wd, notes = tmp_path / "wd", tmp_path / "notes"
    notes.mkdir()
    pool = pypoolparty.slurm.array.Pool(
        processes=3, job_name=name, squeue_path=squeue, polling_interval=1.0,
        work_dir=str(wd), keep_work_dir=True, sbatch_options={"time": "5"},
    )
    sampler = Sampler(lambda: running_in_squeue(name))
    try:
        # Two workers for the first map leave one of the budget to the second.
        first = pool.map_async(functools.partial(noted_run, str(notes), 6), range(2), chunksize=1)
        second = pool.map_async(functools.partial(noted_run, str(notes), 2), range(4), chunksize=1)
        assert first.get(timeout=120) == [0, 1]
        assert second.get(timeout=120) == [0, 1, 2, 3]
    finally:
        most_in_squeue = sampler.stop()
        pool.terminate()
    assert most_in_squeue == 3
    assert most_at_once(str(notes)) == 3

    # One squeue per polling interval for the pool, whatever the maps in
    # flight; each asked for every worker of the pool then alive.
    logs = map_logs(str(wd))
    assert sorted(logs) == [2, 4]
    lines = calls.read_text().splitlines()
    assert len(lines) >= 2
    times = [float(line.split()[0]) for line in lines]
    assert min(b - a for a, b in zip(times, times[1:])) > 0.9  # one per poll
