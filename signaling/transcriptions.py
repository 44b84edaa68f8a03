"""``POST /v1/audio/transcriptions``: OpenAI's file transcription API on the shared engine.

Takes what the official ``openai`` SDK sends (``client.audio.transcriptions.create``), as
``multipart/form-data``:

``file`` (required)
    Any audio file FFmpeg decodes, up to ``FileConfig.max_upload_bytes`` (25 MB) and
    ``FileConfig.max_audio_s`` of audio.
``model`` (required)
    Accepted whatever it names: the server transcribes with the model it was started with.
``language``, ``prompt``
    An ISO-639-1 code (default: the server's ``--language``); text that primes the decoder.
``response_format``
    ``json`` (default), ``text``, ``verbose_json``, ``srt`` or ``vtt``.
``timestamp_granularities[]``
    ``segment`` and/or ``word``: what ``verbose_json`` lists (default: segments).
``temperature``
    Accepted (0..1) and ignored: decoding is beam search, which has no temperature.
``stream``
    ``true``: Server-Sent Events, a ``transcript.text.delta`` per segment as the file is
    decoded and a last ``transcript.text.done`` with the whole text, whatever the format.

Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400 for a
bad field or a file that is not audio, 413 past the upload limit, 415 for a body that is not
multipart, 429 (with ``Retry-After``) when ``max_jobs + max_waiting`` files are in hand,
503 while shutting down. The body is read part by part and never buffered past the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from signaling.keys import CONFIG, HUB
from webrtc_stt.audio.resample import Samples
from webrtc_stt.batch.config import FileConfig
from webrtc_stt.batch.decode import AudioRejected
from webrtc_stt.batch.formats import (
    ResponseFormat,
    delta_event,
    done_event,
    error_body,
    error_event,
    render,
)
from webrtc_stt.batch.pipeline import (
    FileOptions,
    FileTranscriber,
    Transcript,
    TranscriptSegment,
    assemble,
    join_text,
)
from webrtc_stt.batch.slots import JobSlots, TooManyJobs
from webrtc_stt.decoding.requests import EngineClosed
from webrtc_stt.errors import BadRequest
from webrtc_stt.streaming.transcriber import TextFilter
from webrtc_stt.vad import SileroModel

log = logging.getLogger(__name__)

ENDPOINT = "/v1/audio/transcriptions"
FIELD_MAX_BYTES = 64 * 1024
"""Largest form field other than the file (a long prompt fits many times over)."""
READ_CHUNK = 64 * 1024

TRANSCRIBER = web.AppKey("file_transcriber", FileTranscriber)
SLOTS = web.AppKey("file_slots", JobSlots)


class RunningJobs:
    """Handlers running a file job, cancelled when the server shuts down."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()


JOBS = web.AppKey("file_jobs", RunningJobs)


class OpenAIError(Exception):
    """An error response in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, kind=kind, param=param, code=code)
        self.headers = headers

    def response(self) -> web.Response:
        """The JSON error response."""
        return web.json_response(self.body, status=self.status, headers=self.headers)


@dataclass(frozen=True)
class TranscriptionForm:
    """The fields of one request, validated."""

    file: bytes
    model: str
    language: str | None
    prompt: str
    response_format: ResponseFormat
    granularities: frozenset[str]
    stream: bool


async def post_transcription(request: web.Request) -> web.StreamResponse:
    """Transcribe the uploaded file; every failure is answered in OpenAI's error shape."""
    jobs = request.app[JOBS].tasks
    task = asyncio.current_task()
    if task is not None:
        jobs.add(task)
    try:
        return await _transcribe(request)
    except OpenAIError as error:
        return error.response()
    except TooManyJobs as error:
        return OpenAIError(429, error.message, code=error.code, kind="rate_limit_error",
                           headers={"Retry-After": str(error.retry_after)}).response()
    except BadRequest as error:
        param = "language" if error.code == "bad_language" else "response_format"
        return OpenAIError(400, error.message, param=param, code=error.code).response()
    except AudioRejected as error:
        return OpenAIError(400, error.message, param="file", code=error.code).response()
    except EngineClosed:
        return OpenAIError(503, "The server is shutting down.", kind="server_error",
                           code="shutting_down").response()
    finally:
        if task is not None:
            jobs.discard(task)


async def _transcribe(request: web.Request) -> web.StreamResponse:
    transcriber = request.app[TRANSCRIBER]
    with request.app[SLOTS].admit() as ticket:
        form = await read_form(request, transcriber.config.max_upload_bytes)
        options = FileOptions(
            language=transcriber.language(form.language),
            prompt=form.prompt,
            word_timestamps=not form.stream and form.response_format.needs_timing,
        )
        await ticket.start()
        audio = await transcriber.load(form.file)
        if form.stream:
            return await _stream(request, transcriber, audio, options)
        transcript = await _collect(request, transcriber, audio, options)
        if transcript is None:
            return web.Response(status=499)  # nobody is listening any more
        rendered = render(
            transcript,
            form.response_format,
            words="word" in form.granularities,
            segments="segment" in form.granularities or not form.granularities,
        )
        return web.Response(text=rendered.body, content_type=rendered.content_type,
                            charset="utf-8")


