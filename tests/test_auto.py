"""pypoolparty.Pool() picks the pool of the scheduler it can reach."""
import logging

import pytest

import pypoolparty
import pypoolparty.local
import pypoolparty.slurm.array
import pypoolparty.sun_grid_engine

from conftest import TEST_SBATCH_OPTIONS


def test_slurm_where_a_controller_answers(slurm, monkeypatch, caplog):
    monkeypatch.delenv("PYPOOLPARTY_SCHEDULER", raising=False)
    assert pypoolparty.which_scheduler() == "slurm"
    with caplog.at_level(logging.INFO, logger="pypoolparty"):
        pool = pypoolparty.Pool(2, sbatch_options=dict(TEST_SBATCH_OPTIONS))
    try:
        assert isinstance(pool, pypoolparty.slurm.array.Pool)
        assert pool.map(abs, [-1, -2]) == [1, 2]
    finally:
        pool.terminate()
    assert "using the slurm pool" in caplog.text


def no_slurm_controller(tmp_path, monkeypatch):
    """Point SLURM's clients at a controller that is not running."""
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        "ClusterName=nowhere\nSlurmctldHost=localhost\nSlurmctldPort=1\n"
        "NodeName=localhost CPUs=1\nPartitionName=p Nodes=localhost Default=YES\n"
    )
    monkeypatch.setenv("SLURM_CONF", str(conf))


def test_sge_where_only_grid_engine_answers(sge, tmp_path, monkeypatch):
    monkeypatch.delenv("PYPOOLPARTY_SCHEDULER", raising=False)
    no_slurm_controller(tmp_path, monkeypatch)
    assert pypoolparty.which_scheduler() == "sge"
    with pypoolparty.Pool(1, sbatch_options={"time": "1"}) as pool:
        assert isinstance(pool, pypoolparty.sun_grid_engine.Pool)
        assert pool.map(abs, [-3]) == [3]


def test_local_where_no_scheduler_answers(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("PYPOOLPARTY_SCHEDULER", raising=False)
    no_slurm_controller(tmp_path, monkeypatch)
    monkeypatch.setenv("SGE_ROOT", str(tmp_path / "no-grid-engine"))
    assert pypoolparty.which_scheduler() == "local"
    with caplog.at_level(logging.INFO, logger="pypoolparty"):
        pool = pypoolparty.Pool(2, sbatch_options={"time": "1"})
    with pool:
        assert isinstance(pool, pypoolparty.local.Pool)
        assert pool.map(lambda x: x * 2, [1, 2]) == [2, 4]
    assert "using the local pool; ignoring sbatch_options" in caplog.text


@pytest.mark.parametrize(
    "name,cls",
    [
        ("local", pypoolparty.local.Pool),
        ("slurm", pypoolparty.slurm.array.Pool),
        ("sge", pypoolparty.sun_grid_engine.Pool),
    ],
)
def test_environment_forces_the_choice(monkeypatch, name, cls):
    monkeypatch.setenv("PYPOOLPARTY_SCHEDULER", name)
    assert pypoolparty.which_scheduler() == name
    pool = pypoolparty.Pool(1)
    pool.terminate()
    assert isinstance(pool, cls)


def test_unknown_forced_choice(monkeypatch):
    monkeypatch.setenv("PYPOOLPARTY_SCHEDULER", "pbs")
    with pytest.raises(ValueError, match="slurm, sge, local"):
        pypoolparty.which_scheduler()


@pytest.mark.parametrize(
    "name,cls,ignored",
    [
        ("local", pypoolparty.local.Executor, "sbatch_options"),
        ("slurm", pypoolparty.slurm.Executor, "max_tasks_per_child"),
        ("sge", pypoolparty.sun_grid_engine.Executor, "max_tasks_per_child, sbatch_options"),
    ],
)
def test_the_executor_is_chosen_as_the_pool_is(monkeypatch, caplog, name, cls, ignored):
    monkeypatch.setenv("PYPOOLPARTY_SCHEDULER", name)
    with caplog.at_level(logging.INFO, logger="pypoolparty"):
        ex = pypoolparty.Executor(1, sbatch_options={"time": "1"}, max_tasks_per_child=None)
    ex.shutdown(wait=True)
    assert isinstance(ex, cls)
    assert "using the {:s} executor; ignoring {:s}".format(name, ignored) in caplog.text


def test_the_local_executor_where_no_scheduler_answers(tmp_path, monkeypatch):
    monkeypatch.delenv("PYPOOLPARTY_SCHEDULER", raising=False)
    no_slurm_controller(tmp_path, monkeypatch)
    monkeypatch.setenv("SGE_ROOT", str(tmp_path / "no-grid-engine"))
    with pypoolparty.Executor(2) as ex:
        assert isinstance(ex, pypoolparty.local.Executor)
        doubled = ex.submit(lambda x: x * 2, 21)
        assert ex.submit(lambda x: x + 1, doubled).result(timeout=30) == 43
