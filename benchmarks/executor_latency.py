"""
The submit→result latency of one call on a warm pypoolparty.slurm.Executor,
next to pypoolparty.slurm.array.Pool's and the stdlib's on the same cores.

Runs, in one process and on one SLURM cluster (issue 11):

(a) one trivial call at a time, each waited for before the next, the
    workers warm (their first call left out): ``Executor.submit(...)
    .result()``, ``Pool.apply_async(...).get()`` and ``Pool.apply(...)``
    with ``slots`` workers, next to ``ProcessPoolExecutor(slots)`` and
    ``multiprocessing.Pool(slots)`` (``apply``); medians, mins and maxes
    in milliseconds, and the ratio of medians to the stdlib's;
(b) the first call on a new Executor (its worker submitted by that call)
    next to a bare ``sbatch --array`` of as many tasks as the call
    submitted workers, each task starting Python to write a file (the
    scheduler's floor, as benchmarks/warm_maps.py measures it); the two
    alternate, each started a settled moment after the last jobs left;
(c) a burst: 100 trivial submits, then a wait for all of them, on the warm
    Executor, with the warm pool's ``apply_async``, on
    ``ProcessPoolExecutor(slots)`` and with ``multiprocessing.Pool(slots)``'s
    ``apply_async``; medians, and the ratio of medians to
    ``ProcessPoolExecutor``;
(d) one call on the warm Executor after its workers idled for
    :data:`PAUSES` seconds: an idle worker looks for work less often the
    longer it idles.

Before measuring it waits for one trivial job, so that a just-started
cluster's first scheduling pass is not counted. SLURM's workers of one
case leave the queue before the next case starts, so that each has the
cluster's slots to itself.

    python benchmarks/executor_latency.py             # a private local cluster (tuned)
    python benchmarks/executor_latency.py --stock     # ... with SLURM's default scheduling
    python benchmarks/executor_latency.py --running   # the cluster of $SLURM_CONF
    python benchmarks/executor_latency.py --quick     # a smoke run: fewer repeats
"""
import concurrent.futures
import dataclasses
import multiprocessing
import os
import statistics
import time

import pypoolparty.slurm
import slurm_calls
from bench_jobs import trivial
from map_overhead import (
    SBATCH_OPTIONS,
    benchmark_cluster,
    cluster_cpus,
    describe_cluster,
    new_pool,
    quick_run_arguments,
    timed,
)
from warm_maps import bare_array_seconds, settled, unique_name, wait_until_gone

BURST = 100
#: (d) measures one call after the workers idled this many seconds: an
#: idle worker looks for work less and less often (core/worker.py's
#: POLL_MIN .. POLL_MAX).
PAUSES = (0.25, 1.0, 4.0)


@dataclasses.dataclass(frozen=True)
class Sizes:
    calls: int
    bursts: int
    cold_repeats: int
    paused_calls: int


FULL = Sizes(calls=101, bursts=21, cold_repeats=11, paused_calls=11)
QUICK = Sizes(calls=11, bursts=3, cold_repeats=2, paused_calls=2)


def new_executor(max_workers, **kwargs):
    kwargs.setdefault("sbatch_options", dict(SBATCH_OPTIONS))
    return pypoolparty.slurm.Executor(max_workers, **kwargs)


