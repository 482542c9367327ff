"""
What iterative code (samplers, optimisers) pays per map on one
pypoolparty.slurm.array.Pool, next to multiprocessing.Pool.

Runs, in one process and on one SLURM cluster (issue 9, item 6):

(a) 100 maps x 8 jobs x 0.02 s (time.sleep) on one pool of ``slots``
    processes, its first (cold) map left out: wall time, / the same loop on
    multiprocessing.Pool(slots) (its first map left out too), overhead per
    map = (ours - multiprocessing) / maps, and the ideal
    maps * ceil(8 / slots) * 0.02 s;
(b) emcee, 32 walkers x 100 steps, a Gaussian log-probability that takes
    0.02 s per call (a stand-in for a cheap model): wall time with a new
    pool, its cold start included, / multiprocessing.Pool(slots); both
    chains must be the same (fixed seeds);
(c) the first (cold) map of a new pool (``slots`` trivial jobs) / a bare
    ``sbatch --array`` of as many tasks as that map submitted workers, each
    task starting the same Python to write a file, timed until all files
    exist; medians of several runs, the two alternating, each started
    ``SETTLE_SECONDS`` after the last jobs left;
(d) the sbatch and squeue calls of (a), and of its pool while it idles
    after, counted by wrappers of the pool's SLURM commands
    (benchmarks/slurm_calls.py);
and the metadata system calls per second of an idle worker of (a)'s pool, a
few seconds after its last map (benchmarks/idle_worker.py).

Before measuring it waits for one trivial job, so that a just-started
cluster's first scheduling pass is not counted.

    python benchmarks/warm_maps.py             # a private local cluster (tuned)
    python benchmarks/warm_maps.py --stock     # ... with SLURM's default scheduling
    python benchmarks/warm_maps.py --running   # the cluster of $SLURM_CONF
    python benchmarks/warm_maps.py --quick     # a smoke run: 10 maps, 5 emcee steps
"""
import dataclasses
import math
import multiprocessing
import os
import random
import shlex
import statistics
import subprocess
import sys
import time
import uuid

import numpy as np

import idle_worker
import slurm_calls
from bench_jobs import trivial
from map_overhead import (
    SBATCH_OPTIONS,
    benchmark_cluster,
    cluster_cpus,
    describe_cluster,
    new_pool,
    quick_run_arguments,
    spread,
    timed,
)
from pypoolparty.slurm.adapter import format_options

JOBS_PER_MAP = 8
JOB_SECONDS = 0.02
WALKERS = 32
DIMENSIONS = 5
SEED = 9
#: An idle worker is measured this long after its pool's last map ended.
IDLE_SETTLE_SECONDS = 5.0
#: Seconds to wait for the bare array's files, or for jobs to leave the queue.
PATIENCE = 600.0
#: Seconds (c) lets the cluster settle after the last jobs left, before it
#: times the next, plus a random part of a second: slurmctld starts a
#: submission at once or at its next pass (about once a second), depending
#: on when it comes; a fixed pause would give the two alternating runs
#: different, systematic phases, a random one gives both the same odds.
SETTLE_SECONDS = 2.0


@dataclasses.dataclass(frozen=True)
class Sizes:
    maps: int
    emcee_steps: int
    cold_repeats: int
    idle_window: float


FULL = Sizes(maps=100, emcee_steps=100, cold_repeats=21, idle_window=10.0)
QUICK = Sizes(maps=10, emcee_steps=5, cold_repeats=3, idle_window=5.0)


def sleep_job(x):
    time.sleep(JOB_SECONDS)
    return x


def log_prob(theta):
    time.sleep(JOB_SECONDS)
    return -0.5 * float(np.dot(theta, theta))


def one_map(map_func):
    assert map_func(sleep_job, range(JOBS_PER_MAP)) == list(range(JOBS_PER_MAP))


def loop_seconds(map_func, maps):
    t0 = time.perf_counter()
    for _ in range(maps):
        one_map(map_func)
    return time.perf_counter() - t0


def unique_name(prefix):
    return "{:s}-{:s}".format(prefix, uuid.uuid4().hex[:8])


