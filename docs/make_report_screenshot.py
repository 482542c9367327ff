"""
Makes docs/_static/report.png: the report page of a real SLURM map with a
lost worker and a failing job, as headless Chromium shows it.

    python docs/make_report_screenshot.py [--out docs/_static/report.png]

Needs root (it starts a private two-node SLURM cluster in a temporary
folder, and stops it) and Chromium (Debian: ``apt-get install chromium``).
With ``SLURM_CONF`` set it uses that cluster instead. The map: 48 jobs of
0.2 to 0.6 s on 4 workers; job 5 ends its worker the first time it runs,
job 40 raises once job 5 ran again.
"""
import argparse
import contextlib
import os
import shutil
import sys
import tempfile

import pypoolparty.slurm.array
from pypoolparty.testing import browser
from pypoolparty.testing.failing_jobs import lose_then_raise_in
from pypoolparty.testing.local_slurm import LocalSlurmCluster

HERE = os.path.dirname(os.path.abspath(__file__))


@contextlib.contextmanager
def slurm(folder):
    """A SLURM cluster: the one SLURM_CONF names, else a private one."""
    if os.environ.get("SLURM_CONF"):
        yield
        return
    cluster = LocalSlurmCluster(os.path.join(folder, "slurm"), num_nodes=2, cpus_per_node=2)
    cluster.start()
    try:
        os.environ["SLURM_CONF"] = cluster.slurm_conf
        yield
    finally:
        cluster.stop()
        del os.environ["SLURM_CONF"]


def failed_map_report(folder):
    """Run the map; return the path of its report (from the error)."""
    marks = os.path.join(folder, "marks")
    os.mkdir(marks)
    pool = pypoolparty.slurm.array.Pool(
        processes=4,
        sbatch_options={"time": "00:10:00"},
        polling_interval=1.0,
        work_dir=os.path.join(folder, "work"),
    )
    try:
        job = lose_then_raise_in(
            marks, lose=5, bad=40, message="no convergence for this parameter", seconds=(0.2, 0.6)
        )
        pool.map(job, range(48), chunksize=2)
    except ValueError as err:
        text = str(err.__cause__)
        return text[text.index("report: ") + len("report: "):].split(")")[0]
    finally:
        pool.terminate()
    raise RuntimeError("the map did not fail")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--out", default=os.path.join(HERE, "_static", "report.png"))
    parser.add_argument("--height", type=int, default=1500)
    args = parser.parse_args(argv)
    from PIL import Image

    folder = tempfile.mkdtemp(prefix="ppp-report-shot-")
    try:
        with slurm(folder):
            report = failed_map_report(folder)
        shot = os.path.join(folder, "shot.png")
        png = browser.screenshot(report, shot, width=1280, height=args.height)
        with Image.open(png) as image:
            # A palette of 64 colours keeps text and charts sharp and the file small.
            image.convert("RGB").quantize(colors=64).save(args.out, optimize=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("{:s} ({:d} bytes)".format(args.out, os.path.getsize(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
