"""Log output: ``text`` for people, ``json`` (one object a line) for log pipelines.

Every line names the session and transport it belongs to, read from
:mod:`webrtc_stt.logcontext` (bound by the HTTP middleware and the hub, inherited by the
session's tasks), so a session's lines can be found without parsing messages. A JSON line
carries ``ts``, ``level``, ``logger``, ``event``, ``message``, ``session_id`` and
``transport``, plus any structured fields the call passed in ``extra`` (the access log's
``method``, ``path``, ``status``, ``duration_ms``). ``event`` is the call's
``extra={"event": ...}``, or ``log`` when it gave none.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from webrtc_stt import logcontext

STRUCTURED_FIELDS = ("method", "path", "status", "duration_ms")
"""``extra`` fields copied into JSON lines."""


class ContextFilter(logging.Filter):
    """Stamps each record with the session id, transport and event of its context."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = logcontext.current()
        if not getattr(record, "session_id", ""):
            record.session_id = context.session_id
        if not getattr(record, "transport", ""):
            record.transport = context.transport
        if not getattr(record, "event", ""):
            record.event = "log"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
            "session_id": getattr(record, "session_id", ""),
            "transport": getattr(record, "transport", ""),
        }
        for name in STRUCTURED_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with ``[session transport]`` when the line belongs to one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        session_id = getattr(record, "session_id", "")
        if session_id:
            text += f" [session={session_id} transport={getattr(record, 'transport', '')}]"
        return text


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send every log line to stderr in ``fmt`` (``text`` or ``json``) from ``level`` up."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
