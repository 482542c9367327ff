"""
The progress bar of a map on the real SLURM, in a pseudo-terminal: the
workers it counts are the ones squeue reports running, a worker that SLURM
saw fail without its chunk's result shows as a resubmission, and the bar
reaches the total.
"""
import re

import pytest

from test_progress import FULL_BAR, SCRIPT, SQUARES, run_script

pytestmark = pytest.mark.timeout(150)

#: SCRIPT with its pool on SLURM (a poll every second).
ON_SLURM = SCRIPT.replace("import pypoolparty.processes\n", "import pypoolparty.slurm.array\n").replace(
    "pypoolparty.processes.Pool(2, work_dir=work_dir, progress=eval(setting))",
    "pypoolparty.slurm.array.Pool(2, work_dir=work_dir, progress=eval(setting), "
    "polling_interval=1.0, sbatch_options={'time': '00:05:00'})",
)


def test_the_bar_of_a_slurm_map_counts_its_workers_and_the_resubmitted_chunk(slurm, tmp_path):
    assert "slurm.array.Pool(2" in ON_SLURM  # the pool above was replaced
    stdout, terminal = run_script(tmp_path, delay=0.0, setting="None", jobs="die_once", text=ON_SLURM)
    assert stdout.strip() == SQUARES
    # While it ran: jobs done and workers that squeue (or a result) showed running.
    assert re.search(r"\| [1-9]/10 \[.*, [12] running, ", terminal), terminal
    ends = FULL_BAR.findall(terminal)
    assert ends and ends[-1][2] == "1", terminal  # job 3's worker died once
