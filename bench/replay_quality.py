"""Accuracy of the streaming pipeline on a virtual clock, per category, next to offline.

Every clip of a speech set is replayed through a real :class:`~webrtc_stt.session.Session`
(real Silero VAD, real transcriber, the real model under ``LocalEngine``) on the virtual
clock of :mod:`webrtc_stt.replay`: audio time advances only when the next 20 ms are pushed,
and every decode the session asks for is done first. The figures therefore do not depend
on machine load, which makes this the bench to compare accuracy changes side by side
(``--config``); ``bench.stream_quality`` measures the same over real transports in real
time, latency included. Offline is faster-whisper's whole-file decode of the same clips
(beam 5, no conditioning), the same normaliser on both sides.

Usage::

    python -m bench.replay_quality --set speech-wide
    python -m bench.replay_quality --set speech-wide --category telephony,conversational
    python -m bench.replay_quality --set speech --config "no-context=final_context_s=0"

``--config NAME=FIELD=VALUE,...`` sets ``StreamingConfig``/``VadConfig``/``EngineConfig``
fields for one run (``streaming.``, ``vad.`` or ``engine.`` may prefix a field; bare names
are looked up in all three; ``engine.final.beam_size`` and ``engine.partial.beam_size`` set
the search of one decode kind). A run that changes engine fields gets an engine of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from bench.harness.corpus import SETS, Clip, by_category, load_manifest, load_set
from bench.harness.offline import ModelSpec, offline_transcripts
from bench.harness.report import default_path, percent, table, write_json
from bench.metrics import WerResult, corpus_wer
from webrtc_stt.audio.resample import load_audio
from webrtc_stt.config import EngineConfig, SessionConfig, StreamingConfig, VadConfig
from webrtc_stt.engine.backend import WhisperBackend
from webrtc_stt.engine.local import LocalEngine
from webrtc_stt.events import Final
from webrtc_stt.replay import replay
from webrtc_stt.session import Session
from webrtc_stt.streaming.transcriber import TextFilter

BASELINE = "default"


@dataclass(frozen=True)
class RunSpec:
    """One configuration of the pipeline to replay."""

    name: str
    config: SessionConfig
    engine: dict[str, object] = dataclasses.field(default_factory=dict)
    """``EngineConfig`` fields this run changes (it gets an engine of its own)."""


@dataclass(frozen=True)
class CategoryResult:
    """Corpus WER of one category: streamed by one configuration, and offline."""

    config: str
    category: str
    clips: int
    ref_words: int
    streamed: WerResult
    offline: WerResult

    @property
    def gap_points(self) -> float:
        """Streamed minus offline WER, in points."""
        return 100 * (self.streamed.wer - self.offline.wer)


@dataclass(frozen=True)
class Report:
    """What the bench writes as JSON."""

    created: str
    host: str
    set: str
    model: str
    results: tuple[CategoryResult, ...]
    transcripts: dict[str, dict[str, str]]
    seconds: float


DECODE_OPTIONS = ("engine.final.beam_size", "engine.partial.beam_size")
"""Nested engine fields ``--config`` also sets."""


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def parse_config(text: str) -> RunSpec:
    """``NAME=field=value,field=value`` into a run of the default config so changed."""
    name, _, assignments = text.partition("=")
    streaming: dict[str, object] = {}
    vad: dict[str, object] = {}
    engine: dict[str, object] = {}
    for item in filter(None, assignments.split(",")):
        key, _, raw = item.partition("=")
        if key in DECODE_OPTIONS:  # engine.final.beam_size=1: the options of one decode kind
            kind_name = key.split(".")[1]
            engine[kind_name] = replace(getattr(EngineConfig(), kind_name), beam_size=int(raw))
            continue
        scope, _, field = key.rpartition(".")
        targets = {"streaming": (StreamingConfig, streaming), "vad": (VadConfig, vad),
                   "engine": (EngineConfig, engine)}
        chosen = [targets[scope]] if scope else [
            t for t in targets.values() if field in _field_names(t[0])
        ]
        if len(chosen) != 1 or field not in _field_names(chosen[0][0]):
            raise SystemExit(f"--config {text!r}: unknown field {key!r}")
        cls, values = chosen[0]
        kind = type(getattr(cls(), field))
        if kind not in (int, float, bool, str):
            raise SystemExit(f"--config {text!r}: {key!r} is not a plain value")
        values[field] = kind(raw) if kind is not bool else raw.lower() in ("1", "true", "yes")
    base = SessionConfig()
    return RunSpec(name, replace(
        base,
        streaming=replace(base.streaming, adaptive_cadence=False, **streaming),  # type: ignore[arg-type]
        vad=replace(base.vad, **vad),  # type: ignore[arg-type]
    ), engine)


async def replay_clip(engine: LocalEngine, clip: Clip, config: SessionConfig,
                      text_filter: TextFilter) -> str:
    """The finals of one clip replayed through a fresh session, joined."""
    session = Session(clip.id, engine, config=config, text_filter=text_filter)
    stamped = await replay(session, load_audio(clip.audio))
    finals = (s.envelope.event for s in stamped if isinstance(s.envelope.event, Final))
    return " ".join(f.text for f in finals if f.text).strip()


async def run(args: argparse.Namespace) -> Report:
    started = time.monotonic()
    ids = args.ids.split(",") if args.ids else None
    clips = load_manifest(args.manifest, ids) if args.manifest else load_set(args.set, ids)
    if args.category:
        wanted = set(args.category.split(","))
        clips = [c for c in clips if c.category in wanted]
    if not clips:
        raise SystemExit("no clip selected")
    specs = [] if args.no_default else [RunSpec(BASELINE, parse_config(f"{BASELINE}=").config)]
    specs += [parse_config(text) for text in args.config or ()]
    if not specs:
        raise SystemExit("--no-default needs at least one --config")
    spec = ModelSpec(args.model, "en")
    offline = await asyncio.to_thread(offline_transcripts, {spec: {c.audio for c in clips}})
    transcripts: dict[str, dict[str, str]] = {"offline": {c.id: offline[(spec, c.audio)]
                                                          for c in clips}}
    engines: dict[tuple[tuple[str, object], ...], LocalEngine] = {}
    try:
        for run_spec in specs:
            engine_config = replace(EngineConfig(model=args.model), **run_spec.engine)  # type: ignore[arg-type]
            key = tuple(sorted(run_spec.engine.items()))
            if key not in engines:
                backend = await asyncio.to_thread(WhisperBackend, engine_config)
                engines[key] = LocalEngine(backend, max_batch=engine_config.max_batch,
                                           workers=backend.workers)
            text_filter = TextFilter.from_engine(engine_config)
            texts: dict[str, str] = {}
            for clip in clips:
                texts[clip.id] = await replay_clip(engines[key], clip, run_spec.config,
                                                   text_filter)
                print(f"  {run_spec.name:12s} {clip.id:44s} "
                      f"{percent(corpus_wer([clip.text], [texts[clip.id]]).wer)}",
                      file=sys.stderr, flush=True)
            transcripts[run_spec.name] = texts
    finally:
        for engine in engines.values():
            await asyncio.to_thread(engine.close)
    groups = {"all": clips, **by_category(clips)}
    results = []
    for run_spec in specs:
        for category, members in groups.items():
            refs = [c.text for c in members]
            results.append(CategoryResult(
                run_spec.name, category, len(members),
                corpus_wer(refs, refs).ref_words,
                corpus_wer(refs, [transcripts[run_spec.name][c.id] for c in members]),
                corpus_wer(refs, [transcripts["offline"][c.id] for c in members]),
            ))
    return Report(datetime.now().isoformat(timespec="seconds"), platform.node(), args.set,
                  args.model, tuple(results), transcripts, round(time.monotonic() - started, 1))


def render(report: Report) -> str:
    rows = [[r.config, r.category, str(r.clips), str(r.ref_words), percent(r.streamed.wer),
             percent(r.offline.wer), f"{r.gap_points:+.1f}"] for r in report.results]
    return table(["config", "category", "clips", "words", "streamed", "offline", "gap"], rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=SETS, default="speech-wide")
    parser.add_argument("--manifest", type=Path, help="a manifest instead of --set")
    parser.add_argument("--ids", help="comma-separated clip ids (default: all)")
    parser.add_argument("--category", help="comma-separated categories (default: all)")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--config", action="append", metavar="NAME=FIELD=VALUE,...")
    parser.add_argument("--no-default", action="store_true",
                        help="replay only the --config runs, not the defaults")
    parser.add_argument("--json", type=Path, dest="json_out")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    print(render(report))
    path = args.json_out or default_path("replay_quality")
    write_json(path, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
