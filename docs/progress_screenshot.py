"""
Makes ``docs/_static/progress_bar.png``: the progress bars of a real run,
as a terminal shows them.

A small driver maps on ``pypoolparty.processes.Pool`` (detached worker
processes, no cluster needed) with its stderr a pseudo-terminal: a first
map runs to its end, then a second one in which a job kills its worker
(its chunk runs again). What the terminal got goes through a terminal
emulator (pyte) until the second bar is past half way; that screen is
written as HTML and photographed by headless chromium.

Run from the repository's root::

    pip install pyte                    # the terminal emulator
    apt-get install -y chromium         # Debian's package
    python docs/progress_screenshot.py  # writes docs/_static/progress_bar.png
"""
import argparse
import fcntl
import html
import os
import re
import select
import struct
import subprocess
import sys
import tempfile
import termios
import textwrap
import typing

import pyte

from pypoolparty.testing import browser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs", "_static", "progress_bar.png")
COLUMNS, LINES = 110, 12

DRIVER = textwrap.dedent(
    """\
    import os, sys, time
    import pypoolparty.processes

    work_dir = sys.argv[1]

    def simulate(x):
        time.sleep(0.05 + 0.1 * (x % 3))
        return x * x

    def simulate_and_lose_a_worker(x):
        if x == 30 and not os.path.exists(os.path.join(work_dir, "died")):
            open(os.path.join(work_dir, "died"), "w").close()
            os._exit(9)  # as if its node failed
        return simulate(x)

    with pypoolparty.processes.Pool(4, work_dir=work_dir) as pool:
        pool.map(simulate, range(60), chunksize=2)
        pool.map(simulate_and_lose_a_worker, range(300), chunksize=2)
    """
)

#: The second bar past half way: the moment the picture shows.
MOMENT = re.compile(r"map-000002: +([5-9]\d)%")

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>
body {{ margin: 0; background: #1e1e1e; }}
pre {{ margin: 0; padding: 14px 18px; color: #d4d4d4; font: 14px/1.25 "DejaVu Sans Mono", monospace; }}
.prompt {{ color: #6a9955; }}
</style></head><body><pre>{}</pre></body></html>
"""


def capture(work_dir: str) -> typing.List[str]:
    """Run the driver in a pseudo-terminal; the screen's lines at :data:`MOMENT`."""
    script = os.path.join(work_dir, "simulate.py")
    with open(script, "w") as f:
        f.write(DRIVER)
    screen = pyte.Screen(COLUMNS, LINES)
    stream = pyte.ByteStream(screen)
    stream.feed(b"$ python simulate.py\r\n")
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.Popen(
        [sys.executable, script, work_dir],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    shot = None
    try:
        # Read until the driver ends (it cleans up its workers), taking
        # the picture on the way.
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the driver closed the terminal
                break
            stream.feed(data)
            if shot is None and MOMENT.search("\n".join(screen.display)):
                shot = list(screen.display)
        proc.wait(timeout=120)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if shot is None:
        raise RuntimeError("the second bar never got past half way:\n" + "\n".join(screen.display))
    return shot


def page(display: typing.List[str]) -> typing.Tuple[str, int]:
    """The screen as an HTML page, and its number of lines."""
    lines = [line.rstrip() for line in display]
    while lines and not lines[-1]:
        lines.pop()
    body = [html.escape(line) for line in lines]
    body[0] = '<span class="prompt">{}</span>'.format(body[0])
    return PAGE.format("\n".join(body)), len(lines)


def photograph(text: str, num_lines: int, out: str) -> None:
    """Screenshot of the page, as tall as its lines."""
    with tempfile.TemporaryDirectory() as folder:
        page_path = os.path.join(folder, "bar.html")
        with open(page_path, "w") as f:
            f.write(text)
        height = int(num_lines * 14 * 1.25 + 28) + 2
        browser.screenshot(page_path, out, width=int(COLUMNS * 8.45) + 36, height=height, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work_dir:
        display = capture(work_dir)
    text, num_lines = page(display)
    photograph(text, num_lines, args.out)
    print("{:s} ({:d} bytes)".format(args.out, os.path.getsize(args.out)))


if __name__ == "__main__":
    main()