def verdict(value, target, unit=""):
    return "target <= {:g}{:s}: {:s}".format(target, unit, "met" if value <= target else "MISSED")


def wait_until_gone(job_name):
    """Wait until no job named ``job_name`` is in the queue."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["squeue", "--noheader", "--name=" + job_name, "--format=%i"],
            stdout=subprocess.PIPE, text=True, check=True,
        ).stdout
        if not out.strip():
            return
        time.sleep(0.2)
    raise RuntimeError("jobs named {:s} still queued after {:.0f} s".format(job_name, PATIENCE))


def settled():
    """Give the cluster :data:`SETTLE_SECONDS` and a random fraction of a
    second after the last jobs left."""
    time.sleep(SETTLE_SECONDS + random.random())


# ---------------------------------------------------------------- (c)
def bare_array_seconds(num_tasks, directory):
    """``sbatch --array=0-(num_tasks-1)``, each task Python writing a file:
    seconds from the call until every file exists."""
    os.makedirs(directory)
    code = "import os; open(os.path.join({!r}, os.environ['SLURM_ARRAY_TASK_ID']), 'w').close()".format(directory)
    name = unique_name("ppp-bare")
    argv = (
        ["sbatch", "--parsable", "--array=0-{:d}".format(num_tasks - 1)]
        + ["--job-name=" + name, "--output=/dev/null"]
        + format_options(SBATCH_OPTIONS)
        + ["--wrap", "exec {:s} -c {:s}".format(shlex.quote(sys.executable), shlex.quote(code))]
    )
    settled()
    t0 = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
    while len(os.listdir(directory)) < num_tasks:
        if time.perf_counter() - t0 > PATIENCE:
            raise RuntimeError("the bare array's files did not appear in {:s}".format(directory))
        time.sleep(0.005)
    seconds = time.perf_counter() - t0
    wait_until_gone(name)
    return seconds


def cold_map_seconds(slots, counted):
    """A new pool's first map of ``slots`` trivial jobs: (seconds, workers it submitted)."""
    name = unique_name("ppp-cold")
    before = counted.calls()
    settled()
    t0 = time.perf_counter()
    pool = new_pool(processes=slots, job_name=name, **counted.pool_keywords())
    assert pool.map(trivial, range(slots)) == list(range(slots))
    seconds = time.perf_counter() - t0
    pool.close()
    pool.join()
    wait_until_gone(name)
    workers = slurm_calls.workers_submitted(counted.calls_since(before)["sbatch"])
    if workers < 1:
        raise RuntimeError("the first map of a new pool submitted no worker")
    return seconds, workers


def measure_cold(slots, counted, sizes, work_root):
    ours, bare, workers = [], [], []
    for i in range(sizes.cold_repeats):
        seconds, num_workers = cold_map_seconds(slots, counted)
        ours.append(seconds)
        workers.append(num_workers)
        bare.append(bare_array_seconds(num_workers, os.path.join(work_root, "bare-{:d}".format(i))))
    ratio = statistics.median(ours) / statistics.median(bare)
    mean_ratio = statistics.mean(ours) / statistics.mean(bare)
    print("(c) first map of a new pool, {:d} trivial jobs, {:s} workers:".format(
        slots, "/".join(str(w) for w in sorted(set(workers)))))
    print("    pypoolparty:          {:s}".format(spread(ours)))
    print("    bare sbatch --array:  {:s}".format(spread(bare)))
    print("    ratio of medians: {:.2f}   ({:s})".format(ratio, verdict(ratio, 1.2)))
    # slurmctld starts a job at once or at its next pass: both sides'
    # times fall in two groups, and the mean weighs them as they come.
    print("    ratio of means:   {:.2f}   ({:s})".format(mean_ratio, verdict(mean_ratio, 1.2)))