def milliseconds(seconds):
    """Like map_overhead's ``spread``, in milliseconds: one call is short."""
    s = sorted(seconds)
    return "median {:7.2f} ms (min {:.2f}, max {:.2f}, {:d} runs)".format(
        1e3 * s[len(s) // 2], 1e3 * s[0], 1e3 * s[-1], len(s)
    )


def ratio_to(seconds, reference):
    return statistics.median(seconds) / statistics.median(reference)


def latencies(call, repeats, pause=0.0):
    """Seconds of ``call(x)`` (it must return x), one after the other,
    ``pause`` seconds apart, after one call left out (the workers' start)."""
    assert call(-1) == -1
    out = []
    for i in range(repeats):
        time.sleep(pause)
        seconds, value = timed(call, i)
        assert value == i
        out.append(seconds)
    return out


def burst_seconds(submit_all, wait_all, repeats):
    """Seconds of ``submit_all(range(BURST))`` and then ``wait_all`` of what
    it returned, after one burst left out."""
    out = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        values = wait_all(submit_all(range(BURST)))
        seconds = time.perf_counter() - t0
        assert values == list(range(BURST))
        if i > 0:
            out.append(seconds)
    return out


def executor_call(executor):
    """One call, waited for: ``x -> executor.submit(trivial, x).result()``."""
    return lambda x: executor.submit(trivial, x).result()


def executor_burst(executor):
    def submit_all(xs):
        return [executor.submit(trivial, x) for x in xs]

    def wait_all(futures):
        return [f.result() for f in futures]

    return submit_all, wait_all


def pool_burst(pool):
    def submit_all(xs):
        return [pool.apply_async(trivial, (x,)) for x in xs]

    def wait_all(results):
        return [r.get() for r in results]

    return submit_all, wait_all


def leave_queue(closing, job_name):
    """Close a pool or shut an executor down, and wait for its workers to
    leave the queue."""
    closing()
    wait_until_gone(job_name)


# ---------------------------------------------------------------- (a), (c)
def measure_cluster_warm(slots, sizes):
    """(single-call latencies, bursts, calls after pauses) of a warm
    Executor and a warm pool."""
    single, bursts, paused = {}, {}, {}
    name = unique_name("ppp-exec")
    executor = new_executor(slots, job_name=name)
    call = executor_call(executor)
    single["Executor.submit().result()"] = latencies(call, sizes.calls)
    bursts["Executor.submit"] = burst_seconds(*executor_burst(executor), sizes.bursts)
    for pause in PAUSES:
        paused["after {:g} s idle".format(pause)] = latencies(call, sizes.paused_calls, pause)
    leave_queue(executor.shutdown, name)

    name = unique_name("ppp-pool")
    pool = new_pool(processes=slots, job_name=name)
    single["Pool.apply_async().get()"] = latencies(
        lambda x: pool.apply_async(trivial, (x,)).get(), sizes.calls)
    single["Pool.apply()"] = latencies(lambda x: pool.apply(trivial, (x,)), sizes.calls)
    bursts["Pool.apply_async"] = burst_seconds(*pool_burst(pool), sizes.bursts)
    leave_queue(lambda: (pool.close(), pool.join()), name)
    return single, bursts, paused


def measure_stdlib(slots, sizes):
    """(single-call latencies, bursts) of the stdlib's pools on ``slots`` processes."""
    single, bursts = {}, {}
    with concurrent.futures.ProcessPoolExecutor(slots) as executor:
        single["ProcessPoolExecutor"] = latencies(executor_call(executor), sizes.calls)
        bursts["ProcessPoolExecutor"] = burst_seconds(*executor_burst(executor), sizes.bursts)
    with multiprocessing.Pool(slots) as mp:
        single["multiprocessing.Pool.apply()"] = latencies(
            lambda x: mp.apply(trivial, (x,)), sizes.calls)
        bursts["multiprocessing.Pool.apply_async"] = burst_seconds(*pool_burst(mp), sizes.bursts)
    return single, bursts


def print_table(title, cases, reference, unit_format):
    print(title)
    width = max(len(c) for c in cases)
    for case, seconds in cases.items():
        print("    {:<{w}s}  {:s} = {:7.1f} x {:s}".format(
            case, unit_format(seconds), ratio_to(seconds, cases[reference]), reference, w=width))


# ---------------------------------------------------------------- (b)
def cold_call_seconds(slots, counted):
    """The first call on a new Executor: (seconds, workers it submitted)."""
    name = unique_name("ppp-cold")
    before = counted.calls()
    settled()
    t0 = time.perf_counter()
    executor = new_executor(slots, job_name=name, **counted.pool_keywords())
    assert executor.submit(trivial, 1).result() == 1
    seconds = time.perf_counter() - t0
    leave_queue(executor.shutdown, name)
    workers = slurm_calls.workers_submitted(counted.calls_since(before)["sbatch"])
    if workers < 1:
        raise RuntimeError("the first call of a new Executor submitted no worker")
    return seconds, workers


def measure_cold(slots, sizes, work_root):
    counted = slurm_calls.CountedCommands(os.path.join(work_root, "commands"))
    ours, bare, workers = [], [], []
    for i in range(sizes.cold_repeats):
        seconds, num_workers = cold_call_seconds(slots, counted)
        ours.append(seconds)
        workers.append(num_workers)
        bare.append(bare_array_seconds(num_workers, os.path.join(work_root, "bare-{:d}".format(i))))
    print("(b) the first call on a new Executor, {:s} worker(s) submitted:".format(
        "/".join(str(w) for w in sorted(set(workers)))))
    print("    pypoolparty:          {:s}".format(milliseconds(ours)))
    print("    bare sbatch --array:  {:s}".format(milliseconds(bare)))
    print("    ratio of medians: {:.2f}; of means: {:.2f}".format(
        ratio_to(ours, bare), statistics.mean(ours) / statistics.mean(bare)))


def main():
    args = quick_run_arguments(__doc__, "{:d} calls, {:d} bursts, {:d} cold repeats".format(
        QUICK.calls, QUICK.bursts, QUICK.cold_repeats))
    sizes = QUICK if args.quick else FULL

    with benchmark_cluster(args.running, args.stock) as work_root:
        slots = cluster_cpus()
        print(describe_cluster(slots))
        print()
        single, bursts, paused = measure_cluster_warm(slots, sizes)
        stdlib_single, stdlib_bursts = measure_stdlib(slots, sizes)
        single.update(stdlib_single)
        bursts.update(stdlib_bursts)
        print_table(
            "(a) one trivial call at a time, warm workers, {:d} processes:".format(slots),
            single, "ProcessPoolExecutor", milliseconds)
        measure_cold(slots, sizes, work_root)
        print_table(
            "(c) {:d} trivial submits, then a wait for all, warm workers:".format(BURST),
            bursts, "ProcessPoolExecutor", milliseconds)
        paused["ProcessPoolExecutor, no pause"] = single["ProcessPoolExecutor"]
        print_table(
            "(d) one call on the warm Executor after its workers idled:",
            paused, "ProcessPoolExecutor, no pause", milliseconds)


if __name__ == "__main__":
    main()
