"""
What an idle worker of a pool costs the shared filesystem: its metadata
system calls per second, counted with ``strace``.

A worker is idle once its pool has no work left for it and it has not yet
ended. Its metadata calls are those that reach a shared filesystem's
metadata server: path lookups and opens, ``stat`` in all its forms,
``getdents64`` (listing a directory), links, renames, unlinks (``strace -e
trace=%file,%stat,getdents64``). Reads and writes of open files are not
counted.

It needs the worker on this machine (a local cluster) and ``strace``
(Debian: ``apt-get install strace``); otherwise it says why it cannot
measure.
"""
import shutil
import signal
import subprocess
import tempfile
import time

from pypoolparty.testing import processes

TRACED = "trace=%file,%stat,getdents64"


def pool_array_jobs(job_name):
    """The job ids (array job ids for arrays) of the running jobs named ``job_name``."""
    out = subprocess.run(
        ["squeue", "--noheader", "--states=RUNNING", "--name=" + job_name, "--format=%A"],
        stdout=subprocess.PIPE, text=True, check=True,
    ).stdout
    return set(out.split())


def worker_pids(job_ids):
    """The processes on this machine that run pypoolparty's worker in these jobs."""
    found = []
    for pid in processes.list_pids():
        env = processes.read_environ(pid)
        job = env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID")
        argv = processes.read_cmdline(pid)
        if job in job_ids and any(a.startswith("pypoolparty.") for a in argv):
            found.append(pid)
    return found


def parse_strace_summary(text):
    """``{syscall: calls}`` from the table of ``strace -c``."""
    calls = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[-1] != "total" and fields[3].isdigit():
            calls[fields[-1]] = int(fields[3])
    return calls


def count_metadata_calls(pids, seconds):
    """
    Trace ``pids`` for ``seconds`` (less if they all end); return
    ``({syscall: calls}, seconds traced)``.

    Raises
    ------
    RuntimeError
        If strace failed (e.g. it may not trace here), with its message.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        argv = ["strace", "-f", "-c", "-e", TRACED, "-o", out.name]
        for pid in pids:
            argv += ["-p", str(pid)]
        t0 = time.monotonic()
        tracer = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        try:
            _, messages = tracer.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            tracer.send_signal(signal.SIGINT)  # it detaches and writes the summary
            _, messages = tracer.communicate(timeout=30)
        else:
            if tracer.returncode != 0:  # it ended before the window: not by SIGINT
                raise RuntimeError("strace: " + messages.strip()[-300:])
        traced = time.monotonic() - t0
        return parse_strace_summary(out.read()), traced


def idle_worker_metadata(job_name, settle, seconds):
    """
    One line on the metadata calls per second of the idle workers of the
    pool whose jobs are named ``job_name``, measured ``settle`` seconds
    after its last map ended, for ``seconds``.
    """
    time.sleep(settle)
    job_ids = pool_array_jobs(job_name)
    if not job_ids:
        return "n/a (workers exit with their map)"
    pids = worker_pids(job_ids)
    if not pids:
        return "n/a (no worker of the pool runs on this machine)"
    if shutil.which("strace") is None:
        return "n/a (strace is not installed: apt-get install strace)"
    try:
        calls, traced = count_metadata_calls(pids, seconds)
    except RuntimeError as err:
        return "n/a ({})".format(err)
    per_worker = sum(calls.values()) / traced / len(pids)
    top = ", ".join(
        "{:s} {:d}".format(name, n) for name, n in sorted(calls.items(), key=lambda c: -c[1])[:4]
    )
    return "{:.2f} per second per idle worker ({:d} workers, {:.1f} s, idle {:.0f} s before; {:s})".format(
        per_worker, len(pids), traced, settle, top or "no call"
    )
