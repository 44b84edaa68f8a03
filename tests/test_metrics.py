"""Bench metrics and harness: normalization, corpus WER, speech sets and bundled clips,
latency percentiles, flicker, the timeline of a streamed run."""

from __future__ import annotations

import json
import math
import wave
from pathlib import Path

import numpy as np
import pytest

from bench.harness.corpus import (
    SPEECH_DIR_ENV,
    SPEECH_WIDE_DIR_ENV,
    UNCATEGORISED,
    Clip,
    by_category,
    load_manifest,
    load_set,
    set_dir,
)
from bench.harness.timeline import Timeline
from bench.metrics import (
    FlickerStats,
    LatencyStats,
    WerResult,
    corpus_wer,
    flicker,
    normalize,
    percentile,
    strip_brackets,
)
from client.transcribe import Received, Transcript
from tests.data import FIXTURE_DIR, as_wav, clip, fixtures, speech_set
from webrtc_stt import wire
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.events import Envelope, Error, Event, Final, Partial, Ready, SpeechEnd, SpeechStart

# --- normalization and WER --------------------------------------------------------------


def test_normalize_follows_whisper() -> None:
    assert normalize("Hello, World!") == "hello world"
    assert normalize("  Ask not  what.") == "ask not what"
    assert normalize("Mr. Smith") == "mister smith"
    assert normalize("") == ""


def test_normalize_keeps_upstream_quirks() -> None:
    # Kept as is so our WER compares with published Whisper numbers: number words merge,
    # and a trailing ellipsis leaves a "." token that counts as a word.
    assert normalize("one two") == "12"
    assert normalize("what...") == "what ."


def test_references_keep_the_words_in_brackets() -> None:
    # Whisper's normalizer would drop "(which was printed)" as a non-speech annotation.
    reference = "the first Bible (which was printed) [at] Mainz"
    assert strip_brackets(reference) == "the first Bible  which was printed   at  Mainz"
    assert corpus_wer([reference], ["the first bible which was printed at mainz"]).wer == 0.0
    # Hypotheses are left alone: a bracketed annotation in them is not speech.
    assert corpus_wer(["hello"], ["hello [BLANK_AUDIO]"]).wer == 0.0


def test_corpus_wer_counts_edits_over_the_corpus() -> None:
    result = corpus_wer(
        ["the cat sat on the mat", "hello world"],
        ["the cat sat on a mat today", "world"],
    )
    # "the"->"a" substituted, "today" inserted, "hello" deleted: 3 edits over 8 words.
    assert result == WerResult(wer=3 / 8, substitutions=1, deletions=1, insertions=1, ref_words=8)


def test_corpus_wer_is_not_an_average_of_utterance_wers() -> None:
    result = corpus_wer(["a b c d e f g h i j", "k"], ["a b c d e f g h i j", "x"])
    assert result.wer == pytest.approx(1 / 11)


def test_corpus_wer_normalizes_both_sides() -> None:
    result = corpus_wer(["HE HOPED THERE WOULD BE STEW"], ["He hoped there would be stew."])
    assert result.wer == 0.0
    assert result.ref_words == 6


def test_corpus_wer_empty_hypothesis_and_empty_reference() -> None:
    result = corpus_wer(["red fish", ""], ["", "extra words"])
    assert (result.deletions, result.insertions, result.ref_words) == (2, 2, 2)
    assert result.wer == 2.0


def test_corpus_wer_errors() -> None:
    with pytest.raises(ValueError, match="hypotheses"):
        corpus_wer(["a"], [])
    with pytest.raises(ValueError, match="no words"):
        corpus_wer(["", "uh"], ["x", "y"])


# --- manifest ---------------------------------------------------------------------------


def _write_wav(path: Path, rate: int, seconds: float) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.zeros(int(rate * seconds), dtype="<i2").tobytes())


def _write_manifest(folder: Path) -> Path:
    (folder / "audio").mkdir()
    (folder / "telephony_8k" / "audio").mkdir(parents=True)
    _write_wav(folder / "audio" / "a.wav", 16000, 0.5)
    _write_wav(folder / "audio" / "b.wav", 16000, 0.25)
    _write_wav(folder / "telephony_8k" / "audio" / "b.wav", 8000, 0.25)
    manifest = folder / "manifest.jsonl"
    entries = [
        {"id": "a", "audio": "audio/a.wav", "text": "Alpha.", "seconds": 0.5, "kind": "utterance"},
        {
            "id": "b",
            "audio": "audio/b.wav",
            "text": "Beta",
            "seconds": 0.25,
            "kind": "longform",
            "orig_sample_rate": 8000,
            "category": "telephony",
            "license": "CC0 1.0",
            "source": "somewhere",
        },
    ]
    manifest.write_text("\n".join(json.dumps(e) for e in entries) + "\n\n", encoding="utf-8")
    return manifest


