"""
The report page of a real SLURM map, looked at in a real browser.

A map on the test cluster loses a worker (its job ends it with ``os._exit``
once) and then has a job that raises; its error names the report. Headless
Chromium (Debian's ``chromium``) opens that file: the DOM it built has the
timeline with a row per worker, the failure table with both causes and the
scheduler calls, and its screenshot shows the charts' colours, not a blank
page. Without Chromium the test skips, and fails in CI (``skip_policy``).
"""
import os
import re

import pytest

from pypoolparty.core import map_history, report_charts
from pypoolparty.slurm.array import Pool
from pypoolparty.testing import browser

import skip_policy
from conftest import TEST_SBATCH_OPTIONS
from pypoolparty.testing.failing_jobs import lose_then_raise_in
from test_report_page import BAD, element, row_labels, text_of

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


@pytest.fixture
def chromium():
    if browser.find() is None:
        skip_policy.cluster_unavailable(
            "Chromium",
            "it is not installed (Debian: apt-get install chromium; .ci/run installs it)",
        )


def rgb(hex_colour):
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))


def test_the_report_of_a_slurm_map_renders_in_a_browser(slurm, chromium, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    pool = Pool(
        processes=2,
        sbatch_options=dict(TEST_SBATCH_OPTIONS),
        polling_interval=1.0,
        work_dir=str(tmp_path / "work"),
    )
    try:
        with pytest.raises(ValueError) as info:
            pool.map(lose_then_raise_in(str(marks), message=BAD), range(8), chunksize=1)
    finally:
        pool.terminate()
    report = re.search(r"report: (\S+)\)", str(info.value.__cause__)).group(1)
    history = map_history.read(os.path.join(os.path.dirname(report), "log.jsonl"))
    assert len(history.losses) == 1

    dom = browser.dump_dom(report)
    timeline = element(dom, "figure", "timeline")
    assert len(row_labels(timeline)) == len(history.workers) >= 3
    failures = text_of(element(dom, "table", "failures"))
    assert "ValueError" in failures and "raise ValueError(message, x)" in failures
    assert "lost: " in failures and "job 1 ends its worker on purpose" in failures
    assert "sbatch" in text_of(element(dom, "table", "scheduler-calls"))

    from PIL import Image

    png = browser.screenshot(report, str(tmp_path / "report.png"), width=1280, height=1400)
    with Image.open(png) as image:
        pixels = image.convert("RGB")
        colours = dict((c, n) for n, c in pixels.getcolors(maxcolors=1 << 24))
        width, height = pixels.size
    assert len(colours) > 20  # text, tables, charts: not a blank page
    assert colours.get((255, 255, 255), 0) < 0.97 * width * height
    # The charts were drawn: the bars of chunks that ran, and the failed one.
    assert colours.get(rgb(report_charts.OK_COLOUR), 0) > 200
    assert colours.get(rgb(report_charts.FAILED_COLOUR), 0) > 50
