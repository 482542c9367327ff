"""
The on-disk protocol between the driver and its workers.

The only code that knows the layout of a map's work dir::

    <map dir>/                 mode 0700, one per map, in the pool's dir
        manifest.json          what a worker needs to find its way
        func.pickle            cloudpickle of the CallSpec
        jobs.pickle            the chunks' pickles back to back; byte offsets
                               in the manifest
        claims/<chunk>         a hard link to the claiming worker's id file
                               (in the pool dir, see :mod:`.pooldir`)
        results/<chunk>.pickle one per finished chunk, written then renamed
        log.jsonl              the driver's JSON-lines log of this map
        cancel.json            written by ``pypoolparty cancel``: the driver
                               cancels the map when it sees it
        report.html            the report page, on failure or on request

The number of files grows with the number of chunks, never with the number
of jobs. Workers claim chunks with ``os.link``, which is atomic and fails if
the name exists, also on NFS. A claim stays when its chunk's result is
written; the driver removes it only when the claimant died without a result.
So the chunks without a claim are exactly the ones left to run.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import stat
import tempfile
import time
import typing


#: Environment variable naming where default work dirs are made.
WORK_DIR_ENV = "PYPOOLPARTY_WORK_DIR"

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FUNC = "func.pickle"
JOBS = "jobs.pickle"
CLAIMS = "claims"
RESULTS = "results"
LOG = "log.jsonl"
CANCEL = "cancel.json"
REPORT = "report.html"
RESULT_SUFFIX = ".pickle"


@dataclasses.dataclass
class Manifest:
    """What a worker reads first.

    Parameters
    ----------
    num_jobs : int
        Jobs in the map.
    chunk_starts : list of int
        Index of the first job of each chunk, plus ``num_jobs`` at the end.
    chunk_offsets : list of int
        Byte offset of each chunk's pickle in ``jobs.pickle``, plus its size.
    sys_path : list of str
        The driver's ``sys.path``.
    cwd : str
        The driver's working directory.
    """

    num_jobs: int
    chunk_starts: typing.List[int]
    chunk_offsets: typing.List[int]
    sys_path: typing.List[str]
    cwd: str
    format_version: int = FORMAT_VERSION

    @property
    def num_chunks(self) -> int:
        return len(self.chunk_starts) - 1

    def chunk_range(self, chunk: int) -> range:
        """The job indices of ``chunk``."""
        return range(self.chunk_starts[chunk], self.chunk_starts[chunk + 1])


def make_private_dir(path: str) -> None:
    """Create ``path`` (and parents) if missing; refuse it if it is unsafe.

    ``path`` is where the pool makes its folder (private, mode 0700).
    It is safe if only you can change what is in it: a directory of your
    own that group and others cannot write, or a shared one with the sticky
    bit owned by root or you (``/tmp``, a cluster's ``/scratch``), in which
    others can neither rename nor remove the folders you make.

    Raises
    ------
    WorkDirError
        If ``path`` is not a directory, or another user could replace the
        pool's folder in it and so plant pickles that the pool would load.
    """
    os.makedirs(path, mode=0o700, exist_ok=True)
    check_private_dir(path)


def _is_shared_sticky(st: os.stat_result) -> bool:
    """Writable by others, but with the sticky bit, owned by root or you."""
    return bool(st.st_mode & stat.S_ISVTX) and st.st_uid in (0, os.getuid())


def check_private_dir(path: str) -> None:
    """Raise :class:`~pypoolparty.errors.WorkDirError` unless ``path`` is safe.

    See :func:`make_private_dir` for what is safe.
    """
    from .. import errors  # the driver's concern: workers start without it

    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise errors.WorkDirError(
            "The work dir {!r} is not a directory. Pass work_dir= a "
            "directory of your own on a filesystem the compute nodes "
            "share.".format(path)
        )
    if _is_shared_sticky(st):
        return
    if st.st_uid != os.getuid():
        raise errors.WorkDirError(
            "The work dir {!r} belongs to user id {:d}, not to you ({:d}). "
            "Another user's directory could hold pickles that the pool "
            "would load; pass work_dir= a directory of your own.".format(
                path, st.st_uid, os.getuid()
            )
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise errors.WorkDirError(
            "The work dir {!r} can be written by group or others (mode "
            "{:o}) and has no sticky bit, so they could replace the pool's "
            "folders in it and plant pickles that the pool would load. "
            "Pass work_dir= a folder of your own inside it, or run "
            "'chmod go-w {:s}' if it is yours to change.".format(
                path, stat.S_IMODE(st.st_mode), path
            )
        )


def open_private(path: str, mode: str = "wb"):
    """Open a new file that only its owner can read (0600), whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, mode)


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or nothing."""
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix="." + name + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Folder:
    """A folder of the protocol (a pool's or a map's): paths in it, its
    log, its removal."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)

    def join(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def log_path(self) -> str:
        """The driver's JSON-lines log (``log.jsonl``)."""
        return self.join(LOG)

    def remove(self, attempts: int = 5) -> bool:
        """Remove the folder with everything in it; True if it is gone.

        It is first renamed to a hidden name, at once: a worker that still
        looks at it finds nothing, where a folder half removed would show
        chunks without their claims, to be claimed and run again. Tries
        again a little later while a file still appears in it (a worker
        that is being cancelled may still write its log).
        """
        doomed = os.path.join(
            os.path.dirname(self.path), ".removed-{:s}-{:s}".format(self.name, os.urandom(3).hex())
        )
        try:
            os.rename(self.path, doomed)
        except OSError:
            doomed = self.path
        for i in range(attempts):
            shutil.rmtree(doomed, ignore_errors=True)
            if not os.path.exists(doomed):
                return True
            time.sleep(0.05 * (i + 1))
        return False


class WorkDir(Folder):
    """One map's directory: the driver's and the workers' view of it."""

    # ---------------------------------------------------------------- paths

    def result_path(self, chunk: int) -> str:
        return self.join(RESULTS, "{:d}{:s}".format(chunk, RESULT_SUFFIX))

    def claim_path(self, chunk: int) -> str:
        return self.join(CLAIMS, "{:d}".format(chunk))

    # --------------------------------------------------------------- driver
    @classmethod
    def create(cls, parent: str, prefix: str) -> "WorkDir":
        """Make a new, private map dir in the pool dir ``parent``."""
        path = tempfile.mkdtemp(prefix=prefix, dir=parent)  # mode 0700
        for sub in (CLAIMS, RESULTS):
            os.mkdir(os.path.join(path, sub), mode=0o700)
        return cls(path)

    def write_inputs(
        self,
        func_pickle: bytes,
        chunk_pickles: typing.Sequence[bytes],
        chunk_starts: typing.List[int],
        sys_path: typing.List[str],
        cwd: str,
    ) -> Manifest:
        """Write func, jobs and manifest (the manifest last)."""
        write_atomic(self.join(FUNC), func_pickle)
        offsets = [0]
        with open_private(self.join(JOBS)) as f:
            for blob in chunk_pickles:
                f.write(blob)
                offsets.append(offsets[-1] + len(blob))
        manifest = Manifest(
            num_jobs=chunk_starts[-1],
            chunk_starts=list(chunk_starts),
            chunk_offsets=offsets,
            sys_path=list(sys_path),
            cwd=cwd,
        )
        write_atomic(
            self.join(MANIFEST),
            json.dumps(dataclasses.asdict(manifest)).encode(),
        )
        return manifest

    def finished_chunks(self) -> typing.Set[int]:
        """Chunks that have a result file."""
        out = set()
        for name in os.listdir(self.join(RESULTS)):
            if name.endswith(RESULT_SUFFIX) and not name.startswith("."):
                out.add(int(name[: -len(RESULT_SUFFIX)]))
        return out

    def has_result(self, chunk: int) -> bool:
        """True once the chunk's result file exists."""
        return os.path.exists(self.result_path(chunk))

    def read_result(self, chunk: int) -> bytes:
        with open(self.result_path(chunk), "rb") as f:
            return f.read()

    def claimed_chunks(self) -> typing.Set[int]:
        """Chunks that have a claim (names only, no file is read)."""
        return {int(n) for n in os.listdir(self.join(CLAIMS)) if n.isdigit()}

    def claims(
        self, chunks: typing.Optional[typing.Iterable[int]] = None
    ) -> typing.Dict[int, str]:
        """The id of the worker holding each claimed chunk.

        Only ``chunks`` are read if given (each is a file), else all.
        """
        out = {}
        for chunk in self.claimed_chunks() if chunks is None else chunks:
            try:
                with open(self.claim_path(chunk), "rt") as f:
                    out[chunk] = f.read().strip()
            except FileNotFoundError:
                pass
        return out

    @property
    def report_path(self) -> str:
        """Where the map's report page goes (``report.html``)."""
        return self.join(REPORT)

    def running_claims(self) -> typing.Dict[int, str]:
        """The claimed chunks without a result file, and who claimed each."""
        unfinished = self.claimed_chunks() - self.finished_chunks()
        return self.claims(sorted(unfinished))

    def release(self, chunk: int) -> None:
        """Make a chunk claimable again (its claimant died)."""
        try:
            os.unlink(self.claim_path(chunk))
        except FileNotFoundError:
            pass

    # --------------------------------------------------------------- worker
    def read_manifest(self) -> Manifest:
        with open(self.join(MANIFEST), "rt") as f:
            return Manifest(**json.load(f))

    def read_func_pickle(self) -> bytes:
        with open(self.join(FUNC), "rb") as f:
            return f.read()

    def read_chunk_pickle(self, manifest: Manifest, chunk: int) -> bytes:
        start = manifest.chunk_offsets[chunk]
        stop = manifest.chunk_offsets[chunk + 1]
        with open(self.join(JOBS), "rb") as f:
            f.seek(start)
            return f.read(stop - start)

    def create_log(self) -> str:
        """Create the driver's log file, private; return its path."""
        open_private(self.log_path, "wt").close()
        return self.log_path

    def own_unfinished_chunks(self, worker_id: str) -> typing.List[int]:
        """Chunks claimed under ``worker_id`` that have no result.

        A worker that the scheduler requeued (node failure, ``scontrol
        requeue``) runs again under its old id and must finish these.
        """
        done = self.finished_chunks()
        return sorted(
            c for c, w in self.claims().items() if w == worker_id and c not in done
        )

    def claimable_chunks(self, manifest: Manifest) -> typing.List[int]:
        """Chunks without a claim, in order (one listdir)."""
        taken = self.claimed_chunks()
        return [c for c in range(manifest.num_chunks) if c not in taken]

    def try_claim(self, chunk: int, id_path: str) -> bool:
        """Claim ``chunk`` for the worker whose id file is ``id_path``."""
        try:
            os.link(id_path, self.claim_path(chunk))
            return True
        except FileExistsError:
            return False

    # ------------------------------------------------------- command line
    def request_cancel(self, note: dict) -> None:
        """Ask the map's driver to cancel it (``note`` says who and when)."""
        write_atomic(self.join(CANCEL), json.dumps(note).encode())

    def cancel_request(self) -> typing.Optional[dict]:
        """What :meth:`request_cancel` wrote, or None (one open)."""
        try:
            with open(self.join(CANCEL), "rt") as f:
                text = f.read()
        except OSError:  # none, or a passing error of the filesystem: look again later
            return None
        try:
            return dict(json.loads(text))
        except (ValueError, TypeError):
            return {}  # there, but cut short

    def write_result(self, chunk: int, data: bytes) -> None:
        write_atomic(self.result_path(chunk), data)


class WorkRoot:
    """Where a pool makes its folder.

    Parameters
    ----------
    path : str or None
        The user's ``work_dir``. None: ``$PYPOOLPARTY_WORK_DIR`` or the
        current directory.
    """

    def __init__(self, path: typing.Optional[str]):
        self.path = None if path is None else os.path.abspath(path)

    def parent(self) -> str:
        """The folder the pool dir goes in (resolved when it is made)."""
        if self.path is not None:
            return self.path
        return os.path.abspath(os.environ.get(WORK_DIR_ENV) or os.getcwd())

    @staticmethod
    def prefix() -> str:
        """The start of a pool dir's name: ``pypoolparty-<date>-<time>-``."""
        return "pypoolparty-{:s}-".format(datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
