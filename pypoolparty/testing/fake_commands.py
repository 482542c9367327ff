"""
The fake scheduler's commands: small shell scripts in its state folder.

The fake's submit, states and cancel each run one of them through the
adapters' :meth:`~pypoolparty.core.scheduler.Scheduler.run`, so a failure a
test injects takes the path of a real command's failure: retried while it
says the controller is busy, raised at once otherwise. The cancel script
notes its arguments in ``cancel-requests`` and does nothing else, so the
reaper may run it any time.
"""
from __future__ import annotations

import os

COMMANDS = ("submit", "states", "cancel")
TRANSIENT_MESSAGE = "fake-{:s}: the fake controller is busy"
PERMANENT_MESSAGE = "fake-{:s}: error: request refused (a failure the test asked for)"
#: The fake's own phrase for "try again later" (as each adapter has its own).
TRANSIENT_PATTERNS = (r"the fake controller is busy",)

#: A command: it fails while the count in <script>.failures lasts, saying
#: <script>.message; the cancel command notes its arguments.
COMMAND_SCRIPT = """\
#!/bin/sh
n=$(cat "$0.failures" 2>/dev/null || echo 0)
if [ "$n" -gt 0 ]; then
    echo $((n - 1)) > "$0.failures"
    cat "$0.message" >&2
    exit 1
fi
if [ "$(basename "$0")" = fake-cancel ]; then
    echo "$@" >> "$(dirname "$0")/cancel-requests"
fi
"""


class FakeCommands:
    """The scripts of one fake scheduler, and the failures armed in them."""

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        for kind in COMMANDS:
            with open(os.open(self.path(kind), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700), "wt") as f:
                f.write(COMMAND_SCRIPT)

    def path(self, kind: str) -> str:
        """The script of ``"submit"``, ``"states"`` or ``"cancel"``."""
        return os.path.join(self.state_dir, "fake-" + kind)

    def arm(self, kind: str, times: int, transient: bool, message: str = "") -> None:
        """Make the next ``times`` runs of ``kind`` fail, saying ``message``."""
        default = TRANSIENT_MESSAGE if transient else PERMANENT_MESSAGE
        with open(self.path(kind) + ".message", "wt") as f:
            f.write((message or default.format(kind)) + "\n")
        with open(self.path(kind) + ".failures", "wt") as f:
            f.write("{:d}\n".format(times))

    def failures_left(self, kind: str) -> int:
        """Armed failures of ``kind`` that did not happen yet."""
        try:
            with open(self.path(kind) + ".failures", "rt") as f:
                return int(f.read().strip() or 0)
        except FileNotFoundError:
            return 0
