"""
The command line next to a driver on the real scheduler: ``status`` from
another process sees the map running and the workers the scheduler runs;
``cancel`` ends the map in its driver (a CancelledError that says who) and
leaves no job in the queue.
"""
import json
import subprocess
import sys
import textwrap

import pytest

from conftest import squeue_names, unique_name, wait_until
from test_cli import cli, status_json, the_map

pytestmark = pytest.mark.timeout(150)

DRIVER = textwrap.dedent(
    """
    import sys, time
    import pypoolparty.slurm.array, pypoolparty.sun_grid_engine

    kind, work_dir, name = sys.argv[1:4]
    if kind == "slurm":
        pool = pypoolparty.slurm.array.Pool(
            2, work_dir=work_dir, job_name=name, polling_interval=1.0,
            sbatch_options={"time": "00:10:00"},
        )
    else:
        pool = pypoolparty.sun_grid_engine.Pool(
            2, work_dir=work_dir, job_name=name, polling_interval=1.0
        )
    with pool:
        try:
            print("RESULT", pool.map(time.sleep, [3] * 20, chunksize=1), flush=True)
        except Exception as exc:
            print("RAISED", type(exc).__name__, exc, flush=True)
            sys.exit(3)
    """
)


def qstat_names(name):
    out = subprocess.run(["qstat", "-u", "*"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if name[:10] in line]


@pytest.mark.parametrize(
    "kind",
    [pytest.param("slurm", marks=pytest.mark.slurm), pytest.param("sge", marks=pytest.mark.sge)],
)
def test_status_and_cancel_from_another_shell(kind, request, tmp_path):
    request.getfixturevalue(kind)
    in_queue = (lambda n: squeue_names(n)) if kind == "slurm" else qstat_names
    name = unique_name("cli")
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    driver = subprocess.Popen(
        [sys.executable, str(script), kind, str(tmp_path / "work"), name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        map_dir = the_map(tmp_path)
        code, data = status_json(tmp_path / "work")
        assert code == 0, data
        (pool,) = data["pools"]
        assert pool["states_from"] == "scheduler" and pool["workers"].get("running", 0) >= 1
        (m,) = pool["maps"]
        assert m["state"] == "running" and m["num_jobs"] == 20 and m["jobs_done"] >= 1
        assert in_queue(name)

        code, out, _ = cli("cancel", map_dir, "--json", check_code=0)
        assert json.loads(out)["workers"], out
        out, err = driver.communicate(timeout=60)
        assert driver.returncode == 3, err
        assert "RAISED CancelledError" in out and "pypoolparty cancel" in out
        assert wait_until(lambda: not in_queue(name), 30), in_queue(name)
        code, data = status_json(map_dir)
        assert data["pools"][0]["maps"][0]["state"] == "cancelled" and code == 1
    finally:
        driver.kill()
        driver.wait()
