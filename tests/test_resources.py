"""
Per-call resources: a ``resource_dict`` read into :class:`Resources`, and
what each adapter makes of them (its submit options and the command that
starts a worker's MPI ranks). No scheduler runs here.
"""
import shlex

import pytest

from pypoolparty.core import resources
from pypoolparty.core.resources import Resources
from pypoolparty.core.scheduler import SubmitRequest
from pypoolparty.processes.adapter import ProcessScheduler
from pypoolparty.slurm.adapter import SlurmArrayScheduler, SlurmCommands, SlurmJobScheduler
from pypoolparty.sun_grid_engine.adapter import SgeArrayScheduler, format_options


def known(key):
    return key in ("mem", "time", "partition")


def request():
    return SubmitRequest(
        num_workers=2,
        max_running=2,
        worker_argv=["python3", "-m", "pypoolparty.core.worker", "/shared/pool dir"],
        name="ppp",
        log_dir="/shared/logs",
        cwd="/shared",
        env={},
    )


def test_executorlibs_keys_and_the_schedulers_own_by_name():
    got = resources.parse(
        {"cores": 4, "threads_per_core": 2, "gpus_per_core": 1, "cwd": "rel",
         "openmpi_oversubscribe": True, "slurm_cmd_args": ["--mpi=pmix"], "mem": "2G", "--time": "1:00"},
        known, "fake",
    )
    assert got.cores == 4 and got.threads_per_core == 2 and got.gpus_per_core == 1
    assert got.cwd.endswith("/rel") and got.cwd.startswith("/")
    assert got.openmpi_oversubscribe and got.launcher_args == ("--mpi=pmix",)
    assert got.option_dict() == {"mem": "2G", "time": "1:00"}
    assert got.is_mpi
    assert resources.parse(None, known, "fake") == Resources() == resources.parse({}, known, "fake")
    assert not Resources().is_mpi


def test_equal_dicts_are_one_set_of_resources_whatever_their_order():
    a = resources.parse({"mem": "1G", "time": "5", "cores": 2}, known, "fake")
    b = resources.parse({"cores": 2, "time": "5", "mem": "1G"}, known, "fake")
    assert a == b and hash(a) == hash(b)
    assert len({a, b, resources.parse({"mem": "2G"}, known, "fake")}) == 2
    listed = resources.parse({"partition": ["a", "b"]}, known, "fake")
    assert hash(listed) == hash(resources.parse({"partition": ("a", "b")}, known, "fake"))


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"memory": "2G"}, "'memory'"),
        ({"cores": 0}, "cores"),
        ({"cores": "2"}, "cores"),
        ({"cores": True}, "cores"),
        ({"gpus_per_core": -1}, "gpus_per_core"),
        ({"slurm_cmd_args": "--mpi=pmix"}, "slurm_cmd_args"),
    ],
)
def test_a_wrong_key_or_value_is_an_error_that_names_it(bad, words):
    with pytest.raises(ValueError, match=words) as info:
        resources.parse(bad, known, "fake")
    if "memory" in bad:
        assert "nothing was submitted" in str(info.value) and "fake" in str(info.value)


def test_a_dict_as_an_options_value_is_refused():
    with pytest.raises(TypeError, match="str, a number, a bool or a list"):
        resources.parse({"mem": {"a": 1}}, known, "fake")


@pytest.mark.parametrize("adapter_class", [SlurmArrayScheduler, SlurmJobScheduler])
def test_slurm_asks_for_ranks_cpus_gpus_and_starts_the_ranks_with_srun(adapter_class):
    base = adapter_class(sbatch_options={"time": "0:10:00", "mem": "1G"})
    got = base.with_resources(
        Resources(cores=2, threads_per_core=3, gpus_per_core=1,
                  launcher_args=("--mpi=pmix",), options=(("mem", "4G"), ("qos", "long")))
    )
    assert type(got) is adapter_class and base.resources == Resources()
    argv = got._sbatch_argv(request(), [], "ID", "%j.log")
    for option in ("--ntasks=2", "--cpus-per-task=3", "--gpus-per-task=1", "--mem=4G",
                   "--qos=long", "--time=0:10:00"):
        assert option in argv
    assert "--mem=1G" not in argv
    wrap = shlex.split(argv[argv.index("--wrap") + 1])
    assert wrap[:6] == ["exec", "srun", "--ntasks=2", "--kill-on-bad-exit=1", "--cpus-per-task=3", "--mpi=pmix"]
    assert wrap[6:] == request().worker_argv + ["--ranks", "2", "--worker-id", "ID"]
    # the pool's own adapter is unchanged: one worker process, no srun
    plain = shlex.split(base._sbatch_argv(request(), [], "ID", "%j.log")[-1])
    assert plain == ["exec"] + request().worker_argv + ["--worker-id", "ID"]


def test_slurm_knows_sbatchs_options_but_not_the_pools_own():
    adapter = SlurmArrayScheduler(commands=SlurmCommands(sbatch="false"))
    for key in ("mem", "time", "partition", "p", "gres", "cpus_per_task", "exclusive"):
        assert adapter.known_option(key), key
    for key in ("array", "wrap", "output", "memory"):
        assert not adapter.known_option(key), key


