"""
What a store (``cache_dir=``) costs on top of the work, and what it saves.

Runs, in one process and on one SLURM cluster:

(a) 200 jobs of 0.5 s, a new pool each: with a store / without one, and
    against the ideal (N * t / slots) and multiprocessing.Pool(slots);
(b) 20 000 trivial jobs, a new pool each: without a store, with a new store
    (every key computed and every result stored), and again when all is
    stored (no scheduler call), against multiprocessing.Pool(slots);
(c) the store's files per map, and its scheduler calls when all is stored.

    python benchmarks/store_overhead.py             # starts a private local cluster
    python benchmarks/store_overhead.py --running   # uses the cluster of $SLURM_CONF
    python benchmarks/store_overhead.py --stock     # a private cluster, SLURM's default scheduling
"""
import argparse
import multiprocessing
import os
import shutil

from bench_jobs import sleep_half_a_second, trivial
from map_overhead import (
    REPEATS,
    add_cluster_options,
    benchmark_cluster,
    cluster_cpus,
    describe_cluster,
    new_pool,
    spread,
    timed,
)


def map_on_new_pool(func, jobs, **kwargs):
    """One map on a new pool (which then ends); its wall time and result."""
    with new_pool(**kwargs) as pool:
        return timed(pool.map, func, jobs)


def files_in(folder):
    return sum(len(f) for _, _, f in os.walk(folder))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_cluster_options(parser)
    args = parser.parse_args()

    with benchmark_cluster(args.running, args.stock) as work_root:
        slots = cluster_cpus()
        print(describe_cluster(slots))
        print()

        n, t = 200, 0.5
        ideal = n * t / slots
        with multiprocessing.Pool(slots) as mp:
            t_mp, _ = timed(mp.map, sleep_half_a_second, range(n))
        plain, stored = [], []
        for i in range(3):
            plain.append(map_on_new_pool(sleep_half_a_second, range(n))[0])
            store = os.path.join(work_root, "store-a{:d}".format(i))
            stored.append(map_on_new_pool(sleep_half_a_second, range(n), cache_dir=store)[0])
        best_plain, best_stored = min(plain), min(stored)
        print(
            "(a) 200 jobs x 0.5 s, best of 3: with a store {:.2f} s = {:.3f} x without ({:.2f} s), "
            "{:.3f} x ideal ({:.1f} s), {:.3f} x multiprocessing.Pool({:d}) ({:.2f} s)".format(
                best_stored, best_stored / best_plain, best_plain, best_stored / ideal, ideal,
                best_stored / t_mp, slots, t_mp,
            )
        )

        big = 20000
        with multiprocessing.Pool(slots) as mp:
            t_mp_big, _ = timed(mp.map, trivial, range(big))
        without, cold, warm = [], [], []
        for i in range(REPEATS):
            without.append(map_on_new_pool(trivial, range(big))[0])
            store = os.path.join(work_root, "store-b{:d}".format(i))
            t_cold, out = map_on_new_pool(trivial, range(big), cache_dir=store)
            assert out == list(range(big))
            cold.append(t_cold)
            with new_pool(cache_dir=store) as pool:
                t_warm, out = timed(pool.map, trivial, range(big))
                assert out == list(range(big))
                assert pool._pool_dir is None  # all stored: no map, no scheduler call
            warm.append(t_warm)
            if i < REPEATS - 1:
                shutil.rmtree(store)
        print("(b) 20 000 trivial jobs, without a store: {:s}".format(spread(without)))
        print("                         new store:       {:s}".format(spread(cold)))
        print("                         all stored:      {:s}   (no scheduler call)".format(spread(warm)))
        print("                         multiprocessing.Pool({:d}): {:.2f} s".format(slots, t_mp_big))
        print(
            "(c) files in the store after one map of 20 000 jobs: {:d}; "
            "of 200 jobs: {:d}".format(files_in(store), files_in(os.path.join(work_root, "store-a0")))
        )


if __name__ == "__main__":
    main()