def test_load_manifest(tmp_path: Path) -> None:
    clips = load_manifest(_write_manifest(tmp_path))
    assert clips == [
        Clip("a", (tmp_path / "audio" / "a.wav").resolve(), "Alpha.", 0.5, "utterance",
             UNCATEGORISED, 16000, None, "", ""),
        Clip("b", (tmp_path / "audio" / "b.wav").resolve(), "Beta", 0.25, "longform",
             "telephony", 8000, (tmp_path / "telephony_8k" / "audio" / "b.wav").resolve(),
             "CC0 1.0", "somewhere"),
    ]
    assert list(by_category(clips)) == [UNCATEGORISED, "telephony"]


def test_load_manifest_ids_select_and_order(tmp_path: Path) -> None:
    manifest = _write_manifest(tmp_path)
    assert [c.id for c in load_manifest(manifest, ids=["b", "a"])] == ["b", "a"]
    assert load_manifest(str(manifest), ids=[]) == []
    with pytest.raises(KeyError, match="nope"):
        load_manifest(manifest, ids=["a", "nope"])


def test_load_manifest_rejects_duplicate_ids(tmp_path: Path) -> None:
    manifest = _write_manifest(tmp_path)
    lines = manifest.read_text(encoding="utf-8").splitlines()
    manifest.write_text("\n".join([lines[0], lines[0]]), encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate"):
        load_manifest(manifest)


def test_one_setting_finds_both_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SPEECH_WIDE_DIR_ENV, raising=False)
    monkeypatch.setenv(SPEECH_DIR_ENV, str(tmp_path / "speech"))
    assert set_dir("speech") == tmp_path / "speech"
    assert set_dir("speech-wide") == tmp_path / "speech-wide"
    monkeypatch.setenv(SPEECH_WIDE_DIR_ENV, str(tmp_path / "elsewhere"))
    assert set_dir("speech-wide") == tmp_path / "elsewhere"
    with pytest.raises(FileNotFoundError, match=SPEECH_DIR_ENV):
        load_set("speech")
    with pytest.raises(ValueError, match="unknown speech set"):
        set_dir("nope")


def test_bundled_clips_are_complete_and_redistributable() -> None:
    clips = fixtures()
    ids = {c.id for c in clips}
    assert {"jfk", "1089-134691-0000", "1089-134691-0001", "1221-135766-0001"} <= ids
    assert {"telephony", "noisy", "short-command"} <= {c.category for c in clips}
    for c in clips:
        assert c.audio.is_file() and c.audio.suffix == ".flac", c.id
        assert c.text and c.source and c.license, c.id
        assert "NC" not in c.license, f"{c.id}: non-commercial licence"
    assert any(c.audio_8k is not None for c in clips if c.category == "telephony")
    assert sum(c.audio.stat().st_size for c in clips) < 4 * 2**20


def test_clip_prefers_the_bundled_copy() -> None:
    jfk = clip("jfk")
    assert jfk.audio.parent == FIXTURE_DIR
    assert jfk.text.startswith("And so, my fellow Americans")


def test_an_absent_set_skips_or_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SPEECH_DIR_ENV, str(tmp_path / "none"))
    monkeypatch.delenv(SPEECH_WIDE_DIR_ENV, raising=False)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="not bundled"):
        clip("not-bundled-anywhere")
    assert clip("jfk").audio.parent == FIXTURE_DIR
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="speech set 'speech-wide' not found"):
        speech_set("speech-wide")


def test_as_wav_keeps_the_samples(tmp_path: Path) -> None:
    source = clip("1089-134691-0000").audio
    copy = as_wav(source, tmp_path)
    with wave.open(str(copy), "rb") as wav:
        assert (wav.getsampwidth(), wav.getnchannels(), wav.getframerate()) == (2, 1, 16000)
    assert np.array_equal(load_audio(copy), load_audio(source))


def test_full_speech_set_loads() -> None:
    clips = speech_set("speech")
    assert len(clips) >= 20
    jfk = next(c for c in clips if c.id == "jfk")
    assert jfk.audio.is_file()
    assert {c.kind for c in clips} <= {"utterance", "longform"}
    wide = speech_set("speech-wide")
    assert "telephony" in by_category(wide)


# --- latency ----------------------------------------------------------------------------


@pytest.mark.parametrize("q", [0, 5, 25, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    values = [0.31, 0.12, 0.5, 0.44, 0.2, 0.9, 0.05]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_edges() -> None:
    assert percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0], 50) == 1.5
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_stats() -> None:
    stats = LatencyStats.of([float(v) for v in range(1, 101)])
    assert (stats.median, stats.mean, stats.n) == (50.5, 50.5, 100)
    assert stats.p95 == pytest.approx(95.05)
    with pytest.raises(ValueError):
        LatencyStats.of([])


# --- flicker ----------------------------------------------------------------------------


