"""``webrtc-stt transcribe FILE`` without ``--url``: the file pipeline in the command's own
process with the bundled model, as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.metrics import corpus_wer
from tests.data import clip

pytestmark = pytest.mark.model

JFK = clip("jfk")
CUE = re.compile(r"\d\d:\d\d:\d\d[,.]\d\d\d --> \d\d:\d\d:\d\d[,.]\d\d\d")


def command() -> list[str]:
    """The installed console script, or the same entry point through this interpreter."""
    script = shutil.which("webrtc-stt")
    return [script] if script else [sys.executable, "-m", "client.cli"]


def clean_env() -> dict[str, str]:
    # Settings of the developer's shell (WEBRTC_STT_URL above all) must not apply here.
    return {k: v for k, v in os.environ.items() if not k.startswith("WEBRTC_STT_")}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command(), "transcribe", *args], capture_output=True, text=True,
                          timeout=180, env=clean_env())


def cue_text(body: str) -> str:
    """The words of SRT or VTT cues, numbers and timings left out."""
    lines = [line for line in body.splitlines()
             if line and line != "WEBVTT" and not CUE.fullmatch(line) and not line.isdigit()]
    return " ".join(lines)


@pytest.mark.parametrize("fmt", ["text", "json", "verbose_json", "srt", "vtt"])
def test_each_format_in_process(fmt: str) -> None:
    done = run(str(JFK.audio), "--format", fmt)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    # stderr is no terminal here: no progress bar unless asked.
    assert done.stderr == ""
    out = done.stdout
    if fmt == "text":
        text = out.strip()
    elif fmt == "json":
        text = json.loads(out)["text"]
    elif fmt == "verbose_json":
        body = json.loads(out)
        assert body["language"] == "english"
        assert body["duration"] == pytest.approx(JFK.seconds, abs=0.05)
        assert body["segments"] and body["words"]
        assert [w["word"] for w in body["words"]] == body["text"].split()
        text = body["text"]
    else:
        assert len(CUE.findall(out)) >= 1, out
        if fmt == "vtt":
            assert out.startswith("WEBVTT\n")
        else:
            assert out.startswith("1\n")
        text = cue_text(out)
    assert corpus_wer([JFK.text], [text]).wer <= 0.05, out


def test_output_file_and_progress_bar(tmp_path: Path) -> None:
    target = tmp_path / "out.srt"
    done = run(str(JFK.audio), "--format", "srt", "-o", str(target), "--progress")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert CUE.search(target.read_text(encoding="utf-8"))
    assert "100%" in done.stderr and done.stderr.endswith("\n")


@pytest.mark.parametrize(
    ("content", "mentions"),
    [(b"this is no audio file " * 50, "Invalid file format"), (b"", "empty")],
    ids=["not-audio", "empty"],
)
def test_a_bad_file_is_one_line_and_status_1(tmp_path: Path, content: bytes,
                                             mentions: str) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    done = run(str(bad))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and mentions in lines[0], done.stderr
    assert done.stdout == ""


def test_a_missing_file_is_one_line_and_status_1(tmp_path: Path) -> None:
    done = run(str(tmp_path / "nothing.wav"))
    assert done.returncode == 1
    assert "nothing.wav" in done.stderr and "Traceback" not in done.stderr
