"""
The ``pypoolparty`` command line, run as a person runs it: in another
process, next to a real driver whose workers are detached local processes
(the processes adapter), while it runs, after it was SIGKILLed, and after it
ended. Exit codes and ``--json`` are what scripts rely on.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pypoolparty.core import work_listing

pytestmark = pytest.mark.timeout(120)

DRIVER = textwrap.dedent(
    """
    import functools, sys, time, pypoolparty

    def slow(x, seconds, failing):
        time.sleep(seconds)
        if x == failing:
            raise ValueError("job %d fails" % x)
        return x

    if __name__ == "__main__":
        work_dir, num_jobs, seconds, failing = sys.argv[1:5]
        store = sys.argv[5] if len(sys.argv) > 5 else None
        job = functools.partial(slow, seconds=float(seconds), failing=int(failing))
        with pypoolparty.processes.Pool(
            2, work_dir=work_dir, polling_interval=0.2, cache_dir=store
        ) as pool:
            try:
                print("RESULT", pool.map(job, range(int(num_jobs)), chunksize=1), flush=True)
            except Exception as exc:
                print("RAISED", type(exc).__name__, exc, flush=True)
                sys.exit(3)
    """
)


def eventually(predicate, timeout):
    """Wait (polling twice a second) until ``predicate()``; fail if it never is."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within {} s".format(timeout)
        time.sleep(0.5)