def test_slurm_looks_up_options_it_does_not_list_in_sbatch_help(tmp_path):
    fake_sbatch = tmp_path / "sbatch"
    fake_sbatch.write_text("#!/bin/sh\necho '      --tres-per-task=list  trackable resources per task'\n")
    fake_sbatch.chmod(0o755)
    adapter = SlurmArrayScheduler(commands=SlurmCommands(sbatch=str(fake_sbatch)))
    assert adapter.known_option("tres-per-task") and adapter.known_option("tres_per_task")
    assert not adapter.known_option("no-such-option")


def test_slurm_hints_at_pmi_when_the_ranks_of_an_mpi_call_failed():
    adapter = SlurmArrayScheduler().with_resources(Resources(cores=2))
    assert "--mpi=pmix" in adapter.hint("FAILED")
    assert adapter.hint("FAILED") and not SlurmArrayScheduler().hint("FAILED")
    told = SlurmArrayScheduler().with_resources(Resources(cores=2, launcher_args=("--mpi=pmi2",)))
    assert not told.hint("FAILED")


def test_grid_engine_asks_for_slots_of_a_parallel_environment_and_starts_mpirun():
    base = SgeArrayScheduler(qsub_options={"l": "h_rt=600"})
    got = base.with_resources(Resources(cores=2, threads_per_core=2, options=(("pe", "mpi"), ("q", "all.q"))))
    assert format_options(got.qsub_options) == ["-l", "h_rt=600", "-pe", "mpi", "4", "-q", "all.q"]
    command = got.worker_command(request())
    assert command[:3] == ["mpirun", "-n", "2"]
    assert command[3:] == request().worker_argv + ["--ranks", "2"]
    counted = base.with_resources(Resources(cores=2, options=(("pe", "orte 8"),)))
    assert counted.qsub_options["pe"] == "orte 8"
    # one core, one slot: no parallel environment needed
    assert "pe" not in base.with_resources(Resources(options=(("l", "h_vmem=2G"),))).qsub_options
    assert base.known_option("l") and base.known_option("pe") and not base.known_option("t")


def test_grid_engine_refuses_what_it_cannot_give():
    base = SgeArrayScheduler()
    with pytest.raises(ValueError, match="parallel environment.*'pe': 'mpi'"):
        base.with_resources(Resources(cores=2))
    with pytest.raises(ValueError, match="GPU"):
        base.with_resources(Resources(gpus_per_core=1))


def test_processes_start_the_ranks_with_mpirun():
    got = ProcessScheduler().with_resources(Resources(cores=3, openmpi_oversubscribe=True))
    assert got.name == ProcessScheduler().name
    assert got.worker_command(request())[:4] == ["mpirun", "-n", "3", "--oversubscribe"]
    # a cluster's options mean nothing here: code written for one runs unchanged
    assert got.known_option("mem") and got.known_option("partition") and got.known_option("pe")
    assert not got.known_option("memory")  # a typo is caught on the laptop too


def test_a_scheduler_without_resources_says_so():
    from pypoolparty.core.scheduler import Scheduler

    class Bare(Scheduler):
        name = "bare"
        submit = states = cancel_commands = None

    with pytest.raises(ValueError, match="bare scheduler takes no per-call resources"):
        Bare(policy=None).with_resources(Resources(cores=2))
    assert not Bare(policy=None).known_option("mem")


def test_slurm_merges_an_option_given_by_its_short_or_long_name():
    base = SlurmArrayScheduler(sbatch_options={"c": 4, "p": "short", "t": "0:10:00"})
    assert base.sbatch_options == {"cpus-per-task": 4, "partition": "short", "time": "0:10:00"}
    got = base.with_resources(Resources(cores=2, threads_per_core=2, options=(("p", "long"),)))
    argv = got._sbatch_argv(request(), [], "ID", "%j.log")
    assert [a for a in argv if a.startswith(("--cpus-per-task", "--partition", "-c", "-p"))] == [
        "--cpus-per-task=2", "--partition=long"
    ]
    # the ranks get the CPUs the job asks for, however they were asked
    by_option = base.with_resources(Resources(cores=2, options=(("cpus_per_task", 3),)))
    assert "--cpus-per-task=3" in by_option.mpi_launcher()
    with pytest.raises(ValueError, match="pool itself"):
        SlurmArrayScheduler(sbatch_options={"o": "out.log"})  # --output by its short name


def test_slurm_refuses_one_resource_given_two_ways_and_joins_lists():
    base = SlurmArrayScheduler()
    for resources_, option in [
        (Resources(cores=2, options=(("n", 4),)), "ntasks"),
        (Resources(threads_per_core=2, options=(("c", 4),)), "cpus-per-task"),
        (Resources(gpus_per_core=1, options=(("gpus_per_task", 2),)), "gpus-per-task"),
    ]:
        with pytest.raises(ValueError, match=option):
            base.with_resources(resources_)
    listed = base.with_resources(Resources(options=(("gres", ("gpu:1", "tmp:10G")),)))
    assert "--gres=gpu:1,tmp:10G" in listed._sbatch_argv(request(), [], "ID", "%j.log")