def test_flicker_of_pure_extensions_is_zero() -> None:
    partials = [("hello", ""), ("hello world", "hello"), ("Hello world, how", "hello world")]
    assert flicker(partials, "Hello world, how are you?") == FlickerStats(
        updates=2, changed=0, flicker_rate=0.0, retractions=0
    )


def test_flicker_counts_rewrites_of_shown_words() -> None:
    partials = [
        ("i scream", ""),
        ("ice cream", ""),  # rewrite
        ("ice cream for", ""),  # extension
        ("ice cream four", ""),  # rewrite of the last shown word
        ("ice cream", ""),  # a shown word removed
    ]
    stats = flicker(partials, "ice cream for you")
    assert (stats.updates, stats.changed, stats.retractions) == (4, 3, 0)
    assert stats.flicker_rate == 0.75


def test_flicker_ignores_case_and_punctuation() -> None:
    stats = flicker([("so my fellow", ""), ("So, my fellow Americans", "")], "So, my fellow...")
    assert stats.changed == 0


def test_retraction_in_a_later_partial() -> None:
    partials = [("ask not", "ask"), ("ask not what", "ask not"), ("asked what", "")]
    stats = flicker(partials, "ask not what")
    # The third partial drops both committed "ask" and "ask not"; the final is fine.
    assert stats.retractions == 1
    assert stats.changed == 1


def test_retraction_in_the_final() -> None:
    partials = [("my fellow", "my"), ("my fellow americans", "my fellow")]
    assert flicker(partials, "my fellows americans").retractions == 1


def test_retraction_hidden_by_a_shrinking_commit_is_still_found() -> None:
    # The second partial commits less, but "one two" was already promised.
    partials = [("one two three", "one two"), ("one four", "one")]
    assert flicker(partials, "one four").retractions == 2


def test_commit_within_the_same_partial_is_not_checked() -> None:
    # A commit is checked against later texts only; its own partial is the producer's job.
    assert flicker([("alpha", "alpha beta")], "alpha beta gamma").retractions == 0


def test_flicker_with_one_or_no_partial() -> None:
    assert flicker([], "anything") == FlickerStats(0, 0, 0.0, 0)
    assert flicker([("anything", "")], "something else") == FlickerStats(0, 0, 0.0, 0)
    assert flicker([("anything", "anything")], "something else").retractions == 1


def test_flicker_rate_is_finite() -> None:
    stats = flicker([("a", ""), ("b", "")], "b")
    assert math.isfinite(stats.flicker_rate) and stats.flicker_rate == 1.0


# --- the timeline of a streamed run -----------------------------------------------------


def _transcript(events: list[tuple[float, Event]]) -> Transcript:
    """A transcript whose audio started at t = 100 s on the client's clock."""
    received = [Received(wire.to_dict(Envelope("s", k, e)), 100.0 + at)
                for k, (at, e) in enumerate(events, start=1)]
    return Transcript("s", received, audio_started_at=100.0, audio_ended_at=103.0,
                      audio_seconds=3.0)


def test_timeline_measures_each_segment_on_the_clients_clock() -> None:
    s = 16_000
    timeline = Timeline.of(_transcript([
        (0.0, Ready("tiny.en", "en", s)),
        (0.8, SpeechStart(1, s // 2)),
        (1.2, Partial(1, "", "", s // 2, s)),
        (1.4, Partial(1, "hello", "", s // 2, 2 * s)),
        (2.2, SpeechEnd(1, 2 * s)),
        (2.6, Final(1, "Hello.", s // 2, 2 * s, (), "en")),
        (2.7, SpeechStart(2, 2 * s + s // 4)),
        (3.9, Final(2, "", 2 * s + s // 4, 3 * s, (), "en")),
        (4.0, Error("overloaded", "try later")),
    ]))
    first, second = timeline.segments[1], timeline.segments[2]
    assert first.first_text_latency() == pytest.approx(0.9)  # the empty partial is not text
    assert first.final_latency() == pytest.approx(0.6)
    assert first.ended_at_speech_end() and not second.ended_at_speech_end()
    assert not second.showed_text() and second.first_text_latency() is None
    assert timeline.final_latencies() == pytest.approx([0.6, 0.9])
    assert timeline.last_final_at() == pytest.approx(3.9)
    assert timeline.errors == ("overloaded: try later",)
    assert [(sid, s.final) for sid, s in timeline.shown] == [
        (1, False), (1, False), (1, True), (2, True)]


def test_messages_that_are_not_events_are_left_out_of_the_timeline() -> None:
    transcript = _transcript([(0.5, SpeechStart(1, 0))])
    transcript.events.append(Received({"type": "mark", "name": "m1"}, 101.0))
    assert [type(e) for _, e in transcript.typed()] == [SpeechStart]
    assert transcript.events[-1].envelope is None
