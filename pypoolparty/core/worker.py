"""
The worker: what runs on a compute node.

    python -m pypoolparty.core.worker WORK_DIR --worker-id ID

It reads the map's manifest and call spec, then claims chunks from the work
dir until none is left, runs each chunk's jobs and writes one result file per
chunk. Workers that start early take more chunks, so jobs of uneven length
spread over the workers as in ``multiprocessing.Pool``. In a ``map`` the
first job that raises ends the worker: its chunk's result carries the
exception and the driver cancels the rest of the map. In ``imap`` and
``apply_async`` batches every job runs and each failure travels on its own.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import typing

from . import outcomes
from .calling import CallSpec
from .workdir import Manifest, WorkDir


def adopt_driver_paths(manifest: Manifest) -> None:
    """Let this process import what the driver could import."""
    if os.path.isdir(manifest.cwd):
        os.chdir(manifest.cwd)
    missing = [p for p in manifest.sys_path if p not in sys.path]
    sys.path[:0] = missing


def load_spec(work_dir: WorkDir) -> CallSpec:
    """What to call, as the driver pickled it."""
    spec = pickle.loads(work_dir.read_func_pickle())
    if not isinstance(spec, CallSpec):
        raise TypeError("func.pickle does not hold a pypoolparty CallSpec")
    return spec


def run_chunk(
    spec: CallSpec, jobs: typing.Sequence, chunk: int, worker_id: str
) -> outcomes.ChunkResult:
    """Run the jobs of one chunk in order.

    With ``spec.stop_on_failure`` the chunk ends at the first job that raises.
    """
    result = outcomes.ChunkResult(chunk=chunk, worker_id=worker_id, outcomes=[])
    for job in jobs:
        try:
            value = spec.call(job)
        except Exception as exc:
            result.outcomes.append(outcomes.Outcome(failure=outcomes.failure_of(exc)))
            if spec.stop_on_failure:
                break
            continue
        result.outcomes.append(outcomes.Outcome(value=value))
    return result


def failed_chunk(
    chunk: int, worker_id: str, failure: outcomes.Failure, num_jobs: int
) -> outcomes.ChunkResult:
    """A chunk none of whose jobs could run: each gets ``failure``."""
    return outcomes.ChunkResult(
        chunk=chunk,
        worker_id=worker_id,
        outcomes=[outcomes.Outcome(failure=failure)] * num_jobs,
    )


def work(work_dir: WorkDir, worker_id: str) -> int:
    """Claim and run chunks until none is left. Returns the exit status."""
    manifest = work_dir.read_manifest()
    adopt_driver_paths(manifest)
    id_path = work_dir.register_worker(worker_id)

    setup_failure = None
    spec = None
    try:
        spec = load_spec(work_dir)
        if spec.initializer is not None:
            spec.initializer(*spec.initargs)
    except Exception as exc:
        # E.g. a module the function needs is missing on this node: the
        # driver raises this for the chunk's jobs instead of resubmitting.
        setup_failure = outcomes.failure_of(exc)

    # Chunks this worker claimed in an earlier run (it was requeued).
    own = work_dir.own_unfinished_chunks(worker_id)
    while True:
        candidates = own + work_dir.claimable_chunks(manifest)
        progressed = False
        for chunk in candidates:
            if chunk in own:
                own.remove(chunk)
            elif not work_dir.try_claim(chunk, id_path):
                continue
            progressed = True
            num_jobs = len(manifest.chunk_range(chunk))
            if setup_failure is not None:
                result = failed_chunk(chunk, worker_id, setup_failure, num_jobs)
            else:
                try:
                    jobs = pickle.loads(work_dir.read_chunk_pickle(manifest, chunk))
                except Exception as exc:
                    failure = outcomes.failure_of(exc)
                    result = failed_chunk(chunk, worker_id, failure, num_jobs)
                else:
                    result = run_chunk(spec, jobs, chunk, worker_id)
            work_dir.write_result(chunk, outcomes.encode(result))
            stop = spec is None or spec.stop_on_failure
            if result.failure is not None and stop:
                return 0
        if not progressed:
            return 0


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pypoolparty.core.worker",
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
            print("pypoolparty.core.worker: work dir is gone, exiting:", err, file=sys.stderr)
            return 0
        raise


if __name__ == "__main__":
    sys.exit(main())
