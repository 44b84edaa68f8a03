"""``POST /v1/audio/transcriptions`` driven by the official ``openai`` SDK, unchanged, against
a real server on 127.0.0.1 with the bundled model."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.audio import (
    TranscriptionTextDeltaEvent,
    TranscriptionTextDoneEvent,
)

from bench.metrics import corpus_wer
from client.ws_client import transcribe_ws
from tests.conftest import TEST_CONFIG, ServerThread
from tests.data import clip
from webrtc_stt.batch.config import FileConfig
from webrtc_stt.engine.local import LocalEngine

pytestmark = pytest.mark.model

JFK = clip("jfk")
LIBRI = clip("1221-135766-0001")
LONG = clip("earnings22_4482311_3_62")
LONGEST = clip("LJ001-0001_0017_longform")
CUE = re.compile(r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d) --> (\d\d):(\d\d):(\d\d)[,.](\d\d\d)")


def sdk(server: ServerThread) -> OpenAI:
    # No retries: a refusal must show as the server sent it.
    return OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)


def wer(reference: str, text: str) -> float:
    return corpus_wer([reference], [text]).wer


def cue_seconds(match: re.Match[str]) -> tuple[float, float]:
    g = [int(x) for x in match.groups()]
    return (g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000,
            g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000)


def test_json_on_real_speech_meets_the_wer_bound(server: ServerThread) -> None:
    client = sdk(server)
    for reference, bound in ((JFK, 0.05), (LIBRI, 0.10)):
        with reference.audio.open("rb") as audio:
            result = client.audio.transcriptions.create(file=audio, model="whisper-1")
        assert wer(reference.text, result.text) <= bound, result.text
        assert result.usage is not None and result.usage.type == "duration"
        assert result.usage.seconds == pytest.approx(reference.seconds, abs=0.05)


def encode(source: Path, target: Path, codec: str) -> Path:
    """Re-encode ``source`` with PyAV's FFmpeg (mono at the codec's usual rate)."""
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        rate = 48_000 if codec == "libopus" else 44_100
        stream = out.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        for frame in inp.decode(inp.streams.audio[0]):
            frame.pts = None
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
        for converted in resampler.resample(None):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return target


@pytest.mark.parametrize(("name", "codec"), [("jfk.mp3", "libmp3lame"), ("jfk.ogg", "libopus")])
def test_compressed_files_decode(server: ServerThread, tmp_path: Path, name: str,
                                 codec: str) -> None:
    path = encode(JFK.audio, tmp_path / name, codec)
    with path.open("rb") as audio:
        result = sdk(server).audio.transcriptions.create(file=audio, model="whisper-1")
    assert wer(JFK.text, result.text) <= 0.05, result.text


def test_text_is_the_plain_transcript(server: ServerThread) -> None:
    with JFK.audio.open("rb") as audio:
        text = sdk(server).audio.transcriptions.create(
            file=audio, model="anything", response_format="text", language="en",
            prompt="President Kennedy, inaugural address.", temperature=0.0)
    assert isinstance(text, str) and text.endswith("\n")
    assert wer(JFK.text, text) <= 0.05, text


def test_verbose_json_has_segments_and_word_times(server: ServerThread) -> None:
    with LIBRI.audio.open("rb") as audio:
        result = sdk(server).audio.transcriptions.create(
            file=audio, model="whisper-1", response_format="verbose_json",
            timestamp_granularities=["word", "segment"])
    assert result.language == "english"
    assert result.duration == pytest.approx(LIBRI.seconds, abs=0.05)
    assert wer(LIBRI.text, result.text) <= 0.10, result.text
    assert result.segments and result.words
    assert " ".join(s.text for s in result.segments) == result.text
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    for segment in result.segments:
        assert 0 <= segment.start < segment.end <= result.duration
        assert segment.end - segment.start <= 10.0
    assert [w.word for w in result.words] == result.text.split()
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= result.duration for w in result.words)
    # The words are where the speech is: the clip is speech from start to end.
    assert result.words[0].start < 1.0 and result.words[-1].end > LIBRI.seconds - 1.5

    with LIBRI.audio.open("rb") as audio:
        words_only = sdk(server).audio.transcriptions.create(
            file=audio, model="whisper-1", response_format="verbose_json",
            timestamp_granularities=["word"])
    assert words_only.words and words_only.segments is None


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles_are_timed_cues_of_the_transcript(server: ServerThread, fmt: str) -> None:
    with JFK.audio.open("rb") as audio:
        body = sdk(server).audio.transcriptions.create(
            file=audio, model="whisper-1", response_format=fmt)  # type: ignore[call-overload]
    assert isinstance(body, str)
    blocks = [b for b in body.strip().split("\n\n") if b]
    if fmt == "vtt":
        assert blocks[0] == "WEBVTT"
        blocks = blocks[1:]
    cues = []
    for n, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        if fmt == "srt":
            assert lines[0] == str(n)
            lines = lines[1:]
        match = CUE.fullmatch(lines[0])
        assert match, block
        start, end = cue_seconds(match)
        assert 0 <= start < end <= JFK.seconds
        cues.append((start, end, " ".join(lines[1:])))
    assert [c[0] for c in cues] == sorted(c[0] for c in cues)
    assert wer(JFK.text, " ".join(c[2] for c in cues)) <= 0.05, body


async def test_stream_true_sends_deltas_and_done_the_sdk_parses(server: ServerThread) -> None:
    client = AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)
    deltas: list[str] = []
    done: list[str] = []
    with LONG.audio.open("rb") as audio:
        stream = await client.audio.transcriptions.create(
            file=audio, model="whisper-1", stream=True)
        async for event in stream:
            if isinstance(event, TranscriptionTextDeltaEvent):
                assert not done, "a delta after done"
                deltas.append(event.delta)
            else:
                assert isinstance(event, TranscriptionTextDoneEvent)
                done.append(event.text)
    await client.close()
    assert len(deltas) >= 2 and len(done) == 1
    assert "".join(deltas) == done[0]
    assert wer(LONG.text, done[0]) <= 0.10, done[0]


@pytest.mark.slow
def test_a_live_session_keeps_its_finals_while_files_decode(server: ServerThread) -> None:
    """File work runs on the engine's lowest lane: a live caller's finals do not queue behind
    it, though two long files decode the whole time."""
    live = clip("1089-134686-0000")
    client = sdk(server)

    def upload() -> str:
        with LONGEST.audio.open("rb") as audio:
            return client.audio.transcriptions.create(file=audio, model="whisper-1").text

    # Six long files: two decode while four wait their turn, so file work outlasts the live
    # stream even on a fast machine whose engine decodes two batches at once.
    with ThreadPoolExecutor(6) as pool:
        files: list[Future[str]] = [pool.submit(upload) for _ in range(6)]
        decoded = server.engine.load().file_audio_s
        deadline = time.monotonic() + 30
        while server.engine.load().file_audio_s == decoded and time.monotonic() < deadline:
            time.sleep(0.05)
        transcript = server.run(transcribe_ws(live.audio, server.url), timeout=120)
        still_decoding = not all(f.done() for f in files)
        texts = [f.result(timeout=300) for f in files]
    assert still_decoding, "the files finished before the live session: no contention shown"
    assert wer(live.text, transcript.text) <= 0.15, transcript.text
    finals = [e for e in transcript.events if e.data.get("type") == "final" and e.data["text"]]
    assert finals
    # A final waits for the background batch in flight (one window's decode: about a second
    # on a busy CPU), never for the background queue; starved, it would come after the
    # files or not at all.
    lag = max(e.at - (transcript.audio_started_at + e.data["end"]) for e in finals)
    assert lag <= 6.0, f"live final {lag:.2f} s after its speech ended"
    for text in texts:
        assert wer(LONGEST.text, text) <= 0.05, text


# -- bad input ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(engine: LocalEngine) -> Iterator[ServerThread]:
    """A server with small file limits and one job place."""
    limits = FileConfig(max_upload_bytes=400_000, max_audio_s=5.0, max_jobs=1, max_waiting=0)
    thread = ServerThread(replace(TEST_CONFIG, transcriptions=limits), engine)
    yield thread
    thread.stop()


def post(server: ServerThread, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("timeout", 60)
    return httpx.post(server.url + "/v1/audio/transcriptions", **kwargs)


def assert_openai_error(response: httpx.Response, status: int, param: str | None,
                        code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    assert error["type"] in ("invalid_request_error", "rate_limit_error")
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code


WAV_HEADER_ONLY = (
    b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80>\x00\x00\x00}\x00\x00"
    b"\x02\x00\x10\x00data\x00\x00\x00\x00"
)


@pytest.mark.parametrize(
    ("files", "data", "status", "param", "code"),
    [
        ({"file": ("a.wav", b"")}, {"model": "whisper-1"}, 400, "file", "empty_file"),
        ({"file": ("a.wav", WAV_HEADER_ONLY)}, {"model": "whisper-1"}, 400, "file",
         "empty_file"),
        ({"file": ("a.mp3", b"this is not audio " * 200)}, {"model": "whisper-1"}, 400, "file",
         "invalid_file"),
        ({"model": (None, "whisper-1")}, {}, 400, "file", "missing_required_parameter"),
        ({"file": ("a.wav", b"x")}, {}, 400, "model", "missing_required_parameter"),
        ({"file": ("a.wav", b"x")}, {"model": "m", "response_format": "xml"}, 400,
         "response_format", "bad_response_format"),
        ({"file": ("a.wav", b"x")}, {"model": "m", "language": "xx"}, 400, "language",
         "bad_language"),
        ({"file": ("a.wav", b"x")}, {"model": "m", "language": "de"}, 400, "language",
         "bad_language"),
        ({"file": ("a.wav", b"x")}, {"model": "m", "temperature": "hot"}, 400, "temperature",
         "invalid_value"),
        ({"file": ("a.wav", b"x")}, {"model": "m", "timestamp_granularities[]": "char"}, 400,
         "timestamp_granularities", "invalid_value"),
        ({"file": ("a.wav", b"x")}, {"model": "m", "stream": "maybe"}, 400, "stream",
         "invalid_value"),
        ({"file": ("a.wav", b"\0" * 500_000)}, {"model": "m"}, 413, "file", "too_large"),
    ],
    ids=["empty", "no-samples", "not-audio", "no-file", "no-model", "bad-format",
         "bad-language", "english-only", "bad-temperature", "bad-granularity", "bad-stream",
         "too-large"],
)
def test_bad_input_gets_the_openai_error_shape(
    limited: ServerThread, files: dict[str, Any], data: dict[str, str], status: int,
    param: str | None, code: str,
) -> None:
    assert_openai_error(post(limited, files=files, data=data), status, param, code)


def test_audio_over_the_duration_limit_is_refused(limited: ServerThread) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        with JFK.audio.open("rb") as audio:  # 11 s against a 5 s limit
            sdk(limited).audio.transcriptions.create(file=audio, model="whisper-1")
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "audio_too_long"


def test_bodies_that_are_not_multipart(limited: ServerThread) -> None:
    assert_openai_error(post(limited, json={"model": "m"}), 415, None, "unsupported_media_type")
    broken = post(limited, content=b"--x\r\nnot a part",
                  headers={"Content-Type": "multipart/form-data; boundary=zzz"})
    assert_openai_error(broken, 400, None)


def test_a_file_past_the_job_places_is_refused_with_retry_after(limited: ServerThread) -> None:
    short = clip("1089-134691-0000")  # 2 s: under the limited server's 5 s
    ready = threading.Event()

    def hold() -> httpx.Response:
        ready.set()
        return post(limited, files={"file": ("a.wav", short.audio.read_bytes())},
                    data={"model": "m"})

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(hold)
        ready.wait()
        deadline = time.monotonic() + 10
        refused = None
        while time.monotonic() < deadline and not first.done():
            response = post(limited, files={"file": ("a.wav", b"x")}, data={"model": "m"})
            if response.status_code == 429:
                refused = response
                break
            time.sleep(0.02)
        held = first.result(timeout=60)
    if held.status_code == 429:
        # A probe reached the one place first: then the file is the request past it.
        refused = refused or held
    else:
        assert held.status_code == 200, held.text
    if refused is None:
        pytest.skip("the first file finished before a second could arrive")
    assert_openai_error(refused, 429, None, "too_many_jobs")
    assert int(refused.headers["Retry-After"]) > 0


def test_the_server_stays_healthy_after_bad_input(limited: ServerThread) -> None:
    for junk in (b"", b"\x00\xff" * 1000, b"RIFF" + b"\xff" * 100):
        post(limited, files={"file": ("a.wav", junk)}, data={"model": "m"})
    health = httpx.get(limited.url + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    good = clip("1089-134691-0000")
    with good.audio.open("rb") as audio:
        result = sdk(limited).audio.transcriptions.create(file=audio, model="whisper-1")
    assert wer(good.text, result.text) <= 0.15, result.text


def test_a_job_its_client_abandons_stops_and_frees_its_place(engine: LocalEngine) -> None:
    limits = FileConfig(max_jobs=1, max_waiting=0)
    thread = ServerThread(replace(TEST_CONFIG, transcriptions=limits), engine)
    try:
        with pytest.raises(httpx.TimeoutException):
            post(thread, files={"file": ("a.wav", LONGEST.audio.read_bytes())},
                 data={"model": "m"}, timeout=httpx.Timeout(10, read=3))
        # Measured from the moment the client gives up, so a fast machine that decoded
        # most of the file in those 3 s still proves the job stops.
        decoded = engine.load().file_audio_s
        # The job ends after the window in flight; the next file gets the place.
        short = clip("1089-134691-0000")
        deadline = time.monotonic() + 30
        while True:
            response = post(thread, files={"file": ("a.wav", short.audio.read_bytes())},
                            data={"model": "m"})
            if response.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert response.status_code == 200, response.text
        # After the client left: the window in flight, at most one more that raced the
        # disconnect (25 s each), and the 2 s short file; never the rest of the 118 s.
        window = FileConfig().window_s
        assert engine.load().file_audio_s - decoded < 2 * window + 5
    finally:
        thread.stop()


def test_shutdown_cancels_a_running_file_job(engine: LocalEngine) -> None:
    thread = ServerThread(TEST_CONFIG, engine)
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(post, thread, files={"file": ("a.wav", LONG.audio.read_bytes())},
                          data={"model": "m"})
        decoded = engine.load().file_audio_s
        deadline = time.monotonic() + 30
        while engine.load().file_audio_s == decoded and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        thread.stop()
        assert time.monotonic() - started < 10
        with pytest.raises(httpx.HTTPError):
            job.result(timeout=30)

