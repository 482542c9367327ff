"""Functions that run on several MPI ranks (``resource_dict={"cores": n}``)."""
import os

INITIALIZED = []


def note_init(word):
    INITIALIZED.append(word)


def ranks(x):
    """What this rank sees: the job, COMM_WORLD's size and rank, a sum over
    the ranks (a collective on COMM_WORLD), the initializer's note, the pid."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    total = comm.allreduce(x, op=MPI.SUM)
    return {
        "x": x,
        "size": comm.Get_size(),
        "rank": comm.Get_rank(),
        "total": total,
        "init": list(INITIALIZED),
        "pid": os.getpid(),
    }


class RankError(Exception):
    pass


def fail_on_rank(x, bad_rank=1):
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    if rank == bad_rank:
        raise RankError("rank {} fails on {}".format(rank, x))
    return rank


def environment(*names):
    """The named variables as the call sees them."""
    return {name: os.environ.get(name) for name in names}


def job_of(x):
    """The scheduler's job of the worker that ran this call, and what it was given."""
    return {
        "x": x,
        "job": os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("JOB_ID"),
        "mem": os.environ.get("SLURM_MEM_PER_NODE"),
        "slots": os.environ.get("NSLOTS"),
    }


def exit_on_rank(x, bad_rank=1):
    """Rank ``bad_rank`` leaves the program in the middle of the call."""
    import sys

    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() == bad_rank:
        sys.exit(3)
    return x


def cpu_ticks(pid):
    """CPU time (user + system, in clock ticks) process ``pid`` has used."""
    with open("/proc/{:d}/stat".format(pid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
