"""
The Grid Engine parsers, on output captured from the real commands (tests/data).
"""
import os

import pytest

from pypoolparty.core.scheduler import WorkerState
from pypoolparty.sun_grid_engine import parsing
from pypoolparty.sun_grid_engine.adapter import check_options, format_options

DATA = os.path.join(os.path.dirname(__file__), "data")


def read(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


def test_qstat_xml_running_pending_held_and_error():
    states = parsing.parse_qstat_xml(read("qstat_xml_mixed.xml"))
    assert states["45.1"].state is WorkerState.RUNNING
    assert states["45.2"].state is WorkerState.RUNNING
    for task in (3, 4, 5):
        assert states["45.{:d}".format(task)].state is WorkerState.PENDING
        assert states["45.{:d}".format(task)].scheduler_state == "qw"
    assert states["42"].state is WorkerState.HELD
    assert states["42"].scheduler_state == "Eqw"
    assert states["43"].state is WorkerState.HELD
    assert {w for w in states if w.startswith("44.")} == {"44.1", "44.2", "44.3"}
    assert states["44.2"].scheduler_state == "hqw"


def test_qstat_xml_without_jobs():
    assert parsing.parse_qstat_xml(read("qstat_xml_empty.xml")) == {}
    assert parsing.parse_qstat_xml("") == {}


@pytest.mark.parametrize(
    "state,expected",
    [
        ("r", WorkerState.RUNNING),
        ("t", WorkerState.RUNNING),
        ("Rr", WorkerState.RUNNING),
        ("dr", WorkerState.RUNNING),
        ("qw", WorkerState.PENDING),
        ("Rq", WorkerState.PENDING),
        ("hqw", WorkerState.HELD),
        ("Eqw", WorkerState.HELD),
    ],
)
def test_worker_state(state, expected):
    assert parsing.worker_state(state) is expected


def test_expand_tasks():
    assert parsing.expand_tasks("3-5:1") == [3, 4, 5]
    assert parsing.expand_tasks("1,4-8:2") == [1, 4, 6, 8]
    assert parsing.expand_tasks("7") == [7]


def test_qsub_terse():
    assert parsing.parse_qsub_terse(read("qsub_terse_array.txt")) == "46"
    assert parsing.parse_qsub_terse(read("qsub_terse_single.txt")) == "47"
    with pytest.raises(ValueError):
        parsing.parse_qsub_terse("Unable to run job\n")


def test_qstat_j_error_reason():
    reason = parsing.describe_qstat_j(read("qstat_j_eqw.txt"))
    assert "can't chdir to /nonexistent" in reason


def test_qstat_gc_slots():
    text = (
        "CLUSTER QUEUE                   CQLOAD   USED    RES  AVAIL  TOTAL aoACDS  cdsuE  \n"
        "--------------------------------------------------------------------------------\n"
        "all.q                             0.08      0      0      2      2      0      0 \n"
        "long.q                            0.08      1      0      3      4      0      0 \n"
    )
    assert parsing.parse_qstat_gc_slots(text) == 6
    assert parsing.parse_qstat_gc_slots(text, "long.q") == 4


def test_qacct():
    text = "qname        all.q\nhostname     vm\nfailed       0    \nexit_status  137                 (Killed)\nmaxvmem      10.3M\n"
    assert parsing.describe_qacct(text) == "failed=0 exit_status=137_(Killed) hostname=vm maxvmem=10.3M"


def test_format_options():
    argv = format_options({"l": ["h_vmem=2G", "h_rt=1:00:00"], "q": "all.q", "pe": "smp 4", "notify": True, "x": None})
    assert argv == ["-l", "h_vmem=2G", "-l", "h_rt=1:00:00", "-q", "all.q", "-pe", "smp", "4", "-notify"]


def test_options_the_pool_sets_are_refused():
    for key in ("t", "tc", "o", "-S", "b"):
        with pytest.raises(ValueError, match="set by the pool"):
            check_options({key: "x"})


@pytest.mark.parametrize(
    "resources, seconds",
    [
        ("h_rt=1:00:00", 3600.0),
        ("h_vmem=2G,h_rt=90", 90.0),
        (["h_vmem=2G", "h_rt=0:10:00"], 600.0),
        ("h_rt=1:00:00,s_rt=0:50:00", 3000.0),
        ("h_vmem=2G", None),
        (None, None),
    ],
)
def test_time_limit_of_qsub_resources(resources, seconds):
    assert parsing.time_limit_seconds(resources) == seconds