# ---------------------------------------------------------------- (a), (d), idle worker
def measure_loop(slots, counted, sizes):
    name = unique_name("ppp-warm")
    with new_pool(processes=slots, job_name=name, **counted.pool_keywords()) as pool:
        start = counted.calls()
        t_first, _ = timed(one_map, pool.map)
        first_calls = counted.calls_since(start)
        before = counted.calls()
        t_ours = loop_seconds(pool.map, sizes.maps)
        loop_calls = counted.calls_since(before)
        before, t_idle = counted.calls(), time.perf_counter()
        idle = idle_worker.idle_worker_metadata(name, IDLE_SETTLE_SECONDS, sizes.idle_window)
        idle_calls, t_idle = counted.calls_since(before), time.perf_counter() - t_idle
        pool.close()
        pool.join()
    with multiprocessing.Pool(slots) as mp:
        one_map(mp.map)
        t_mp = loop_seconds(mp.map, sizes.maps)
    rounds = math.ceil(JOBS_PER_MAP / slots)
    ideal = sizes.maps * rounds * JOB_SECONDS
    per_map = (t_ours - t_mp) / sizes.maps
    print("(a) {:d} maps x {:d} jobs x {:g} s on one pool, its first map ({:.2f} s) left out:".format(
        sizes.maps, JOBS_PER_MAP, JOB_SECONDS, t_first))
    print("    pypoolparty {:.2f} s = {:.2f} x multiprocessing.Pool({:d}) ({:.2f} s)".format(
        t_ours, t_ours / t_mp, slots, t_mp))
    print("    overhead per map {:.3f} s   ({:s})".format(per_map, verdict(per_map, 0.025, " s")))
    print("    ideal {:.2f} s ({:d} maps x {:d} rounds x {:g} s)".format(
        ideal, sizes.maps, rounds, JOB_SECONDS))
    print("(d) SLURM calls of (a)'s {:d} maps: {:s}; of its first map: {:s}".format(
        sizes.maps, slurm_calls.summary(loop_calls), slurm_calls.summary(first_calls)))
    print("    while the pool was idle for {:.1f} s after: {:s}".format(
        t_idle, slurm_calls.summary(idle_calls)))
    print("idle worker, metadata calls: {:s}   (target <= 2 per second)".format(idle))


# ---------------------------------------------------------------- (b)
def emcee_chain(emcee, pool, steps):
    start = np.random.RandomState(SEED).normal(size=(WALKERS, DIMENSIONS))
    sampler = emcee.EnsembleSampler(WALKERS, DIMENSIONS, log_prob, pool=pool)
    sampler.random_state = np.random.RandomState(SEED + 1).get_state()
    sampler.run_mcmc(start, steps)
    return sampler.get_chain()


def measure_emcee(slots, sizes):
    try:
        import emcee
    except ImportError:
        print("(b) emcee: skipped, emcee is not installed (pip install emcee)")
        return
    t0 = time.perf_counter()
    with new_pool(processes=slots, job_name=unique_name("ppp-emcee")) as pool:
        ours = emcee_chain(emcee, pool, sizes.emcee_steps)
        pool.close()
        pool.join()
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    with multiprocessing.Pool(slots) as mp:
        theirs = emcee_chain(emcee, mp, sizes.emcee_steps)
    t_mp = time.perf_counter() - t0
    ratio = t_ours / t_mp
    print("(b) emcee, {:d} walkers x {:d} steps, log-probability {:g} s, new pools:".format(
        WALKERS, sizes.emcee_steps, JOB_SECONDS))
    print("    pypoolparty {:.2f} s = {:.2f} x multiprocessing.Pool({:d}) ({:.2f} s)   ({:s}); "
          "same chain: {:s}".format(t_ours, ratio, slots, t_mp, verdict(ratio, 1.5),
                                    "yes" if np.array_equal(ours, theirs) else "NO"))


def main():
    args = quick_run_arguments(__doc__, "{:d} maps, {:d} emcee steps, {:d} cold repeats".format(
        QUICK.maps, QUICK.emcee_steps, QUICK.cold_repeats))
    sizes = QUICK if args.quick else FULL

    with benchmark_cluster(args.running, args.stock) as work_root:
        slots = cluster_cpus()
        print(describe_cluster(slots))
        print()
        counted = slurm_calls.CountedCommands(os.path.join(work_root, "commands"))
        measure_cold(slots, counted, sizes, work_root)
        measure_loop(slots, counted, sizes)
        measure_emcee(slots, sizes)


if __name__ == "__main__":
    main()
