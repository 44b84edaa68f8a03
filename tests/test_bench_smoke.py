"""Smoke test of the streaming quality bench: one short clip, a real server subprocess.

Only the shape of the report is checked, plus that nothing committed was retracted;
timings on a shared CI machine prove nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.harness.corpus import manifest_path
from bench.harness.transports import CODECS, TRANSPORTS
from bench.stream_quality import BenchError, main, parse_options
from tests.data import FIXTURE_DIR

CLIP = "1089-134691-0000"

CLIP_FIELDS = {
    "config", "clip_id", "category", "variant", "codec", "seconds", "reference", "hypothesis",
    "offline_hypothesis", "wer", "offline_wer", "final_latency_s",
    "final_latency_from_speech_end_s", "first_text_latency_s", "end_to_last_final_s",
    "segments", "partial_updates", "flicker_changed", "retractions", "server_cpu_s",
    "client_cpu_s", "server_cpu_rtf", "client_cpu_rtf", "wall_rtf", "errors", "timeline",
}
SUMMARY_FIELDS = {
    "config", "variant", "category", "clips", "audio_seconds", "wer", "offline_wer",
    "wer_gap_points",
    "final_latency", "final_latency_from_speech_end", "first_text_latency",
    "end_to_last_final", "partial_updates", "flicker_rate", "retractions", "server_cpu_rtf",
    "client_cpu_rtf", "wall_rtf", "errors", "targets_met",
}


def test_options_pick_the_set_transport_and_codec() -> None:
    options = parse_options(["--set", "speech-wide", "--transport", "ws", "--ids", "a,b"])
    assert options.manifest == manifest_path("speech-wide")
    assert (options.transport, options.codec, options.ids) == ("ws", "pcm16", ("a", "b"))
    assert parse_options([]).codec == "opus"
    assert parse_options(["--manifest", "m.jsonl"]).manifest == Path("m.jsonl")
    with pytest.raises(BenchError, match="not one of ws's"):
        parse_options(["--transport", "ws", "--codec", "opus"])
    with pytest.raises(BenchError, match="sets --port itself"):
        parse_options(["--config", "x=--port 1"])


def test_every_transport_has_its_codecs() -> None:
    assert set(TRANSPORTS) == set(CODECS)
    assert all(codecs for codecs in CODECS.values())


@pytest.mark.slow
@pytest.mark.model
def test_bench_reports_every_metric(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.json"
    code = main([
        "--manifest", str(FIXTURE_DIR / "manifest.jsonl"), "--ids", CLIP,
        "--json", str(out), "--no-warmup",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "final latency median s" in printed and CLIP in printed

    report = json.loads(out.read_text(encoding="utf-8"))
    assert [c["name"] for c in report["configs"]] == ["default"]
    assert report["speed"] == 1.0

    (clip,) = report["clips"]
    assert CLIP_FIELDS <= clip.keys()
    assert clip["clip_id"] == CLIP and clip["variant"] == "wideband" and clip["codec"] == "opus"
    assert clip["hypothesis"], "the stream produced no final text"
    assert clip["offline_hypothesis"]
    for wer in (clip["wer"], clip["offline_wer"]):
        assert wer["ref_words"] == 5 and wer["wer"] >= 0
    assert clip["final_latency_s"] and clip["first_text_latency_s"]
    assert clip["end_to_last_final_s"] is not None
    assert clip["server_cpu_s"] > 0 and clip["client_cpu_s"] > 0
    assert clip["retractions"] == 0
    assert clip["errors"] == []
    assert any(shown["type"] == "final" for shown in clip["timeline"])

    (summary,) = report["summary"]
    assert SUMMARY_FIELDS <= summary.keys()
    assert summary["clips"] == 1
    for name in ("final_latency", "first_text_latency", "end_to_last_final"):
        assert {"median", "p95", "mean", "n"} <= summary[name].keys()
    assert summary["retractions"] == 0
    assert summary["server_cpu_rtf"] > 0
