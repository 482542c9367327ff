"""
What the command line concludes from a pool's folder alone: whether its
driver lives (its process on this host, its heartbeat from any host), and
which maps ``clean`` may remove (ended, and no driver writing into them).
"""
import os
import time

from pypoolparty.core import map_control, work_listing
from pypoolparty.core.event_log import EventLog
from pypoolparty.core.pooldir import DRIVER_STALE_SECONDS, PoolDir, WorkerSettings


def make_pool(tmp_path, host="elsewhere", pid=12345):
    pool_dir = PoolDir.create(str(tmp_path), "pypoolparty-test-", WorkerSettings(idle_timeout=1.0), b"")
    log = EventLog(pool_dir.log_path)
    log.event("pool", scheduler="fake", driver_host=host, driver_pid=pid)
    log.close()
    return pool_dir


def make_map(pool_dir, *events):
    work_dir = pool_dir.new_map_dir()
    work_dir.write_inputs(
        func_pickle=b"", chunk_pickles=[b""], chunk_starts=[0, 1], sys_path=[], cwd="/"
    )
    log = EventLog(work_dir.log_path)
    log.event("map", num_jobs=1, num_chunks=1, scheduler="fake")
    for name in events:
        log.event(name)
    log.close()
    return work_dir


def age(pool_dir, seconds):
    then = time.time() - seconds
    os.utime(pool_dir.join("driver"), (then, then))


def test_a_driver_on_another_host_is_judged_by_its_heartbeat(tmp_path):
    pool_dir = make_pool(tmp_path)
    assert work_listing.driver_of(pool_dir).alive is True  # it beat when it made the folder
    age(pool_dir, DRIVER_STALE_SECONDS + 5)
    assert work_listing.driver_of(pool_dir).alive is False
    os.unlink(pool_dir.join("driver"))  # a pool of a version that kept none
    assert work_listing.driver_of(pool_dir).alive is None


def test_a_driver_on_this_host_is_looked_up(tmp_path):
    pool_dir = make_pool(tmp_path, host=os.uname().nodename, pid=os.getpid())
    assert work_listing.driver_of(pool_dir).alive is True
    age(pool_dir, DRIVER_STALE_SECONDS + 5)  # alive, but its pool stopped beating
    assert work_listing.driver_of(pool_dir).alive is False
    gone = make_pool(tmp_path, host=os.uname().nodename, pid=2**22 + 1)
    assert work_listing.driver_of(gone).alive is False


def test_clean_removes_only_maps_their_driver_let_go(tmp_path):
    pool_dir = make_pool(tmp_path)
    running = make_map(pool_dir)
    ending = make_map(pool_dir, "failed")  # the driver still salvages and writes the report
    done = make_map(pool_dir, "failed", "work_dir_kept")
    outcome = map_control.clean(str(tmp_path))
    assert outcome.removed == [done.path]
    kept = dict(outcome.kept)
    assert "running" in kept[running.path] and "still writes" in kept[ending.path]
    assert "did not end" in kept[pool_dir.path]

    age(pool_dir, DRIVER_STALE_SECONDS + 5)  # the driver died: nobody writes any more
    outcome = map_control.clean(ending.path)  # a map's folder: that map alone
    assert outcome.removed == [ending.path] and os.path.isdir(running.path)
    status = work_listing.pool_status(pool_dir)
    assert [m.state for m in status.maps] == [work_listing.MapState.DRIVER_GONE]
