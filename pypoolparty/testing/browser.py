"""
A real browser without a screen, to look at a report page as a person would:
Debian's ``chromium`` (``apt-get install chromium``), headless.

:func:`dump_dom` gives the page's DOM after the browser parsed and laid it
out (and ran any script); :func:`screenshot` writes a PNG of it. Each call
starts its own browser with a profile in a temporary folder, removed
afterwards, and waits for it to end: nothing is left running or written
elsewhere. As root, Chromium runs only with ``--no-sandbox``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import typing

#: The names Chromium goes by (Debian's first).
PROGRAMS = ("chromium", "chromium-browser")
#: Seconds a browser may take for one page.
TIMEOUT = 120.0


class BrowserError(RuntimeError):
    """The browser is missing, or failed on a page."""


def find() -> typing.Optional[str]:
    """The browser's path, or None if none is installed."""
    for name in PROGRAMS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(page: str, options: typing.List[str], timeout: float) -> str:
    """Open the file ``page`` headless with ``options``; its stdout."""
    program = find()
    if program is None:
        raise BrowserError(
            "no Chromium here ({:s}); Debian: apt-get install chromium".format(", ".join(PROGRAMS))
        )
    with tempfile.TemporaryDirectory(prefix="pypoolparty-browser-") as profile:
        argv = [
            program,
            "--headless",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--user-data-dir=" + profile,
            *(["--no-sandbox"] if os.geteuid() == 0 else []),
            *options,
            "file://" + os.path.abspath(page),
        ]
        proc = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
            env=dict(os.environ, HOME=profile),
        )
    if proc.returncode != 0:
        raise BrowserError(
            "{:s} ended with {:d}: {:s}".format(program, proc.returncode, proc.stderr[-2000:])
        )
    return proc.stdout


def dump_dom(page: str, timeout: float = TIMEOUT) -> str:
    """The DOM of the HTML file ``page`` as the browser has it, serialized."""
    return _run(page, ["--dump-dom"], timeout)


def screenshot(
    page: str, png: str, width: int = 1280, height: int = 1800, timeout: float = TIMEOUT
) -> str:
    """A PNG of the first ``width`` x ``height`` pixels of ``page``; its path."""
    png = os.path.abspath(png)
    _run(page, ["--screenshot=" + png, "--window-size={:d},{:d}".format(width, height)], timeout)
    if not os.path.isfile(png):
        raise BrowserError("the browser wrote no screenshot to " + png)
    return png
