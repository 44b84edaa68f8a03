"""The ``webrtc-stt`` command as a user runs it: a subprocess, its output and exit status."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from bench.metrics import corpus_wer
from tests.conftest import ServerThread
from tests.data import clip

QUICK_EXIT_S = 20.0


def command() -> list[str]:
    """The installed console script, or the same entry point through this interpreter."""
    script = shutil.which("webrtc-stt")
    return [script] if script else [sys.executable, "-m", "client.cli"]


def clean_env() -> dict[str, str]:
    # Settings of the developer's shell must not change what the command does here.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBRTC_STT_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.model
def test_transcribe_prints_json_lines(server: ServerThread) -> None:
    reference = clip("1089-134691-0001")
    done = subprocess.run(
        [*command(), "transcribe", str(reference.audio), "--url", server.url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert events and events[0]["type"] == "ready", done.stdout
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    finals = [e for e in events if e["type"] == "final"]
    assert finals, done.stdout
    text = " ".join(f["text"] for f in finals)
    assert corpus_wer([reference.text], [text]).wer <= 0.15, text


@pytest.mark.parametrize(
    ("model", "mentions"),
    [
        ("/nonexistent/dir", "/nonexistent/dir"),
        ("some-name-not-cached", "some-name-not-cached"),
    ],
)
def test_serve_with_a_missing_model_fails_fast(model: str, mentions: str) -> None:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [*command(), "serve", "--host", "127.0.0.1", "--port", "0", "--model", model],
            capture_output=True,
            text=True,
            timeout=QUICK_EXIT_S,
            env=clean_env(),
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"serve --model {model} still running after {QUICK_EXIT_S} s: {exc.stderr!r}")
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    assert elapsed < QUICK_EXIT_S
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert mentions in lines[0], lines
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
