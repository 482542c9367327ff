"""
pypoolparty.slurm.array.Pool.map against the real SLURM cluster.
"""
import functools
import math
import os
import pickle
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time

import numpy
import pytest

import pypoolparty
import pypoolparty.core.commands
from pypoolparty import errors
from pypoolparty.core import event_log
from pypoolparty.slurm.array import Pool

from conftest import TEST_SBATCH_OPTIONS, most_at_once, noted_run, unique_name
from fake_jobs import map_dirs


def square(x):
    return x * x


def add(a, b):
    return a + b


def raise_on_three(x):
    if x == 3:
        raise KeyError("three", 3)
    return x


def slurm_env_of_job(_):
    keys = ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID")
    return {k: os.environ.get(k) for k in keys}


def job_limits(_):
    out = subprocess.run(
        ["scontrol", "show", "job", os.environ["SLURM_JOB_ID"]],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout
    return out


def pool_of(**kwargs):
    kwargs.setdefault("sbatch_options", dict(TEST_SBATCH_OPTIONS))
    kwargs.setdefault("polling_interval", 1.0)
    return Pool(**kwargs)


# ------------------------------------------------------------------ sizes
@pytest.mark.parametrize("num_jobs", [1, 10, 2500])
def test_map_returns_what_builtin_map_returns(slurm, num_jobs):
    jobs = list(range(num_jobs))
    with pool_of() as pool:
        assert pool.map(square, jobs) == [square(j) for j in jobs]


def test_empty_iterable_returns_empty_list_without_submitting(slurm, tmp_path):
    pool = pool_of(sbatch_path=str(tmp_path / "no-such-sbatch"), work_dir=str(tmp_path / "wd"))
    assert pool.map(square, []) == []
    assert pool.map(square, iter(())) == []
    assert not (tmp_path / "wd").exists()


def test_starmap(slurm):
    with pool_of() as pool:
        assert pool.starmap(add, [(1, 2), (3, 4), (5, 6)]) == [3, 7, 11]


def test_generator_as_iterable(slurm):
    with pool_of() as pool:
        assert pool.map(square, (i for i in range(7))) == [i * i for i in range(7)]


def test_exception_of_the_iterable_propagates_unchanged(slurm, tmp_path):
    class Broken(Exception):
        pass

    err = Broken("in the iterable")

    def jobs():
        yield 1
        raise err

    pool = pool_of(work_dir=str(tmp_path / "wd"))
    with pytest.raises(Broken) as info:
        pool.map(square, jobs())
    assert info.value is err
    assert info.value.__cause__ is None
    assert not (tmp_path / "wd").exists()


# ---------------------------------------------------------------- functions
def test_lambda_closure_partial_builtin_numpy(slurm):
    offset = 10

    def closure(x):
        return x + offset

    with pool_of(processes=2) as pool:
        assert pool.map(lambda x: x * 3, [1, 2]) == [3, 6]
        assert pool.map(closure, [1, 2]) == [11, 12]
        assert pool.map(functools.partial(add, 100), [1, 2]) == [101, 102]
        assert pool.map(sum, [[1, 2], [3, 4]]) == [3, 7]
        arrays = [numpy.arange(5), numpy.arange(3) * 2.0]
        assert pool.map(numpy.std, arrays) == [numpy.std(a) for a in arrays]
        assert pool.map(math.sqrt, [4, 9]) == [2.0, 3.0]


def run_script(script, cwd, env=None):
    """Run a user's script with this Python; its stdout."""
    proc = subprocess.run(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        cwd=str(cwd),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_function_from_main_script(slurm, tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(
        textwrap.dedent(
            """
            import pypoolparty.slurm.array

            def triple(x):
                return 3 * x

            if __name__ == "__main__":
                pool = pypoolparty.slurm.array.Pool(
                    sbatch_options={"time": "00:10:00"}, polling_interval=1.0
                )
                print(pool.map(triple, range(5)))
            """
        )
    )
    assert run_script(script, cwd=tmp_path).strip() == "[0, 3, 6, 9, 12]"


def test_worker_sees_driver_sys_path_and_cwd(slurm, tmp_path, monkeypatch):
    module_dir = tmp_path / "my_modules"
    module_dir.mkdir()
    (module_dir / "my_user_module.py").write_text(
        "import os\n\ndef where(_):\n    return os.getcwd()\n"
    )
    monkeypatch.syspath_prepend(str(module_dir))
    import my_user_module

    cwd = tmp_path / "the_cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with pool_of() as pool:
        assert pool.map(my_user_module.where, [0, 1]) == [str(cwd), str(cwd)]


def test_workers_and_the_reaper_import_the_drivers_pypoolparty(slurm, tmp_path):
    """Also where it is not the installed one: a copy next to the user's script."""
    checkout = tmp_path / "checkout"
    shutil.copytree(
        os.path.dirname(os.path.abspath(pypoolparty.__file__)),
        checkout / "pypoolparty",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    script = checkout / "driver.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            import pypoolparty.slurm.array

            def where(_):
                import pypoolparty
                return pypoolparty.__file__

            def reapers_pythonpath():
                for pid in filter(str.isdigit, os.listdir("/proc")):
                    try:
                        with open("/proc/" + pid + "/stat") as f:
                            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                        with open("/proc/" + pid + "/cmdline", "rb") as f:
                            reaper = b"pypoolparty.core.reaper" in f.read()
                        with open("/proc/" + pid + "/environ", "rb") as f:
                            environ = f.read().split(b"\\0")
                    except OSError:
                        continue
                    if ppid == os.getpid() and reaper:
                        for entry in environ:
                            if entry.startswith(b"PYTHONPATH="):
                                return entry[len(b"PYTHONPATH="):].decode()
                return "none"

            if __name__ == "__main__":
                pool = pypoolparty.slurm.array.Pool(
                    sbatch_options={"time": "00:10:00"}, polling_interval=1.0
                )
                print(pypoolparty.__file__)
                print(pool.map(where, [0])[0])
                print(reapers_pythonpath().split(os.pathsep)[0])
            """
        )
    )
    elsewhere = tmp_path / "elsewhere"  # the driver's cwd: nothing to import there
    elsewhere.mkdir()
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    drivers, workers, reapers_path = run_script(script, cwd=elsewhere, env=env).split()
    assert drivers == str(checkout / "pypoolparty" / "__init__.py")
    assert workers == drivers
    assert reapers_path == str(checkout)


# --------------------------------------------------------------- failures
def test_job_exception_is_reraised_with_remote_traceback(slurm, tmp_path):
    wd = tmp_path / "wd"
    pool = pool_of(work_dir=str(wd), job_name=unique_name())
    with pytest.raises(KeyError) as info:
        pool.map(raise_on_three, range(8), chunksize=1)
    exc = info.value
    assert type(exc) is KeyError
    assert exc.args == ("three", 3)
    cause = exc.__cause__
    assert isinstance(cause, errors.RemoteTraceback)
    text = str(cause)
    assert "raise_on_three" in text
    assert "KeyError" in text
    kept = map_dirs(str(wd))
    assert len(kept) == 1
    assert str(wd / kept[0]) in text
    events = [e["event"] for e in event_log.read(str(wd / kept[0] / "log.jsonl"))]
    assert "job_raised" in events
    assert "work_dir_kept" in events


def test_unpicklable_func_or_job_fails_before_submitting(slurm, tmp_path):
    lock = threading.Lock()
    wd = tmp_path / "wd"
    pool = pool_of(work_dir=str(wd), sbatch_path=str(tmp_path / "no-sbatch"))
    def holds_a_lock(x):
        return lock

    with pytest.raises(pickle.PicklingError, match="func"):
        pool.map(holds_a_lock, [1, 2])
    with pytest.raises(pickle.PicklingError, match="job 1 "):
        pool.map(square, [1, lock, 3])
    assert not wd.exists() or map_dirs(str(wd)) == []


def test_invalid_partition_fails_within_seconds_with_sbatchs_message(slurm):
    pool = pool_of(sbatch_options={"partition": "no_such_partition", "time": "1"})
    t0 = time.monotonic()
    with pytest.raises(errors.SchedulerCommandError) as info:
        pool.map(square, [1, 2])
    assert time.monotonic() - t0 < 10
    assert "sbatch" in str(info.value)
    assert "invalid partition" in str(info.value).lower()


def test_missing_command_fails_at_once(slurm, tmp_path):
    pool = pool_of(sbatch_path=str(tmp_path / "missing-sbatch"), processes=1)
    t0 = time.monotonic()
    with pytest.raises(errors.SchedulerCommandError, match="missing-sbatch"):
        pool.map(square, [1])
    assert time.monotonic() - t0 < 5


def test_transient_sbatch_failures_are_retried(slurm, tmp_path):
    counter = tmp_path / "failures"
    fake = tmp_path / "flaky-sbatch"
    fake.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            n=$(cat {c} 2>/dev/null || echo 0)
            if [ "$n" -lt 2 ]; then
                echo $((n + 1)) > {c}
                echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2
                exit 1
            fi
            exec sbatch "$@"
            """.format(c=counter)
        )
    )
    fake.chmod(0o755)
    policy = pypoolparty.core.commands.RetryPolicy(first_delay=0.1, deadline=30)
    pool = pool_of(sbatch_path=str(fake), retry_policy=policy, keep_work_dir=True,
                   work_dir=str(tmp_path / "wd"))
    assert pool.map(square, [1, 2, 3]) == [1, 4, 9]
    assert counter.read_text().strip() == "2"
    (map_dir,) = map_dirs(str(tmp_path / "wd"))
    events = event_log.read(str(tmp_path / "wd" / map_dir / "log.jsonl"))
    failed = [e for e in events if e["event"] == "command_failed"]
    assert len(failed) == 2 and all(e["transient"] for e in failed)


# ---------------------------------------------------------------- arrays
def test_processes_caps_running_tasks(slurm, tmp_path):
    wd = tmp_path / "wd"
    pool = pool_of(processes=1, work_dir=str(wd), keep_work_dir=True)
    assert len(pool.map(slurm_env_of_job, range(4), chunksize=1)) == 4
    (map_dir,) = map_dirs(str(wd))
    events = event_log.read(str(wd / map_dir / "log.jsonl"))
    sbatch = [e["argv"] for e in events if e["event"] == "command" and "--parsable" in e["argv"]]
    assert len(sbatch) == 1
    assert "--array=0-0" in sbatch[0]  # the pool never asks for more than processes


def test_processes_must_be_positive():
    with pytest.raises(ValueError):
        Pool(processes=0)
    with pytest.raises(ValueError):
        Pool(processes=-3)


def test_more_workers_than_max_array_size_are_split_over_arrays(slurm, tmp_path):
    max_array_size = int(
        subprocess.run(
            ["scontrol", "show", "config"], stdout=subprocess.PIPE, text=True, check=True
        ).stdout.split("MaxArraySize")[1].split("=")[1].split()[0]
    )
    num = max_array_size + 5
    wd = tmp_path / "wd"
    pool = pool_of(processes=num, work_dir=str(wd), keep_work_dir=True)
    assert pool.map(square, range(num), chunksize=1) == [i * i for i in range(num)]
    (map_dir,) = map_dirs(str(wd))
    events = event_log.read(str(wd / map_dir / "log.jsonl"))
    sbatch = [e["argv"] for e in events if e["event"] == "command" and "--parsable" in e["argv"]]
    arrays = sorted(a for argv in sbatch for a in argv if a.startswith("--array="))
    assert arrays == [
        "--array=0-{:d}".format(max_array_size - 1),
        "--array=0-4",
    ]
    (submitted,) = [e["workers"] for e in events if e["event"] == "submitted"]
    assert len(submitted) == num
    assert len({w.split("_")[0] for w in submitted}) == 2


def test_a_loop_of_apply_async_is_one_submission(slurm, tmp_path):
    wd = tmp_path / "wd"
    pool = pool_of(processes=2, work_dir=str(wd), keep_work_dir=True)
    results = [pool.apply_async(add, (i, i)) for i in range(30)]
    assert [r.get(60) for r in results] == [2 * i for i in range(30)]
    (map_dir,) = map_dirs(str(wd))
    events = event_log.read(str(wd / map_dir / "log.jsonl"))
    sbatch = [e for e in events if e["event"] == "command" and "--parsable" in e["argv"]]
    assert len(sbatch) == 1


def test_sbatch_options_pass_through(slurm):
    with pool_of(sbatch_options={"time": "00:07:00", "cpus-per-task": 1, "exclusive": True}) as pool:
        (text,) = pool.map(job_limits, [0])
    assert "TimeLimit=00:07:00" in text
    assert "OverSubscribe=NO" in text


def test_legacy_keywords_of_0_3_still_work(slurm, tmp_path):
    pool = Pool(
        num_simultaneously_running_tasks=2,
        python_path=sys.executable,
        polling_interval=1.0,
        work_dir=str(tmp_path / "legacy"),
        keep_work_dir=False,
        verbose=False,
        slurm_call_timeout=30.0,
        max_num_resubmissions=2,
        sbatch_path="sbatch",
        squeue_path="squeue",
        scancel_path="scancel",
    )
    assert pool.map(square, [1, 2, 3]) == [1, 4, 9]


def sbatch_calls(work_dir):
    (map_dir,) = map_dirs(work_dir)
    events = event_log.read(os.path.join(work_dir, map_dir, "log.jsonl"))
    return [e for e in events if e["event"] in ("command", "command_failed")
            and "--parsable" in e["argv"]]


def test_num_simultaneously_running_tasks_is_the_budget_of_processes(slurm, tmp_path):
    """pypoolparty 0.3's name of processes: fewer than the CPUs (the default)."""
    wd, notes = tmp_path / "wd", tmp_path / "notes"
    notes.mkdir()
    pool = Pool(
        num_simultaneously_running_tasks=1,
        sbatch_options=dict(TEST_SBATCH_OPTIONS),
        polling_interval=1.0,
        work_dir=str(wd),
        keep_work_dir=True,
    )
    func = functools.partial(noted_run, str(notes), 1)
    assert pool.map(func, range(3), chunksize=1) == [0, 1, 2]
    (call,) = sbatch_calls(str(wd))
    assert "--array=0-0" in call["argv"]
    assert most_at_once(str(notes)) == 1


def test_slurm_call_timeout_ends_a_hanging_call_and_retries(slurm, tmp_path):
    calls = tmp_path / "calls"
    slow = tmp_path / "slow-sbatch"
    slow.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            echo call >> {calls}
            if [ "$(wc -l < {calls})" -eq 1 ]; then exec sleep 60; fi
            exec sbatch "$@"
            """.format(calls=calls)
        )
    )
    slow.chmod(0o755)
    wd = tmp_path / "wd"
    pool = pool_of(
        sbatch_path=str(slow), slurm_call_timeout=2.0, work_dir=str(wd), keep_work_dir=True
    )
    t0 = time.monotonic()
    assert pool.map(square, [1, 2, 3]) == [1, 4, 9]
    assert time.monotonic() - t0 < 30
    failed, succeeded = sbatch_calls(str(wd))
    assert failed["event"] == "command_failed" and failed["transient"]
    assert "timed out after 2.0 s" in failed["stderr"]
    assert succeeded["event"] == "command" and succeeded["attempt"] == 2


# --------------------------------------------------------------- work dir
def test_default_work_dir_is_new_private_and_removed_after_success(slurm, tmp_path, monkeypatch):
    monkeypatch.delenv("PYPOOLPARTY_WORK_DIR", raising=False)
    pool = pool_of(keep_work_dir=False)
    before = set(os.listdir(tmp_path))
    result = pool.map_async(square, range(20))
    made = set(os.listdir(tmp_path)) - before
    assert len(made) == 1
    root = tmp_path / made.pop()
    (map_dir,) = map_dirs(str(tmp_path))
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(map_dir).st_mode) == 0o700
    assert result.get(timeout=120) == [i * i for i in range(20)]
    assert not os.path.exists(map_dir)
    pool.close()
    pool.join()
    assert not root.exists()


def test_work_dir_env_variable(slurm, tmp_path, monkeypatch):
    base = tmp_path / "scratch"
    base.mkdir()
    monkeypatch.setenv("PYPOOLPARTY_WORK_DIR", str(base))
    pool = pool_of(keep_work_dir=True)
    assert pool.map(square, [2]) == [4]
    (root,) = os.listdir(base)
    assert len(map_dirs(str(base))) == 1


def test_result_files_are_private(slurm, tmp_path):
    wd = tmp_path / "wd"
    pool = pool_of(work_dir=str(wd), keep_work_dir=True)
    pool.map(square, range(10))
    (map_dir,) = map_dirs(str(wd))
    for dirpath, dirnames, filenames in os.walk(wd / map_dir):
        for d in dirnames:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, d)).st_mode) == 0o700
        for f in filenames:
            mode = stat.S_IMODE(os.stat(os.path.join(dirpath, f)).st_mode)
            assert mode & 0o077 == 0, (f, oct(mode))


def test_files_per_map_do_not_grow_with_the_number_of_jobs(slurm, tmp_path):
    counts = []
    for num_jobs in (100, 5000):
        wd = tmp_path / "wd{:d}".format(num_jobs)
        pool = pool_of(processes=2, work_dir=str(wd), keep_work_dir=True)
        assert pool.map(square, range(num_jobs)) == [i * i for i in range(num_jobs)]
        (map_dir,) = map_dirs(str(wd))
        counts.append(sum(len(f) for _, _, f in os.walk(wd / map_dir)))
    assert counts[0] == counts[1]
    assert counts[0] < 40


def test_unsafe_work_dir_is_refused(slurm, tmp_path):
    wd = tmp_path / "open"
    wd.mkdir()
    wd.chmod(0o777)
    pool = pool_of(work_dir=str(wd))
    with pytest.raises(errors.WorkDirError, match="chmod go-w"):
        pool.map(square, [1])


def test_single_job_pool_with_num_chunks_submits_one_job_per_chunk(slurm, tmp_path):
    import pypoolparty.slurm

    wd = tmp_path / "wd"
    pool = pypoolparty.slurm.Pool(
        num_chunks=3,
        sbatch_options=dict(TEST_SBATCH_OPTIONS),
        work_dir=str(wd),
        keep_work_dir=True,
    )
    assert pool.map(square, range(10)) == [i * i for i in range(10)]
    (map_dir,) = map_dirs(str(wd))
    events = event_log.read(str(wd / map_dir / "log.jsonl"))
    sbatch = [e["argv"] for e in events if e["event"] == "command" and "--parsable" in e["argv"]]
    assert len(sbatch) == 3
    assert not any(a.startswith("--array") for argv in sbatch for a in argv)
    (submitted,) = [e["workers"] for e in events if e["event"] == "submitted"]
    assert len(submitted) == 3
