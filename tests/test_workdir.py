import os
import stat

import pytest

from pypoolparty import errors
from pypoolparty.core import outcomes
from pypoolparty.core.pooldir import PoolDir, WorkerSettings
from pypoolparty.core.workdir import make_private_dir

#: Giving a directory to another user (chown) needs root.
needs_root = pytest.mark.skipif(
    os.getuid() != 0, reason="only root can give a directory to another user"
)


def new_pool_dir(parent) -> PoolDir:
    return PoolDir.create(str(parent), "pypoolparty-test-", WorkerSettings(idle_timeout=1.0), b"")


def test_pool_and_map_dirs_are_private(tmp_path):
    pool_dir = new_pool_dir(tmp_path / "root")
    wd = pool_dir.new_map_dir()
    paths = [tmp_path / "root", pool_dir.path, wd.path, wd.join("claims"), wd.join("results")]
    paths += [pool_dir.join(sub) for sub in ("open", "workers", "exits")]
    for path in paths:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    for name in ("settings.json", "init.pickle"):
        assert stat.S_IMODE(os.stat(pool_dir.join(name)).st_mode) == 0o600


def test_group_or_world_writable_dir_is_refused(tmp_path):
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o775)
    with pytest.raises(errors.WorkDirError, match="group or others"):
        make_private_dir(str(d))
    assert issubclass(errors.WorkDirError, PermissionError)


@needs_root
def test_dir_of_another_user_is_refused(tmp_path):
    d = tmp_path / "theirs"
    d.mkdir()
    os.chown(d, 12345, 12345)
    with pytest.raises(errors.WorkDirError, match="belongs to user id 12345"):
        make_private_dir(str(d))


def test_claims_are_exclusive(tmp_path):
    pool_dir = new_pool_dir(tmp_path)
    wd = pool_dir.new_map_dir()
    a, a_existed = pool_dir.register_worker("7_0")
    b, _ = pool_dir.register_worker("7_1")
    assert not a_existed and pool_dir.register_worker("7_0") == (a, True)
    assert wd.try_claim(3, a)
    assert not wd.try_claim(3, b)
    assert wd.claims() == {3: "7_0"}
    wd.release(3)
    assert wd.try_claim(3, b)
    assert wd.claims() == {3: "7_1"}


def test_unpicklable_result_becomes_maybe_encoding_error():
    import threading

    result = outcomes.ChunkResult(
        chunk=0,
        worker_id="1_0",
        outcomes=[outcomes.Outcome(value=1), outcomes.Outcome(value=threading.Lock())],
    )
    back = outcomes.decode(outcomes.encode(result))
    assert back.outcomes[0].value == 1
    position, failure = back.failure
    assert position == 1
    assert isinstance(failure.exception, errors.MaybeEncodingError)


def test_exception_that_cannot_be_unpickled_becomes_maybe_encoding_error():
    class Odd(Exception):
        def __init__(self, a, b):
            super().__init__(a)

    try:
        raise Odd(1, 2)
    except Odd as exc:
        failure = outcomes.failure_of(exc)
    result = outcomes.ChunkResult(0, "1_0", [outcomes.Outcome(failure=failure)])
    back = outcomes.decode(outcomes.encode(result))
    assert isinstance(back.outcomes[0].failure.exception, errors.MaybeEncodingError)
    assert "Odd" in back.outcomes[0].failure.traceback


@pytest.mark.parametrize("owner", ["root", "me"])
def test_sticky_shared_dir_is_accepted_and_map_dirs_in_it_are_private(tmp_path, owner):
    # Like /tmp or a cluster's /scratch: mode 1777.
    d = tmp_path / "scratch"
    d.mkdir()
    d.chmod(0o1777)
    if owner == "root" and os.getuid() != 0:
        pytest.skip("only root can give a directory to root")
    os.chown(d, 0 if owner == "root" else os.getuid(), -1)
    d.chmod(0o1777)
    make_private_dir(str(d))
    pool_dir = new_pool_dir(d)
    assert stat.S_IMODE(os.stat(pool_dir.path).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o1777  # left as it was


@needs_root
def test_sticky_dir_of_another_ordinary_user_is_refused(tmp_path):
    # Its owner may remove or rename what others put in it.
    d = tmp_path / "theirs"
    d.mkdir()
    os.chown(d, 12345, 12345)
    d.chmod(0o1777)
    with pytest.raises(errors.WorkDirError, match="belongs to user id 12345"):
        make_private_dir(str(d))


def test_the_real_tmp_is_accepted_and_never_changed():
    before = os.stat("/tmp")
    if not (before.st_mode & stat.S_ISVTX):
        pytest.skip("/tmp has no sticky bit on this machine")
    pool_dir = new_pool_dir("/tmp")
    try:
        assert stat.S_IMODE(os.stat(pool_dir.path).st_mode) == 0o700
    finally:
        pool_dir.remove()
    assert os.stat("/tmp").st_mode == before.st_mode


def test_world_writable_dir_without_sticky_bit_gets_no_chmod_advice_for_others(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(errors.WorkDirError, match="no sticky bit") as info:
        make_private_dir(str(d))
    assert "folder of your own inside it" in str(info.value)