async def _collect(request: web.Request, transcriber: FileTranscriber, audio: Samples,
                   options: FileOptions) -> Transcript | None:
    """Every segment, or None once the client has gone: aiohttp does not cancel a handler
    whose client disconnects, and the rest of the file would be decoded for nobody."""
    found: list[TranscriptSegment] = []
    async with contextlib.aclosing(transcriber.segments(audio, options)) as segments:
        async for segment in segments:
            if request.transport is None or request.transport.is_closing():
                log.info("file job abandoned by its client after %d segments", len(found))
                return None
            found.append(segment)
    return assemble(found, len(audio), options)


async def _stream(request: web.Request, transcriber: FileTranscriber, audio: Samples,
                  options: FileOptions) -> web.StreamResponse:
    """Send each segment's text as it is decoded, then the whole text."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    })
    await response.prepare(request)
    texts: list[str] = []
    with contextlib.suppress(ConnectionError):
        try:
            async with contextlib.aclosing(transcriber.segments(audio, options)) as segments:
                async for segment in segments:
                    # Deltas concatenate to the done event's text.
                    await response.write(delta_event((" " if texts else "") + segment.text))
                    texts.append(segment.text)
        except EngineClosed:
            await response.write(error_event("The server is shutting down.",
                                             code="shutting_down"))
            return response
        await response.write(done_event(join_text(texts)))
    return response


async def read_form(request: web.Request, max_upload: int) -> TranscriptionForm:
    """Read the multipart form part by part; the file is cut off past ``max_upload``."""
    if request.content_type != "multipart/form-data":
        raise OpenAIError(415, "Content-Type must be multipart/form-data, not "
                          f"{request.content_type or 'none'}.", code="unsupported_media_type")
    fields: dict[str, str] = {}
    granularities: set[str] = set()
    file: bytes | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise OpenAIError(400, "Nested multipart bodies are not supported.")
            if part.name == "file":
                file = await _read_part(part, max_upload, "file")
                continue
            value = (await _read_part(part, FIELD_MAX_BYTES, part.name)).decode(
                part.get_charset("utf-8"))
            if part.name in ("timestamp_granularities[]", "timestamp_granularities"):
                granularities.add(value.strip())
            elif part.name:
                fields[part.name] = value
    except (ValueError, LookupError, RuntimeError, AssertionError) as exc:
        # aiohttp's multipart reader and the charset lookup raise these for malformed input.
        raise OpenAIError(400, f"Malformed multipart body: {exc}") from None
    except HttpProcessingError:
        # A part's headers that do not parse (found by schemathesis: was a 500).
        raise OpenAIError(400, "Malformed multipart body: a part's headers do not parse."
                          ) from None
    if file is None:
        raise OpenAIError(400, "Missing required parameter: 'file'.", param="file",
                          code="missing_required_parameter")
    model = fields.get("model", "").strip()
    if not model:
        raise OpenAIError(400, "Missing required parameter: 'model'.", param="model",
                          code="missing_required_parameter")
    unknown = granularities - {"word", "segment"}
    if unknown:
        raise OpenAIError(400, f"Invalid timestamp_granularities {sorted(unknown)}; use "
                          "'word' and/or 'segment'.", param="timestamp_granularities",
                          code="invalid_value")
    _check_temperature(fields.get("temperature"))
    return TranscriptionForm(
        file=file,
        model=model,
        language=fields.get("language") or None,
        prompt=fields.get("prompt", ""),
        response_format=ResponseFormat.parse(fields.get("response_format")),
        granularities=frozenset(granularities),
        stream=_flag(fields.get("stream"), "stream"),
    )


async def _read_part(part: BodyPartReader, limit: int, name: str | None) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(READ_CHUNK):
        data += chunk
        if len(data) > limit:
            raise OpenAIError(413, f"'{name}' is larger than this server's limit of {limit} "
                              "bytes.", param=name, code="too_large")
    return bytes(data)


def _check_temperature(value: str | None) -> None:
    if value is None or not value.strip():
        return
    try:
        temperature = float(value)
    except ValueError:
        temperature = -1.0
    if not 0.0 <= temperature <= 1.0:
        raise OpenAIError(400, f"Invalid temperature {value!r}; it must be between 0 and 1.",
                          param="temperature", code="invalid_value")


def _flag(value: str | None, name: str) -> bool:
    text = (value or "false").strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise OpenAIError(400, f"Invalid {name} {value!r}; use true or false.", param=name,
                          code="invalid_value")
    return text in ("true", "1")


async def _cancel_jobs(app: web.Application) -> None:
    # Shutdown would otherwise wait up to its timeout for long files to finish.
    for task in list(app[JOBS].tasks):
        task.cancel()


def setup(app: web.Application, config: FileConfig | None = None) -> None:
    """Add the route; file jobs run on the hub's engine and end when the server stops."""
    hub = app[HUB]
    server = app[CONFIG]
    config = config or server.transcriptions
    app[TRANSCRIBER] = FileTranscriber(
        hub.engine,
        config,
        default_language=hub.config.language,
        text_filter=TextFilter.from_engine(server.engine),
        vad_model=SileroModel.shared(),
    )
    app[SLOTS] = JobSlots(config.max_jobs, config.max_waiting)
    app[JOBS] = RunningJobs()
    app.on_shutdown.append(_cancel_jobs)
    app.router.add_post(ENDPOINT, post_transcription)
