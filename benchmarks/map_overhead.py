"""
How much pypoolparty.slurm.array.Pool adds on top of the work itself.

Runs, in one process and on one SLURM cluster:

(a) 100 trivial jobs: wall time (a new pool each time, and one pool);
(b) 200 jobs of 0.5 s: wall time / ideal (N * t / slots) and
    / multiprocessing.Pool(slots) on the same jobs;
(c) 20 000 trivial jobs: wall time;
(d) sbatch and squeue calls and files created per map, for several N.

Before measuring it waits for one trivial job, so that a just-started
cluster's first scheduling pass is not counted.

    python benchmarks/map_overhead.py             # starts a private local cluster
    python benchmarks/map_overhead.py --running   # uses the cluster of $SLURM_CONF
    python benchmarks/map_overhead.py --stock     # a private cluster, SLURM's default scheduling
"""
import argparse
import contextlib
import glob
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pypoolparty.slurm.array
from bench_jobs import sleep_half_a_second, trivial
from pypoolparty.core import event_log
from pypoolparty.slurm import parsing

SBATCH_OPTIONS = {"time": "00:30:00"}


def cluster_cpus():
    out = subprocess.run(
        ["sinfo", "--noheader", "--format=%C"], stdout=subprocess.PIPE, text=True, check=True
    ).stdout
    return sum(int(line.split("/")[3]) for line in out.split())


REPEATS = 5


def spread(seconds):
    s = sorted(seconds)
    return "median {:5.2f} s (min {:.2f}, max {:.2f}, {:d} runs)".format(
        s[len(s) // 2], s[0], s[-1], len(s)
    )


def timed(func, *args, **kwargs):
    t0 = time.perf_counter()
    out = func(*args, **kwargs)
    return time.perf_counter() - t0, out


def new_pool(**kwargs):
    kwargs.setdefault("sbatch_options", dict(SBATCH_OPTIONS))
    return pypoolparty.slurm.array.Pool(**kwargs)


def map_on_new_pool(func, jobs):
    """One map on a new pool, which then ends (its workers leave the queue)."""
    with new_pool() as pool:
        return pool.map(func, jobs)


def map_costs(num_jobs, work_root):
    """(sbatch calls, squeue calls, other calls, files) of one map of num_jobs.

    Files are those of the pool's folder with the map's in it: the map's
    own and the pool's (its workers' ids and logs, settings, log).
    """
    wd = os.path.join(work_root, "n{:d}".format(num_jobs))
    pool = new_pool(work_dir=wd, keep_work_dir=True)
    assert pool.map(trivial, range(num_jobs)) == list(range(num_jobs))
    (map_log,) = glob.glob(os.path.join(wd, "*", "map-*", "log.jsonl"))
    events = event_log.read(map_log)
    calls = [os.path.basename(e["argv"][0]) for e in events if e["event"] == "command"]
    files = sum(len(f) for _, _, f in os.walk(wd))
    pool.terminate()
    shutil.rmtree(wd)
    return calls.count("sbatch"), calls.count("squeue"), len(calls), files


@contextlib.contextmanager
def benchmark_cluster(running, stock=False):
    """
    A SLURM cluster to measure on, ready for jobs; yields a new work root
    (also the cwd), removed afterwards.

    running: use the cluster of $SLURM_CONF; else start a private local
    cluster (``stock``: with SLURM's default scheduling parameters), stop it
    afterwards and remove its directory.
    """
    cluster = None
    if not running:
        from pypoolparty.testing.local_slurm import LocalSlurmCluster

        cluster = LocalSlurmCluster(
            directory=tempfile.mkdtemp(prefix="ppp-bench-slurm-"), stock=stock
        )
        cluster.start()
        os.environ["SLURM_CONF"] = cluster.slurm_conf
    work_root = tempfile.mkdtemp(prefix="ppp-bench-work-")
    os.chdir(work_root)
    try:
        # A freshly started slurmctld makes its first scheduling pass about
        # 3 s after it starts: wait for one job so that boot is not counted.
        subprocess.run(
            ["sbatch", "--wait", "--quiet", "--time=1", "--output=/dev/null", "--wrap=true"],
            check=True,
        )
        yield work_root
    finally:
        os.chdir("/")
        shutil.rmtree(work_root, ignore_errors=True)
        if cluster is not None:
            cluster.stop()
            shutil.rmtree(cluster.directory, ignore_errors=True)


def add_cluster_options(parser):
    """``--running`` or ``--stock``, the arguments of :func:`benchmark_cluster`."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--running", action="store_true", help="use the cluster of $SLURM_CONF")
    which.add_argument(
        "--stock", action="store_true",
        help="start the private cluster with SLURM's default scheduling parameters",
    )


def quick_run_arguments(doc, quick_help):
    """The command line of a script with a smoke run: the cluster options
    (:func:`add_cluster_options`) and ``--quick`` (``quick_help`` says what
    it runs); stdout line-buffered, so that a long run shows as it goes."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    add_cluster_options(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke run: " + quick_help)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    return args


def describe_cluster(slots):
    """One line: the CPU slots, the scheduler's parameters, Python's version."""
    config = subprocess.run(
        ["scontrol", "show", "config"], stdout=subprocess.PIPE, text=True, check=True
    ).stdout
    parameters = parsing.parse_config(config).get("SchedulerParameters", "?")
    return "cluster: {:d} CPU slots, SchedulerParameters={:s}; python {:s}".format(
        slots, parameters, sys.version.split()[0]
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_cluster_options(parser)
    args = parser.parse_args()

    with benchmark_cluster(args.running, args.stock) as work_root:
        slots = cluster_cpus()
        print(describe_cluster(slots))
        print()

        cold = [timed(map_on_new_pool, trivial, range(100))[0] for _ in range(REPEATS)]
        with new_pool() as pool:  # its idle workers would hold the slots
            warm = [timed(pool.map, trivial, range(100))[0] for _ in range(REPEATS)]
        print("(a) 100 trivial jobs, new pool:  {:s}   (target <= 2 s)".format(spread(cold)))
        print("    100 trivial jobs, same pool: {:s}".format(spread(warm)))

        n, t = 200, 0.5
        ideal = n * t / slots
        t_ppp, _ = timed(map_on_new_pool, sleep_half_a_second, range(n))
        with multiprocessing.Pool(slots) as mp:
            t_mp, _ = timed(mp.map, sleep_half_a_second, range(n))
        print(
            "(b) 200 jobs x 0.5 s: {:6.2f} s = {:.3f} x ideal ({:.1f} s), "
            "{:.3f} x multiprocessing.Pool({:d}) ({:.2f} s)   (target <= 1.05 x ideal)".format(
                t_ppp, t_ppp / ideal, ideal, t_ppp / t_mp, slots, t_mp
            )
        )

        big = []
        for _ in range(REPEATS):
            t_big, out = timed(map_on_new_pool, trivial, range(20000))
            assert out == list(range(20000))
            big.append(t_big)
        with multiprocessing.Pool(slots) as mp:
            t_mp_big, _ = timed(mp.map, trivial, range(20000))
        print("(c) 20 000 trivial jobs:         {:s}   (target <= 5 s; multiprocessing.Pool: {:.2f} s)".format(spread(big), t_mp_big))

        print("(d) per map:    jobs   sbatch   squeue   all calls   files")
        for num in (10, 1000, 20000):
            sb, sq, allc, files = map_costs(num, work_root)
            print("             {:7d}   {:6d}   {:6d}   {:9d}   {:5d}".format(num, sb, sq, allc, files))


if __name__ == "__main__":
    main()
