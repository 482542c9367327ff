"""
The core on a fake scheduler: the caller gives up.

terminate(), an exception raised in the thread waiting for a result, and a
driver that is killed: the map's workers are cancelled, waiting results end
with CancelledError, the work dir is kept.
"""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from fake_jobs import Gate, map_dirs, process_gone, square, wait_until
from pypoolparty import errors
from pypoolparty.testing import fake

pytestmark = pytest.mark.timeout(60)

HERE = os.path.dirname(os.path.abspath(__file__))


class Interrupt(Exception):
    """Stands for any exception that reaches a waiting caller."""


class InterruptSoon:
    """Raise ``exc_type`` in the main thread, 0.2 s after entering.

    Use inside ``pytest.raises(exc_type)`` around a call that blocks until
    the exception arrives, so that it cannot land anywhere else.
    """

    def __init__(self, exc_type):
        self.exc_type = exc_type

    def __enter__(self):
        def handler(signum, frame):
            raise self.exc_type("raised while waiting")

        self.old = signal.signal(signal.SIGUSR1, handler)
        self.thread = threading.Thread(target=self._send)
        self.thread.start()

    def _send(self):
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGUSR1)

    def __exit__(self, *exc):
        self.thread.join()
        signal.signal(signal.SIGUSR1, self.old)


def assert_all_cancelled(fake_scheduler):
    (ids,) = fake_scheduler.submitted
    assert sorted(w for c in fake_scheduler.cancelled for w in c) == sorted(ids)
    assert [fake_scheduler.word(w) for w in ids] == ["CANCELLED"] * len(ids)


def test_terminate_cancels_the_workers_and_the_waiting_results(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path / "pools") as pool:
        fake_scheduler = pool.scheduler
        res = gate.start_map(pool, range(4), 2)
        pool.terminate()
        with pytest.raises(errors.CancelledError):
            res.get(timeout=5)
        assert_all_cancelled(fake_scheduler)
        assert len(map_dirs(tmp_path / "pools")) == 1


def test_terminate_cancels_apply_calls_not_yet_submitted(tmp_path):
    with fake.pool(2, work_dir=tmp_path) as pool:
        res = pool.apply_async(square, (3,))
        pool.terminate()
        with pytest.raises(errors.CancelledError):
            res.get(timeout=5)
        assert pool.scheduler.calls["submit"] == 0


@pytest.mark.parametrize("exc_type", [Interrupt, KeyboardInterrupt])
def test_an_exception_while_waiting_in_get_cancels_the_map(tmp_path, exc_type):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path / "pools") as pool:
        fake_scheduler = pool.scheduler
        res = gate.start_map(pool, range(4), 2)
        with pytest.raises(exc_type):
            with InterruptSoon(exc_type):
                res.get()
        # At the moment the exception reaches the caller, all is cancelled.
        assert_all_cancelled(fake_scheduler)
        with pytest.raises(errors.CancelledError):
            res.get(timeout=5)
        assert len(map_dirs(tmp_path / "pools")) == 1


def test_an_exception_while_iterating_imap_cancels_the_map(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path) as pool:
        fake_scheduler = pool.scheduler
        it = pool.imap(gate.job(which=[1, 2, 3]), range(4), chunksize=1)
        assert next(it) == 0
        gate.wait_started(2)
        with pytest.raises(Interrupt):
            with InterruptSoon(Interrupt):
                next(it)
        assert_all_cancelled(fake_scheduler)


def test_an_exception_while_waiting_for_apply_cancels_its_batch(tmp_path):
    gate = Gate(tmp_path / "gate")
    with fake.pool(2, work_dir=tmp_path) as pool:
        fake_scheduler = pool.scheduler
        results = [pool.apply_async(gate.job(), (i,)) for i in range(3)]
        gate.wait_started(2)
        with pytest.raises(Interrupt):
            with InterruptSoon(Interrupt):
                results[0].get()
        assert_all_cancelled(fake_scheduler)
        for res in results:
            with pytest.raises(errors.CancelledError):
                res.get(timeout=5)


DRIVER = """\
import sys
from pypoolparty.testing import fake
from fake_jobs import Gate

gate = Gate(sys.argv[1])
scheduler = fake.FakeScheduler(state_dir=sys.argv[2])
with fake.pool(2, work_dir=sys.argv[3], scheduler=scheduler) as pool:
    pool.map(gate.job(), range(4), chunksize=1)
"""


def test_the_reaper_cancels_the_workers_of_a_killed_driver(tmp_path):
    gate = Gate(tmp_path / "gate")
    state_dir = tmp_path / "fake"
    state_dir.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]))
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, gate.folder, str(state_dir), str(tmp_path / "pools")],
        env=env,
    )
    try:
        gate.wait_started(2, timeout=20)
        pids = [pid for _, pid in gate.marks("started")]
    finally:
        driver.kill()
        driver.wait()
    requests = state_dir / "cancel-requests"
    assert wait_until(lambda: requests.exists() and requests.read_text().strip(), timeout=10)
    assert sorted(requests.read_text().split()) == ["1_0", "1_1"]
    # The orphaned workers run their chunks to the end and leave.
    gate.open()
    assert wait_until(lambda: all(process_gone(pid) for pid in pids))


def test_cancel_targets_takes_a_whole_array_only_when_its_size_is_known():
    from pypoolparty.core.scheduler import cancel_targets

    assert cancel_targets(["7_0", "7_1"], "_", {"7": 2}) == ["7"]
    assert cancel_targets(["7_0"], "_", {"7": 2}) == ["7_0"]
    # Another driver's array (adopted): its size is unknown here.
    assert cancel_targets(["9_1"], "_", {}) == ["9_1"]
