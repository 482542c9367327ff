"""
A worker on several MPI ranks: each call runs on all of them.

    mpirun -n N python -m pypoolparty.core.worker POOL_DIR --ranks N --worker-id ID

(``srun`` in place of ``mpirun`` on SLURM.) Rank 0 is the worker the pool
knows: it claims chunks and writes results as any worker does. For each job
it sends the call to the other ranks, runs its own part, and collects
theirs. The job's result is the list of every rank's return value, rank 0
first (as executorlib returns it); if a rank raises, the job raises the
lowest such rank's exception. A rank that exits (``SystemExit``) ends the
worker, as it ends a worker of one process: the job counts as lost.

The other ranks only follow rank 0's messages on a duplicate of
``MPI.COMM_WORLD``, so the user's function has ``COMM_WORLD`` to itself.
Messages are picked up by polling with back-off, not by a blocking receive:
Open MPI's blocking receive spins a CPU while the worker waits for work.
Objects travel by cloudpickle, as everything else of a pool does.
"""
from __future__ import annotations

import pickle
import sys
import typing

import cloudpickle

from . import outcomes
from .calling import CallSpec
from .pooldir import PoolDir

#: Message kinds from rank 0 to the others.
INIT, OPEN, FORGET, CALL, STOP = "init", "open", "forget", "call", "stop"
#: The tag of every message between the ranks.
TAG = 7321
#: Seconds between looks for a message: the first, the most, and the
#: growth of the wait with each look that found nothing.
POLL = dict(low=0.0005, high=0.05, growth=1.5)


class RankLink:
    """Messages between the ranks of one worker, picked up by polling."""

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()

    def send(self, message: typing.Any, dest: int) -> None:
        self.comm.send(cloudpickle.dumps(message), dest=dest, tag=TAG)

    def receive(self, source: int) -> typing.Any:
        from .worker import Backoff

        backoff = Backoff(**POLL)
        while not self.comm.Iprobe(source=source, tag=TAG):
            backoff.sleep()
        return pickle.loads(self.comm.recv(source=source, tag=TAG))

    def to_others(self, message: typing.Any) -> None:
        data = cloudpickle.dumps(message)
        for rank in range(1, self.size):
            self.comm.send(data, dest=rank, tag=TAG)


class RankCalls:
    """Rank 0's way to run the initializer and jobs: on every rank.

    Parameters
    ----------
    link : RankLink
        The worker's ranks.
    """

    def __init__(self, link: RankLink):
        self.link = link

    def initialize(self, init_pickle: bytes) -> None:
        from .worker import run_initializer

        self.link.to_others((INIT, init_pickle))
        run_initializer(init_pickle)

    def open(self, name: str, view, spec_pickle: bytes) -> None:
        manifest = view.manifest
        self.link.to_others((OPEN, name, spec_pickle, manifest.cwd, manifest.sys_path))

    def forget(self, name: str) -> None:
        self.link.to_others((FORGET, name))

    def outcome(self, name: str, spec: CallSpec, job: typing.Any) -> outcomes.Outcome:
        from .worker import call_outcome

        self.link.to_others((CALL, name, job))
        own = call_outcome(spec, job)
        parts = [own] + [
            outcomes.decode(self.link.receive(rank)).outcomes[0] for rank in range(1, self.link.size)
        ]
        for part in parts:
            if part.failure is not None and not isinstance(part.failure.exception, Exception):
                # A rank's SystemExit or KeyboardInterrupt ends the worker, as
                # it ends a worker of one process: the call's job is lost.
                raise part.failure.exception
        return combined(parts)

    def stop(self) -> None:
        self.link.to_others((STOP,))


def combined(parts: typing.Sequence[outcomes.Outcome]) -> outcomes.Outcome:
    """One job's outcome from its ranks': the list of values, or the
    failure of the lowest rank that raised."""
    for rank, part in enumerate(parts):
        if part.failure is not None:
            failure = part.failure
            if rank:
                failure = outcomes.Failure(
                    failure.exception, "on MPI rank {:d}:\n{:s}".format(rank, failure.traceback)
                )
            return outcomes.Outcome(failure=failure)
    return outcomes.Outcome(value=[part.value for part in parts])


def follow(link: RankLink) -> None:
    """A rank other than 0: run what rank 0 sends until it says stop."""
    from .worker import adopt_driver_paths, call_outcome, load_spec, run_initializer

    specs: typing.Dict[str, typing.Union[CallSpec, outcomes.Failure]] = {}
    setup_failure: typing.Optional[outcomes.Failure] = None
    while True:
        message = link.receive(0)
        kind = message[0]
        if kind == STOP:
            return
        if kind == INIT:
            try:
                run_initializer(message[1])
            except BaseException as exc:  # SystemExit too: rank 0 then ends the worker
                setup_failure = outcomes.failure_of(exc)
        elif kind == OPEN:
            name, spec_pickle, cwd, sys_path = message[1:]
            adopt_driver_paths(cwd, sys_path)
            try:
                specs[name] = load_spec(spec_pickle)
            except Exception as exc:
                specs[name] = outcomes.failure_of(exc)
        elif kind == FORGET:
            specs.pop(message[1], None)
        elif kind == CALL:
            name, job = message[1:]
            spec = specs.get(name)
            failure = setup_failure
            if failure is None and not isinstance(spec, CallSpec):
                failure = spec or outcomes.failure_of(LookupError("rank 0 never sent map " + name))
            if failure is not None:
                outcome = outcomes.Outcome(failure=failure)
            else:
                try:
                    outcome = call_outcome(spec, job)
                except BaseException as exc:  # SystemExit, KeyboardInterrupt: rank 0 ends the worker
                    outcome = outcomes.Outcome(failure=outcomes.failure_of(exc))
            result = outcomes.ChunkResult(chunk=-1, worker_id="", outcomes=[outcome])
            link.send(outcomes.encode(result), 0)


def main(pool_dir: PoolDir, worker_id: str, ranks: int) -> int:
    """Serve the pool on ``ranks`` MPI ranks; rank 0 is the worker."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        print(
            "pypoolparty.core.worker: a call on {:d} cores needs mpi4py in the "
            "workers' Python ({})".format(ranks, err),
            file=sys.stderr,
        )
        return 1
    link = RankLink(MPI.COMM_WORLD.Dup())
    if link.size != ranks:
        if link.rank == 0:
            print(
                "pypoolparty.core.worker: MPI started {:d} rank(s), not {:d}: the "
                "launcher did not start the ranks as one MPI job (on SLURM, srun "
                "may need --mpi=pmix: resource_dict['slurm_cmd_args'])".format(link.size, ranks),
                file=sys.stderr,
            )
        return 1
    if link.rank != 0:
        follow(link)
        return 0
    from .worker import Worker

    calls = RankCalls(link)
    try:
        worker = Worker(pool_dir, worker_id, calls)
        reason = worker.serve()
        pool_dir.write_exit(worker_id, reason)
    finally:
        calls.stop()
    return 0