def cli(*args, check_code=None):
    """Run ``python -m pypoolparty ARGS``; return (exit code, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pypoolparty", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check_code is not None:
        assert proc.returncode == check_code, (proc.stdout, proc.stderr)
    return proc.returncode, proc.stdout, proc.stderr


def status_json(path):
    code, out, _ = cli("status", str(path), "--json")
    data = json.loads(out)
    assert data["exit_code"] == code
    return code, data


def start_driver(tmp_path, num_jobs=6, seconds=1.0, failing=-1, store=None):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    argv = [sys.executable, str(script), str(tmp_path / "work"), str(num_jobs), str(seconds), str(failing)]
    if store:
        argv.append(str(store))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def the_map(tmp_path):
    """The one map dir under the work dir, once its first result is in."""
    found = []

    def ready():
        for pool in work_listing.pool_dirs(str(tmp_path / "work")) if (tmp_path / "work").exists() else []:
            for m in work_listing.map_dirs(pool):
                if os.listdir(m.join("results")):
                    found.append(m.path)
                    return True
        return False

    eventually(ready, 60)
    return found[0]


def test_status_of_a_running_map_and_after_its_driver_was_killed(tmp_path):
    driver = start_driver(tmp_path, num_jobs=8, seconds=1.5)
    try:
        map_dir = the_map(tmp_path)
        code, data = status_json(tmp_path / "work")
        assert code == 0, data
        (pool,) = data["pools"]
        assert pool["driver"]["alive"] is True and pool["driver"]["pid"] == driver.pid
        assert pool["states_from"] == "scheduler"
        assert pool["workers"].get("running", 0) >= 1
        (m,) = pool["maps"]
        assert m["path"] == map_dir and m["state"] == "running"
        assert m["num_jobs"] == 8 and 1 <= m["jobs_done"] < 8
        code, text, _ = cli("status", str(tmp_path / "work"))
        assert code == 0 and "running" in text and "/8 jobs" in text

        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        code, data = status_json(map_dir)  # a map dir names its pool
        assert code == 1
        (m,) = data["pools"][0]["maps"]
        assert m["state"] == "driver gone"
        assert data["pools"][0]["driver"]["alive"] is False
        # The reaper cancels a dead driver's workers (no store).
        eventually(lambda: set(status_json(map_dir)[1]["pools"][0]["workers"]) == {"ended"}, 30)
        code, text, _ = cli("status", map_dir)
        assert code == 1 and "driver gone" in text
    finally:
        driver.kill()
        driver.wait()


def test_cancel_a_running_map_from_another_shell(tmp_path):
    driver = start_driver(tmp_path, num_jobs=20, seconds=2.0)
    try:
        map_dir = the_map(tmp_path)
        code, out, _ = cli("cancel", map_dir, "--json", check_code=0)
        outcome = json.loads(out)
        assert outcome["workers"] and not outcome["error"] and not outcome["already_ended"]
        out, _ = driver.communicate(timeout=30)
        assert driver.returncode == 3
        assert "RAISED CancelledError" in out and "pypoolparty cancel" in out
        code, data = status_json(map_dir)
        (pool,) = data["pools"]
        assert set(pool["workers"]) == {"ended"}
        (m,) = pool["maps"]
        assert m["state"] == "cancelled" and m["jobs_done"] < 20
        # The driver submitted nothing after the note: its two first workers only.
        assert sum(pool["workers"].values()) == 2
        code, out, _ = cli("cancel", map_dir, check_code=0)
        assert "had ended already" in out
    finally:
        driver.kill()
        driver.wait()


TWO_MAPS = textwrap.dedent(
    """
    import sys, time, pypoolparty

    if __name__ == "__main__":
        with pypoolparty.processes.Pool(2, work_dir=sys.argv[1], polling_interval=0.2) as pool:
            first = pool.map_async(time.sleep, [1.0] * 12, chunksize=1)
            time.sleep(0.5)
            second = pool.map_async(abs, range(-3, 3), chunksize=1)
            print("SECOND", second.get(timeout=60), flush=True)
            try:
                first.get(timeout=60)
            except Exception as exc:
                print("FIRST RAISED", type(exc).__name__, flush=True)
    """
)


def test_cancel_one_map_of_a_pool_leaves_the_other(tmp_path):
    script = tmp_path / "two.py"
    script.write_text(TWO_MAPS)
    driver = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "work")], stdout=subprocess.PIPE, text=True
    )
    try:
        first = the_map(tmp_path)
        eventually(lambda: len(work_listing.map_dirs(work_listing.pool_dirs(first)[0])) == 2, 30)
        code, out, _ = cli("cancel", first, "--json", check_code=0)
        assert json.loads(out)["workers"]
        # The other map goes on: the driver submits workers for it again.
        out, _ = driver.communicate(timeout=60)
        assert "SECOND [3, 2, 1, 0, 1, 2]" in out and "FIRST RAISED CancelledError" in out
    finally:
        driver.kill()
        driver.wait()


def test_cancel_after_the_driver_died_then_rerun_and_clean(tmp_path):
    # With a store, a dead driver's workers go on: only cancel stops them.
    store = tmp_path / "store"
    driver = start_driver(tmp_path, num_jobs=16, seconds=1.0, store=store)
    try:
        map_dir = the_map(tmp_path)
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        time.sleep(0.5)
        _, data = status_json(map_dir)
        assert data["pools"][0]["workers"].get("running", 0) >= 1
        code, out, _ = cli("clean", str(tmp_path / "work"), check_code=0)
        assert "Kept " + map_dir in out and "driver is gone" in out
        assert os.path.isdir(map_dir)

        code, out, _ = cli("cancel", map_dir, check_code=0)
        assert "Cancelled 2 workers" in out or "Cancelled 1 workers" in out
        eventually(lambda: set(status_json(map_dir)[1]["pools"][0]["workers"]) == {"ended"}, 30)
        code, data = status_json(map_dir)
        assert data["pools"][0]["maps"][0]["state"] == "cancelled" and code == 1
    finally:
        driver.kill()
        driver.wait()

    # The same call again: the cancelled map is not adopted (its note would
    # cancel the rerun); what the store holds is taken, the rest runs anew.
    rerun = start_driver(tmp_path, num_jobs=16, seconds=1.0, store=store)
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, out + err
    assert "RESULT " + str(list(range(16))) in out

    pool_path = os.path.dirname(map_dir)
    code, out, _ = cli("clean", str(tmp_path / "work"), "--dry-run", "--json", check_code=0)
    assert {map_dir, pool_path} <= set(json.loads(out)["removed"])
    assert os.path.isdir(map_dir)
    cli("clean", str(tmp_path / "work"), check_code=0)
    assert not os.path.exists(pool_path)
    code, out, _ = cli("status", str(tmp_path / "work"), check_code=0)
    assert "No pypoolparty pools" in out


def test_a_failed_map_is_listed_with_its_cause_and_cleaned(tmp_path):
    driver = start_driver(tmp_path, num_jobs=4, seconds=0.1, failing=2)
    out, _ = driver.communicate(timeout=60)
    assert driver.returncode == 3 and "RAISED ValueError job 2 fails" in out
    code, data = status_json(tmp_path / "work")
    assert code == 1
    (m,) = data["pools"][0]["maps"]
    assert m["state"] == "failed"
    (group,) = m["failures"]
    assert group["cause"] == "ValueError" and group["count"] == 1
    assert "job 2 fails" in group["example"]["traceback"]
    code, text, _ = cli("status", str(tmp_path / "work"))
    assert "1 × ValueError" in text
    assert os.path.isfile(os.path.join(m["path"], "report.html"))  # written on failure
    page = tmp_path / "again.html"
    code, out, _ = cli("report", m["path"], "-o", str(page), "--json", check_code=0)
    assert json.loads(out)["report"] == str(page)
    assert 'id="timeline"' in page.read_text() and "job 2 fails" in page.read_text()
    code, out, _ = cli("clean", str(tmp_path / "work"), check_code=0)
    assert "Removed " + m["path"] in out and not os.path.exists(m["path"])


def test_usage_errors_exit_with_2(tmp_path):
    assert cli()[0] == 2
    code, _, err = cli("status", str(tmp_path / "nowhere"))
    assert code == 2 and "not a folder" in err
    code, _, err = cli("cancel", str(tmp_path))
    assert code == 2 and "not a map's folder" in err
    code, _, err = cli("report", str(tmp_path))
    assert code == 2 and "not a map's folder" in err
    assert cli("clean")[0] == 2  # argparse: WORK_DIR is required
    code, out, _ = cli("status", str(tmp_path), check_code=0)
    assert "No pypoolparty pools" in out
