"""Structured logs: one handler on stderr, console or JSON lines, levels, and no secrets.

Owns the log format (:func:`configure_logging`), the structured fields an event carries
(``log.info("...", extra=fields(verb="filter", ...))``: JSON output makes them keys, console
output appends them as ``key=value``), and :class:`RedactingFilter`, the last line of defence
that scrubs credentials from every record before any handler writes it.

What could carry a secret, and what is done about it:

* HTTP headers (``Authorization`` on registry calls): never logged; the filter scrubs
  ``Bearer``/``Basic`` credentials and ``authorization: ...`` pairs wherever they appear;
* URLs with ``user:password@``: the password is scrubbed;
* JSON or YAML with ``password``, ``token``, ``auth`` and similar keys (docker config,
  kubeconfig, registry token answers): their values are scrubbed;
* pod bodies (``env`` values): never logged, only the pod's ``namespace/name``;
* the Kubernetes client logs whole response bodies at debug level (Secrets read for
  ``imagePullSecrets`` would be among them): its ``rest`` logger and urllib3 are kept at
  info or above whatever ``--log-level`` says.

Pod names, annotations and registry answers are chosen by others and reach messages and
fields. Both formatters write one record as one line: control characters (newlines, carriage
returns, terminal escapes, Unicode line separators) are written as escapes, so a value cannot
start a line that reads like a record of its own. A console traceback keeps its lines, each
indented, so none of them starts like a record either.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from typing import Any, TextIO

__all__ = [
    "AcceptErrorLimiter",
    "ConsoleFormatter",
    "JsonFormatter",
    "RedactingFilter",
    "configure_logging",
    "escape_controls",
    "fields",
    "redact",
]

log = logging.getLogger(__name__)

REDACTED = "[REDACTED]"
FIELDS = "fields"  # the LogRecord attribute that holds an event's structured fields

# Loggers that print request or response bodies at debug level: never below INFO.
QUIET_LOGGERS = ("kubernetes.client.rest", "urllib3", "urllib3.connectionpool")

_SENSITIVE_KEYS = (
    r"password|passwd|secret|token|access_token|refresh_token|identitytoken|registrytoken|"
    r"auth|authorization|client-key-data|client_key_data|api[-_]?key|dockerconfigjson|dockercfg"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer abc / authorization=Basic xyz / Proxy-Authorization: ...
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)[^\"',}\s]+(\s+[^\"',}\s]+)?"
        ),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), r"\1 " + REDACTED),
    # "password": "x", 'token': 'y', auth: z (JSON, Python reprs, YAML, query strings)
    (
        re.compile(rf"(?i)([\"']?\b(?:{_SENSITIVE_KEYS})[\"']?\s*:\s*)([\"'])(?:\\.|(?!\2).)*\2"),
        r"\1\2" + REDACTED + r"\2",
    ),
    (
        re.compile(rf"(?i)(^|[\s,{{?&])((?:{_SENSITIVE_KEYS})\s*[:=]\s*)(?![\s\"'\[{{])[^\s,}}&]+"),
        r"\1\2" + REDACTED,
    ),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
)


def redact(text: str) -> str:
    """``text`` with every credential-looking value replaced by ``[REDACTED]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def fields(**values: Any) -> dict[str, dict[str, Any]]:
    """``extra=`` for a structured event: ``log.info("filter", extra=fields(pod=...))``."""
    return {FIELDS: values}


class RedactingFilter(logging.Filter):
    """Formats each record's message once, scrubbed, and scrubs its text fields and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        extra = getattr(record, FIELDS, None)
        if isinstance(extra, dict):
            setattr(
                record,
                FIELDS,
                {k: redact(v) if isinstance(v, str) else v for k, v in extra.items()},
            )
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None  # the scrubbed text is what gets written
        return True


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: anything a terminal
# or a line-based log reader could take as the end of a line or as a command.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _SHORT_ESCAPES.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def escape_controls(text: str) -> str:
    """``text`` on one line: each control character written as a backslash escape."""
    return _CONTROL.sub(_escape_char, text)


def _json_line(text: str) -> str:
    # json.dumps escapes C0 controls itself; with ensure_ascii=False it leaves DEL, C1 and the
    # Unicode separators as they are. \uXXXX keeps the JSON valid and its value unchanged.
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _indented(traceback: str) -> str:
    return "".join(f"\n    {escape_controls(line)}" for line in traceback.splitlines())


class AcceptErrorLimiter(logging.Filter):
    """Keeps one of asyncio's failed-``accept()`` records per ``interval``.

    When file descriptors run out, asyncio logs every failed ``accept()`` with a traceback:
    thousands of records a second, for as long as idle connections hold the descriptors. The
    one kept says how many were dropped and what frees descriptors.
    """

    PREFIX = "socket.accept() out of system resource"

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self.interval = interval
        self._last = -math.inf
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "asyncio" or not str(record.msg).startswith(self.PREFIX):
            return True
        now = time.monotonic()
        if now - self._last < self.interval:
            self._dropped += 1
            return False
        self._last = now
        error = record.exc_info[1] if record.exc_info else None
        record.msg = (
            "cannot accept connections (%s); %d such records dropped since the last; idle "
            "connections are closed after --keepalive-timeout"
        )
        record.args = (error or "out of system resource", self._dropped)
        record.exc_info, record.exc_text = None, None
        self._dropped = 0
        return True


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class ConsoleFormatter(logging.Formatter):
    """``2026-11-24T15:27:01.123Z INFO extender.access: filter pod=shop/web nodes=3 ...``"""

    def format(self, record: logging.LogRecord) -> str:
        message = escape_controls(record.getMessage())
        line = f"{_timestamp(record)} {record.levelname} {escape_controls(record.name)}: {message}"
        extra = getattr(record, FIELDS, None)
        if isinstance(extra, dict):
            line += "".join(
                f" {escape_controls(str(key))}={_console_value(value)}"
                for key, value in extra.items()
            )
        if record.exc_text:
            line += _indented(record.exc_text)
        elif record.exc_info:
            line += _indented(self.formatException(record.exc_info))
        return line


def _console_value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=') or _CONTROL.search(text):
        return _json_line(json.dumps(text, ensure_ascii=False))
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the event's fields, and
    ``exception`` (the traceback text) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, FIELDS, None)
        if isinstance(extra, dict):
            for key, value in extra.items():
                document.setdefault(key, value)
        if record.exc_text:
            document["exception"] = record.exc_text
        elif record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return _json_line(json.dumps(document, default=str, ensure_ascii=False))


def configure_logging(level: str, fmt: str = "console", stream: TextIO | None = None) -> None:
    """Send every log record (ours and the libraries') to ``stream`` (stderr) in ``fmt``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(AcceptErrorLimiter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLevelName(level)))
    logging.captureWarnings(True)
