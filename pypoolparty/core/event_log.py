"""
The JSON-lines logs of a pool and of its maps: every scheduler call and
every decision.

Built on json_line_logger. Each line is a JSON object whose ``"m"`` field is
itself a JSON object ``{"event": ..., ...fields}``, so a log reads back with
two ``json.loads``. With ``verbose``, the events also go to stderr as short
human lines (:mod:`.event_lines`).
"""
from __future__ import annotations

import json
import logging
import typing

import json_line_logger

from . import terminal
from .event_lines import Lines, label_of

logger = logging.getLogger("pypoolparty")


def _escaped(text: str) -> str:
    # json_line_logger puts the message between quotes without escaping it.
    return json.dumps(text)[1:-1]


class EventLog:
    """Writes events to a JSON-lines file and, if verbose, lines to stderr.

    Parameters
    ----------
    path : str or None
        The log file; None logs to nothing but the stream.
    verbose : bool
        Also print a short line for each event of note to stderr.
    append : bool
        Add to an existing log (a map another driver started) instead of
        starting a new one.
    """

    def __init__(self, path: typing.Optional[str] = None, verbose: bool = False, append: bool = False):
        self.path = path
        self._loggers = []
        self._buffer: typing.Optional[typing.List[typing.Tuple[str, int, dict]]] = None
        if path is not None:
            self._loggers.append(_file_logger(path, append))
        self._lines = Lines(label_of(path)) if verbose else None

    @classmethod
    def buffer(cls) -> "EventLog":
        """A log that keeps its events until :meth:`replay_into` a file's log."""
        log = cls(None)
        log._buffer = []
        return log

    def replay_into(self, other: "EventLog") -> None:
        """Write the buffered events into ``other`` (time is of the replay)."""
        for name, level, fields in self._buffer or []:
            other.event(name, level=level, replayed=True, **fields)
        self._buffer = []

    def event(self, name: str, level: int = logging.INFO, **fields) -> None:
        """Log the event ``name`` with ``fields`` (JSON-able or str()-able)."""
        self._write(name, level, fields, echo=True)

    def _write(self, name: str, level: int, fields: dict, echo: bool) -> None:
        """Log an event; ``echo``: also print its line, if verbose."""
        if self._buffer is not None:
            self._buffer.append((name, level, fields))
        record = {"event": name}
        record.update(fields)
        if echo and self._lines is not None:
            self._echo(record)
        if not self._loggers:
            return
        msg = _escaped(json.dumps(record, default=str))
        for logger in self._loggers:
            logger.log(level, msg)

    def warning(self, name: str, **fields) -> None:
        self.event(name, level=logging.WARNING, **fields)

    def _echo(self, record: dict) -> None:
        """Print the event's line; one that cannot be made or printed is
        left out (the file has the event)."""
        try:
            text = self._lines.line(record)
            if text is not None:
                terminal.print_line(text)
        except Exception:
            logger.debug("pypoolparty: no line for %r", record.get("event"), exc_info=True)

    def close(self) -> None:
        for logger in self._loggers:
            json_line_logger.shutdown(logger)
        self._loggers = []


class MultiLog:
    """Sends each event to several logs (e.g. the pool's and one per map in
    flight); only the first prints its line, if verbose: once is enough."""

    def __init__(self, logs: typing.Iterable[EventLog]):
        self.logs = list(logs)

    def event(self, name: str, level: int = logging.INFO, **fields) -> None:
        for index, log in enumerate(self.logs):
            log._write(name, level, fields, echo=index == 0)

    def warning(self, name: str, **fields) -> None:
        self.event(name, level=logging.WARNING, **fields)


def _file_logger(path: str, append: bool) -> logging.Logger:
    """json_line_logger's file logger; it truncates, so appending needs our own handler."""
    name = "pypoolparty:" + path
    if not append:
        return json_line_logger.LoggerFile(path=path, name=name)
    logger = logging.Logger(name=name)
    handler = logging.FileHandler(filename=path, mode="a")
    handler.setFormatter(
        logging.Formatter(fmt=json_line_logger.FMT, datefmt=json_line_logger.DATEFMT_ISO8601)
    )
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return logger


def read(path: str) -> typing.List[dict]:
    """Read a log written by :class:`EventLog`: one dict per line.

    Each dict holds the line's ``"t"``, ``"l"`` and the fields of the event.
    A line that is not whole JSON is left out.
    """
    out = []
    with open(path, "rt") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                outer = json.loads(line)
                record = json.loads(outer["m"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short (its writer was killed, the disk full)
            record["t"] = outer["t"]
            record["l"] = outer["l"]
            out.append(record)
    return out
