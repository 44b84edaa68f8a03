"""Smoke test of the virtual-clock accuracy bench: two bundled clips, two configurations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.replay_quality import main, parse_config
from tests.data import FIXTURE_DIR
from webrtc_stt.config import DecodeOptions

pytestmark = [pytest.mark.model, pytest.mark.slow]


def test_a_config_sets_streaming_and_vad_fields() -> None:
    spec = parse_config("tuned=final_context_s=0,vad.min_silence_ms=500,commit_agreement=2")
    assert spec.name == "tuned"
    assert spec.config.streaming.final_context_s == 0
    assert spec.config.streaming.commit_agreement == 2
    assert spec.config.vad.min_silence_ms == 500
    assert not spec.config.streaming.adaptive_cadence  # wall-clock load means nothing here
    with pytest.raises(SystemExit):
        parse_config("bad=no_such_field=1")


def test_a_config_sets_the_search_of_one_decode_kind() -> None:
    spec = parse_config("greedy=engine.final.beam_size=1,engine.min_window_s=5")
    assert spec.engine["final"] == DecodeOptions(beam_size=1)
    assert spec.engine["min_window_s"] == 5.0
    assert "partial" not in spec.engine


def test_report_per_category_next_to_offline(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert main(["--manifest", str(FIXTURE_DIR / "manifest.jsonl"),
                 "--ids", "jfk,kathleen_arctic_b0100_tel8k",
                 "--config", "no-context=final_context_s=0", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {(r["config"], r["category"]): r for r in report["results"]}
    assert {c for c, _ in rows} == {"default", "no-context"}
    assert ("default", "all") in rows and ("default", "telephony") in rows
    for row in rows.values():
        assert row["streamed"]["wer"] <= 0.2 and row["offline"]["wer"] <= 0.2
    assert set(report["transcripts"]) == {"offline", "default", "no-context"}
