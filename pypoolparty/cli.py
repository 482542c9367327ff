"""
The ``pypoolparty`` command: look at and act on work dirs from any shell.

::

    pypoolparty status [WORK_DIR]    the pools and maps under WORK_DIR
    pypoolparty cancel MAP_DIR       cancel a map and its workers
    pypoolparty clean WORK_DIR       remove the maps that ended
    pypoolparty report MAP_DIR       write a map's report page

Also ``python -m pypoolparty``. Each command takes ``--json`` for scripts.
Exit codes: 0 all is well; 1 something needs a look (a map failed, was
cancelled or lost its driver; a cancel or a report did not go through);
2 the command line or the path was wrong.
"""
from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import os
import sys
import time
import typing

from .core import map_control, work_listing
from .core.event_lines import duration
from .core.workdir import WORK_DIR_ENV

OK, NEEDS_LOOK, USAGE = 0, 1, 2


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    """Run the command line; return its exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return USAGE
    try:
        return args.run(args)
    except work_listing.NotAWorkDir as err:
        print("pypoolparty: {}".format(err), file=sys.stderr)
        return USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pypoolparty",
        description="Look at and act on pypoolparty's work dirs: from another shell "
        "while the driver runs, or after it died.",
        epilog="Exit codes: 0 all is well; 1 something needs a look; 2 bad arguments or path.",
    )
    parser.set_defaults(command=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    status = sub.add_parser("status", help="list the pools and maps under a work dir")
    status.add_argument(
        "work_dir",
        nargs="?",
        default=None,
        metavar="WORK_DIR",
        help="a work dir, a pool's or a map's folder (default: $PYPOOLPARTY_WORK_DIR "
        "or the current directory)",
    )
    status.add_argument(
        "--no-scheduler",
        action="store_true",
        help="do not ask the scheduler for the workers' states; take the log's",
    )
    status.set_defaults(run=_status)

    cancel = sub.add_parser("cancel", help="cancel a map and the workers running it")
    cancel.add_argument("map_dir", metavar="MAP_DIR", help="the map's folder (map-<n>-...)")
    cancel.set_defaults(run=_cancel)

    clean = sub.add_parser("clean", help="remove the maps that ended and pools with nothing left")
    clean.add_argument("work_dir", metavar="WORK_DIR", help="a work dir or a pool's folder")
    clean.add_argument("--dry-run", action="store_true", help="only say what would go")
    clean.set_defaults(run=_clean)

    report = sub.add_parser("report", help="write a map's report page (HTML)")
    report.add_argument("map_dir", metavar="MAP_DIR", help="the map's folder (map-<n>-...)")
    report.add_argument(
        "-o", "--output", default=None, help="where to write it (default: MAP_DIR/report.html)"
    )
    report.set_defaults(run=_report)

    for p in (status, cancel, clean, report):
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parser


# ------------------------------------------------------------------ commands
def _status(args) -> int:
    work_dir = args.work_dir or os.environ.get(WORK_DIR_ENV) or os.getcwd()
    pools = [
        work_listing.pool_status(p, ask_scheduler=not args.no_scheduler)
        for p in work_listing.pool_dirs(work_dir)
    ]
    code = NEEDS_LOOK if any(m.state.bad for p in pools for m in p.maps) else OK
    if args.json:
        _print_json({"work_dir": os.path.abspath(work_dir), "pools": pools, "exit_code": code})
        return code
    if not pools:
        print("No pypoolparty pools in {}".format(os.path.abspath(work_dir)))
    for pool in pools:
        print(_pool_text(pool))
    return code


def _cancel(args) -> int:
    outcome = map_control.cancel_map(args.map_dir)
    code = NEEDS_LOOK if outcome.error else OK
    if args.json:
        _print_json(dict(dataclasses.asdict(outcome), exit_code=code))
        return code
    if outcome.already_ended:
        print("The map had ended already: {}".format(outcome.map_dir))
        return code
    print("Cancelled the map {}".format(outcome.map_dir))
    if outcome.workers:
        print("Cancelled {:d} workers: {}".format(len(outcome.workers), _ids(outcome.workers)))
    elif not outcome.left:
        print("No worker of it was alive.")
    if outcome.error:
        print(
            "Could not cancel {:d} workers ({}): {}".format(
                len(outcome.left), _ids(outcome.left), outcome.error
            ),
            file=sys.stderr,
        )
    return code


def _clean(args) -> int:
    outcome = map_control.clean(args.work_dir, dry_run=args.dry_run)
    if args.json:
        _print_json(
            {
                "dry_run": args.dry_run,
                "removed": outcome.removed,
                "kept": [{"path": p, "why": w} for p, w in outcome.kept],
                "exit_code": OK,
            }
        )
        return OK
    verb = "Would remove" if args.dry_run else "Removed"
    for path in outcome.removed:
        print("{} {}".format(verb, path))
    for path, why in outcome.kept:
        print("Kept {}: {}".format(path, why))
    if not outcome.removed and not outcome.kept:
        print("Nothing to clean in {}".format(os.path.abspath(args.work_dir)))
    return OK


def _report(args) -> int:
    _, work_dir = work_listing.map_dir(args.map_dir)
    from .core import report_page  # matplotlib loads only for a report

    try:
        path = report_page.write(work_dir.path, args.output)
    except Exception as err:  # the log, the charts or the disk: say it, as documented
        message = "could not write the report: {!r}".format(err)
        if args.json:
            _print_json({"map_dir": work_dir.path, "error": message, "exit_code": NEEDS_LOOK})
        print("pypoolparty: " + message, file=sys.stderr)
        return NEEDS_LOOK
    if args.json:
        _print_json({"map_dir": work_dir.path, "report": path, "exit_code": OK})
    else:
        print(path)
    return OK


# ------------------------------------------------------------------ output
def _pool_text(pool: work_listing.PoolStatus) -> str:
    lines = [os.path.basename(pool.path) + "  (" + _pool_facts(pool) + ")"]
    lines.append("  " + pool.path)
    counts = ", ".join("{:d} {:s}".format(n, s) for s, n in sorted(pool.workers.items()))
    lines.append(
        "  workers: {} ({})".format(
            counts or "none",
            "the scheduler's word" if pool.states_from == "scheduler" else "as last logged",
        )
    )
    if not pool.maps:
        lines.append("  no map on disk (the driver removes a map that completed)")
    for m in pool.maps:
        lines.append(_map_line(m))
        for group in m.failures:
            lines.append(
                "      {:d} × {:s}, last {:s} ago".format(
                    group.count, group.cause, duration(time.time() - group.last)
                )
            )
    return "\n".join(lines)


def _pool_facts(pool: work_listing.PoolStatus) -> str:
    facts = [pool.scheduler or "scheduler unknown"]
    driver = pool.driver
    if driver is not None:
        alive = {True: "alive", False: "gone", None: "on another host"}[driver.alive]
        facts.append("driver pid {:d} on {:s}: {:s}".format(driver.pid, driver.host, alive))
    return ", ".join(facts)


def _map_line(m: work_listing.MapStatus) -> str:
    percent = 100.0 * m.jobs_done / m.num_jobs if m.num_jobs else 0.0
    text = "  {:s}  {:<11s} {:d}/{:d} jobs ({:.0f}%)".format(
        m.name, m.state.value, m.jobs_done, m.num_jobs, percent
    )
    if m.chunks_running and not m.state.ended:
        text += ", {:d} chunks running".format(m.chunks_running)
    if m.resubmissions:
        text += ", {:d} resubmitted".format(m.resubmissions)
    if m.ended is not None and m.started:
        text += ", took {:s}, ended {:s} ago".format(
            duration(m.ended - m.started), duration(time.time() - m.ended)
        )
    elif m.age:
        text += ", started {:s} ago".format(duration(m.age))
    return text


def _ids(ids: typing.Sequence[str], show: int = 10) -> str:
    text = ", ".join(ids[:show])
    return text + (", ..." if len(ids) > show else "")


def _print_json(obj: typing.Any) -> None:
    print(json.dumps(_plain(obj), indent=2, sort_keys=True))


def _plain(obj: typing.Any) -> typing.Any:
    """Dataclasses, enums, tuples as JSON's dicts, strings, lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        if isinstance(obj, work_listing.MapStatus):
            out["name"] = obj.name
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
