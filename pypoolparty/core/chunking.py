"""
How a map's jobs are cut into chunks and how many workers run them.
"""
from __future__ import annotations

import dataclasses
import typing

#: Chunks per worker when the user gives no chunksize, as in the stdlib:
#: enough for workers that start late or get slow jobs to even out.
CHUNKS_PER_WORKER = 4


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """The chunks of a map and the number of workers to start.

    Parameters
    ----------
    chunk_starts : list of int
        Index of each chunk's first job, plus the number of jobs at the end.
    num_workers : int
        Workers to start: never more than ``processes`` nor than chunks.
    """

    chunk_starts: typing.List[int]
    num_workers: int

    @property
    def num_chunks(self) -> int:
        return len(self.chunk_starts) - 1

    @property
    def num_jobs(self) -> int:
        return self.chunk_starts[-1]


def default_chunksize(num_jobs: int, processes: int) -> int:
    """The stdlib's rule: about four chunks per process."""
    chunksize, extra = divmod(num_jobs, processes * CHUNKS_PER_WORKER)
    if extra:
        chunksize += 1
    return max(1, chunksize)


def plan(
    num_jobs: int, processes: int, chunksize: typing.Optional[int] = None
) -> ChunkPlan:
    """Cut ``num_jobs`` into chunks for at most ``processes`` workers.

    Raises
    ------
    ValueError
        If ``chunksize`` < 1 (as the stdlib) or ``processes`` < 1.
    """
    if processes < 1:
        raise ValueError("Number of processes must be at least 1")
    if chunksize is None:
        chunksize = default_chunksize(num_jobs, processes)
    if chunksize < 1:
        raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
    starts = list(range(0, num_jobs, chunksize)) + [num_jobs]
    num_chunks = len(starts) - 1
    return ChunkPlan(chunk_starts=starts, num_workers=min(processes, num_chunks))
