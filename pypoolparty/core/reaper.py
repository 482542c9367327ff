"""
Cancel a dead driver's jobs, without touching the driver's signal handling.

One small process per driver process (``python -m pypoolparty.core.reaper``), in
a session of its own, reads registrations from a pipe: for each pool with
workers, the commands that cancel them and a file that tells them to stop.
The driver withdraws them when the pool ends. When the pipe closes while
registrations remain -- the driver was killed by SIGTERM or SIGKILL, crashed,
or exited without cleaning up -- the reaper writes the stop files, runs the
commands and exits. Ctrl-C, ``terminate()`` and normal exit are handled in
the driver itself; the reaper covers the rest.

Protocol: one JSON object per line, ``{"add": KEY, "commands": [[argv...],
...], "env": {...}, "stop_file": PATH}`` or ``{"remove": KEY}``.
"""
from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import threading
import typing

from . import inputs

_lock = threading.Lock()
_process: typing.Optional[subprocess.Popen] = None


def _send(message: dict) -> None:
    global _process
    with _lock:
        if _process is None or _process.poll() is not None:
            _process = subprocess.Popen(
                [sys.executable, "-m", "pypoolparty.core.reaper"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                env=_reaper_env(),
            )
        try:
            _process.stdin.write((json.dumps(message) + "\n").encode())
            _process.stdin.flush()
        except (BrokenPipeError, OSError):
            _process = None


def _reaper_env() -> typing.Dict[str, str]:
    env = dict(os.environ)
    env.update(inputs.worker_env())
    return env


def register(key: str, commands: typing.List[typing.List[str]], stop_file: str) -> None:
    """Have ``stop_file`` written and ``commands`` run if this process dies
    before :func:`withdraw`."""
    _send({"add": key, "commands": commands, "env": dict(os.environ), "stop_file": stop_file})


def withdraw(key: str) -> None:
    """The commands of ``key`` are no longer needed."""
    with _lock:
        running = _process is not None and _process.poll() is None
    if running:
        _send({"remove": key})


@atexit.register
def _close() -> None:
    """At a normal exit the pools have cleaned up; let the reaper go."""
    global _process
    with _lock:
        if _process is not None:
            try:
                _process.stdin.close()
            except OSError:
                pass
            _process = None


def serve(stream: typing.BinaryIO) -> int:
    """The reaper's side: collect registrations until EOF, then run them."""
    pending: typing.Dict[str, dict] = {}
    for line in stream:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if "add" in message:
            pending[message["add"]] = message
        elif "remove" in message:
            pending.pop(message["remove"], None)
    for message in pending.values():
        if message.get("stop_file"):
            try:
                open(message["stop_file"], "a").close()
            except OSError:
                pass  # the pool dir is gone: its workers leave anyway
        for argv in message.get("commands", []):
            for _ in range(3):
                try:
                    proc = subprocess.run(
                        argv,
                        env=message.get("env"),
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        timeout=60,
                    )
                except (OSError, subprocess.TimeoutExpired):
                    continue
                if proc.returncode == 0:
                    break
    return 0


if __name__ == "__main__":
    # Signals meant for the driver's terminal or process group are not ours.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(serve(sys.stdin.buffer))
