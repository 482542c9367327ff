"""
The worker: what runs on a compute node.

    python -m pypoolparty.worker WORK_DIR --worker-id ID

It reads the map's manifest and function, then claims chunks from the work
dir until none is left, runs each chunk's jobs and writes one result file per
chunk. Workers that start early take more chunks, so jobs of uneven length
spread over the workers as in ``multiprocessing.Pool``. The first job that
raises ends the worker: its chunk's result carries the exception and the
driver cancels the rest of the map.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import typing

from . import outcomes
from .workdir import Manifest, WorkDir


def adopt_driver_paths(manifest: Manifest) -> None:
    """Let this process import what the driver could import."""
    if os.path.isdir(manifest.cwd):
        os.chdir(manifest.cwd)
    missing = [p for p in manifest.sys_path if p not in sys.path]
    sys.path[:0] = missing


def load_function(work_dir: WorkDir):
    """(func, star, initializer, initargs) as the driver pickled them."""
    return pickle.loads(work_dir.read_func_pickle())


def run_chunk(
    func: typing.Callable,
    star: bool,
    jobs: typing.Sequence,
    chunk: int,
    worker_id: str,
) -> outcomes.ChunkResult:
    """Run the jobs of one chunk in order; stop at the first that raises."""
    result = outcomes.ChunkResult(chunk=chunk, worker_id=worker_id, outcomes=[])
    for job in jobs:
        try:
            value = func(*job) if star else func(job)
        except Exception as exc:
            result.outcomes.append(outcomes.Outcome(failure=outcomes.failure_of(exc)))
            break
        result.outcomes.append(outcomes.Outcome(value=value))
    return result


def failed_chunk(chunk: int, worker_id: str, failure: outcomes.Failure):
    return outcomes.ChunkResult(
        chunk=chunk,
        worker_id=worker_id,
        outcomes=[outcomes.Outcome(failure=failure)],
    )


def work(work_dir: WorkDir, worker_id: str) -> int:
    """Claim and run chunks until none is left. Returns the exit status."""
    manifest = work_dir.read_manifest()
    adopt_driver_paths(manifest)
    id_path = work_dir.register_worker(worker_id)

    setup_failure = None
    func, star = None, False
    try:
        func, star, initializer, initargs = load_function(work_dir)
        if initializer is not None:
            initializer(*initargs)
    except Exception as exc:
        # E.g. a module the function needs is missing on this node: the
        # driver raises this on the first chunk instead of resubmitting.
        setup_failure = outcomes.failure_of(exc)

    while True:
        candidates = work_dir.claimable_chunks(manifest)
        progressed = False
        for chunk in candidates:
            if not work_dir.try_claim(chunk, id_path):
                continue
            progressed = True
            if setup_failure is not None:
                result = failed_chunk(chunk, worker_id, setup_failure)
            else:
                try:
                    jobs = pickle.loads(work_dir.read_chunk_pickle(manifest, chunk))
                except Exception as exc:
                    result = failed_chunk(chunk, worker_id, outcomes.failure_of(exc))
                else:
                    result = run_chunk(func, star, jobs, chunk, worker_id)
            work_dir.write_result(chunk, outcomes.encode(result))
            if result.failure is not None:
                return 0
        if not progressed:
            return 0


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pypoolparty.worker",
        description="Run the jobs of a pypoolparty map (started by the pool).",
    )
    parser.add_argument("work_dir", help="the map's work dir")
    parser.add_argument("--worker-id", required=True, help="this worker's id")
    args = parser.parse_args(argv)
    work_dir = WorkDir(args.work_dir)
    try:
        return work(work_dir, args.worker_id)
    except FileNotFoundError as err:
        if not os.path.isdir(work_dir.path):
            # The driver finished or was stopped and removed the work dir.
            print("pypoolparty.worker: work dir is gone, exiting:", err, file=sys.stderr)
            return 0
        raise


if __name__ == "__main__":
    sys.exit(main())
