"""
The local SLURM cluster's configuration, tuned and stock, without daemons.

What a running stock cluster does is tested in test_local_slurm_cluster.py.
"""
import pytest

from pypoolparty.testing import local_slurm, slurm_config
from pypoolparty.testing.daemons import DaemonRecord
from pypoolparty.testing.local_slurm import LocalSlurmCluster

def conf_lines(cluster):
    return slurm_config.config_lines(cluster, 6817, [6818])


def tuning_lines(lines):
    return {line for line in lines if line.startswith(("SchedulerParameters=", "Epilog="))}


def test_default_config_is_tuned(tmp_path):
    found = tuning_lines(conf_lines(LocalSlurmCluster(str(tmp_path))))
    assert f"SchedulerParameters={slurm_config.SCHEDULER_PARAMETERS}" in found
    assert any(line.startswith("Epilog=/") for line in found)
    assert len(found) == 2


def test_stock_config_leaves_scheduling_to_slurms_defaults(tmp_path):
    tuned = conf_lines(LocalSlurmCluster(str(tmp_path)))
    stock = conf_lines(LocalSlurmCluster(str(tmp_path), stock=True))
    assert tuning_lines(stock) == set()
    # nothing else differs
    assert stock == [line for line in tuned if line not in tuning_lines(tuned)]


def test_extra_config_still_applies_to_a_stock_cluster(tmp_path):
    cluster = LocalSlurmCluster(
        str(tmp_path), stock=True, extra_config={"SchedulerParameters": "sched_interval=2"}
    )
    assert tuning_lines(conf_lines(cluster)) == {"SchedulerParameters=sched_interval=2"}


@pytest.mark.parametrize("argv, stock", [([], False), (["--stock"], True)])
def test_command_line_stock_option(tmp_path, argv, stock):
    command_line = local_slurm.COMMAND_LINE
    args = command_line.parser().parse_args(["start", *argv])
    cluster = command_line.make_cluster(str(tmp_path), args)
    assert cluster.stock is stock
    assert bool(tuning_lines(conf_lines(cluster))) is not stock


@pytest.mark.parametrize("written_stock", [False, True])
def test_a_running_cluster_of_the_other_kind_is_refused(tmp_path, written_stock):
    written = LocalSlurmCluster(str(tmp_path), stock=written_stock)
    slurm_config.make_directories(written)
    slurm_config.write_files(written)
    written.records.save(DaemonRecord("slurmd-localhost", 1, 1, ["slurmd"]))

    slurm_config.check_running_cluster_matches(LocalSlurmCluster(str(tmp_path), stock=written_stock))
    other = "stock" if written_stock else "tuned"
    with pytest.raises(local_slurm.LocalSlurmClusterError, match=f"a cluster with {other} scheduling"):
        slurm_config.check_running_cluster_matches(
            LocalSlurmCluster(str(tmp_path), stock=not written_stock)
        )
    with pytest.raises(local_slurm.LocalSlurmClusterError, match="other nodes"):
        slurm_config.check_running_cluster_matches(
            LocalSlurmCluster(str(tmp_path), num_nodes=2, stock=written_stock)
        )
