"""Log lines name their session and transport, in both formats."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from signaling.logs import ContextFilter, JsonFormatter, TextFormatter
from webrtc_stt import logcontext


def record(message: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("webrtc_stt.test", logging.INFO, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(rec, key, value)
    ContextFilter().filter(rec)
    return rec


async def test_tasks_started_in_a_session_inherit_its_context() -> None:
    async def serve_session() -> tuple[str, str]:
        logcontext.bind_transport("ws")
        logcontext.bind_session("abc123")

        async def child() -> logging.LogRecord:
            return record("decoded")

        child_record = await asyncio.create_task(child())
        line = json.loads(JsonFormatter().format(child_record))
        return line["session_id"], line["transport"]

    assert await asyncio.create_task(serve_session()) == ("abc123", "ws")
    # Outside that task nothing is bound.
    assert logcontext.current() == logcontext.LogContext("", "")


@pytest.mark.parametrize("fmt", ["json", "text"])
async def test_formats(fmt: str) -> None:
    async def in_session() -> str:
        logcontext.bind_transport("whip")
        logcontext.bind_session("s1")
        rec = record("GET %s", event="http_request", method="GET", path="/v1/whip",
                     status=201, duration_ms=3.2)
        formatter = JsonFormatter() if fmt == "json" else TextFormatter()
        return formatter.format(rec)

    line = await asyncio.create_task(in_session())
    if fmt == "json":
        data = json.loads(line)
        assert data["event"] == "http_request" and data["session_id"] == "s1"
        assert data["transport"] == "whip" and data["status"] == 201
        assert data["path"] == "/v1/whip" and data["level"] == "info"
    else:
        assert line.endswith("[session=s1 transport=whip]")


def test_a_line_outside_a_session_has_empty_ids() -> None:
    data = json.loads(JsonFormatter().format(record("serving")))
    assert data["session_id"] == "" and data["transport"] == "" and data["event"] == "log"
