"""Batched Whisper decoding on CTranslate2 through faster-whisper's model objects.

This is the only module that calls the model. It is synchronous and runs on the engine's
worker thread: features, encoder, decoder and word alignment for a batch of requests from
many sessions in one pass. Encoder windows are as short as accuracy allows (see
``EngineConfig.min_window_s``) instead of Whisper's fixed 30 s, which is most of the cost.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from webrtc_stt import SAMPLE_RATE
from webrtc_stt.config import EngineConfig
from webrtc_stt.decoding.requests import DecodedWord, DecodeKind, DecodeRequest, DecodeResult
from webrtc_stt.engine.models import load_whisper
from webrtc_stt.streaming.filters import normalized, trim_repetition

FRAMES_PER_SECOND = 100  # mel frames
SAMPLES_PER_FRAME = SAMPLE_RATE // FRAMES_PER_SECOND
MAX_FRAMES = 3000
TOKENS_PER_SECOND = 7.0  # generous bound for speech; a loop runs into it and stops
MAX_PROMPT_TOKENS = 223 // 2
MAX_COMPRESSION_RATIO = 2.4
"""Whisper's own bound: text that compresses better than this is a decoding loop."""
ECHO_WORDS = 4
"""A run of this many words found in the context text (or twice in the result) means a
decode with context repeated instead of transcribing."""


class WhisperBackend:
    """Holds the model(s) and decodes batches; ``EngineConfig.engine_workers`` threads may
    call it at once (CTranslate2 runs their batches in parallel; the rest is stateless
    but for a cache of tokenizers, whose races only build one twice)."""

    def __init__(self, config: EngineConfig, *, allow_download: bool = False) -> None:
        self._config = config
        common: dict[str, Any] = {
            "device": config.device,
            "compute_type": config.compute_type,
            "cpu_threads": config.cpu_threads,
            "allow_download": allow_download,
            "workers": config.engine_workers,
        }
        self._final_model = load_whisper(config.model, **common)
        self._partial_model = (
            load_whisper(config.partial_model, **common)
            if config.partial_model and config.partial_model != config.model
            else self._final_model
        )
        self._tokenizers: dict[tuple[int, str], Any] = {}

    @property
    def workers(self) -> int:
        """Batches the model decodes at once: the worker threads an engine may run."""
        return int(self._final_model.model.num_workers)

    @property
    def model_name(self) -> str:
        """Name of the model that decodes finals."""
        return self._config.model

    @property
    def multilingual(self) -> bool:
        """Whether the final model is multilingual."""
        return bool(self._final_model.model.is_multilingual)

    def decode_batch(self, requests: Sequence[DecodeRequest]) -> list[DecodeResult]:
        """Decode requests of one kind together; results in the same order."""
        if not requests:
            return []
        kind = requests[0].kind
        if any(r.kind is not kind for r in requests):
            raise ValueError("a batch holds one kind of request")
        # CTranslate2 wants <|startoftranscript|> at one position in a batch: requests with
        # and without earlier context decode in separate passes (see _same_start).
        has_context = [bool(r.prompt.strip()) for r in requests]
        if len(set(has_context)) > 1:
            passes = {
                flag: iter(self.decode_batch([r for r, f in zip(requests, has_context,
                                                                strict=True) if f is flag]))
                for flag in (True, False)
            }
            return [next(passes[flag]) for flag in has_context]
        model = self._final_model if kind is DecodeKind.FINAL else self._partial_model
        options = self._config.final if kind is DecodeKind.FINAL else self._config.partial
        # When the engine truly cannot keep up, finals decode greedily: about 30 % cheaper
        # with context, but speech-wide WER 12.6 -> 13.9 % (conversational 22.0 -> 27.4 %)
        # when every final did: the last thing load takes (``session.FINAL_ECONOMY_BACKLOG``).
        beam_size = 1 if all(r.economy for r in requests) else options.beam_size

        features, frames = self._features(model, requests)
        import ctranslate2

        encoder_output = model.model.encode(
            ctranslate2.StorageView.from_array(features), to_cpu=False
        )
        languages = self._languages(model, requests, encoder_output)
        tokenizers = [self._tokenizer(model, lang) for lang in languages]
        contexts = [
            self._prefix_tokens(tok, r.context_text) if r.context else []
            for tok, r in zip(tokenizers, requests, strict=True)
        ]
        prompts = _same_start([
            self._prompt(tok, r.prompt, r.prefix, ctx)
            for tok, r, ctx in zip(tokenizers, requests, contexts, strict=True)
        ], [tok.sot for tok in tokenizers])
        longest = max(r.seconds for r in requests)
        max_length = min(
            model.max_length,
            max(len(p) for p in prompts) + int(10 + TOKENS_PER_SECOND * longest),
        )
        generated = model.model.generate(
            encoder_output,
            prompts,
            beam_size=beam_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        results: list[DecodeResult] = []
        run_on: set[int] = set()
        aligned: list[int] = []
        token_lists: list[list[int]] = []
        for i, (request, gen, tok) in enumerate(zip(requests, generated, tokenizers, strict=True)):
            # CTranslate2 returns the forced prefix along with the generated tokens; the
            # context's own tokens lead and are not part of the result.
            context_tokens = contexts[i]
            all_tokens = [t for t in gen.sequences_ids[0] if t < tok.eot]
            text_tokens = all_tokens[len(context_tokens):]
            if context_tokens and text_tokens and not tok.decode(text_tokens[:1]).startswith(" "):
                # The continuation runs on inside the context's last word ("America" +
                # "'s not"): the model re-read the context instead of going on.
                run_on.add(i)
            text = tok.decode(text_tokens).strip()
            text, text_tokens = self._guard_repetition(tok, text, text_tokens, request.prefix)
            length = max(1, len(gen.sequences_ids[0]))
            avg_logprob = float(gen.scores[0]) * length / (length + 1)
            results.append(
                DecodeResult(
                    text=text,
                    language=languages[i],
                    avg_logprob=avg_logprob,
                    no_speech_prob=float(gen.no_speech_prob),
                    compression_ratio=compression_ratio(text),
                )
            )
            token_lists.append([*context_tokens, *text_tokens])
            if request.word_timestamps and text_tokens:
                aligned.append(i)
        echoed = set(run_on)
        if aligned:
            echoed |= self._align(model, tokenizers, requests, encoder_output, frames,
                                  token_lists, [len(c) for c in contexts], aligned, results)
        return self._without_failed_context(requests, results, echoed)

    def _without_failed_context(
        self, requests: Sequence[DecodeRequest], results: list[DecodeResult], echoed: set[int]
    ) -> list[DecodeResult]:
        """Decode again, alone, the requests whose acoustic context misled the model.

        Given earlier speech, the model now and then says some of it again or loops on it
        instead of transcribing the utterance. Such a result is worse than no context at
        all, so the utterance is decoded as it would be without (context text as prompt).
        """
        failed = [
            i for i, (r, res) in enumerate(zip(requests, results, strict=True))
            if r.context and (i in echoed or context_misled(r, res))
        ]
        if not failed:
            return results
        retried = self.decode_batch([
            replace(
                requests[i],
                audio=requests[i].audio[requests[i].context :],
                prompt=f"{requests[i].prompt} {requests[i].context_text}".strip(),
                context=0,
                context_text="",
            )
            for i in failed
        ])
        for i, result in zip(failed, retried, strict=True):
            results[i] = result
        return results

    # -- steps ------------------------------------------------------------------------

    def _features(
        self, model: Any, requests: Sequence[DecodeRequest]
    ) -> tuple[np.ndarray[Any, np.dtype[np.float32]], list[int]]:
        """Log-mel features of every request, zero-padded to one window length."""
        mels = [model.feature_extractor(r.audio[: MAX_FRAMES * SAMPLES_PER_FRAME])
                for r in requests]
        frames = [min(MAX_FRAMES, len(r.audio) // SAMPLES_PER_FRAME) for r in requests]
        economy = requests[0].kind is DecodeKind.PARTIAL and all(r.economy for r in requests)
        if requests[0].kind is DecodeKind.FINAL:
            shortest = self._config.final_min_window_s
        else:
            shortest = self._config.economy_window_s if economy else self._config.min_window_s
        window_s = max(
            shortest,
            math.ceil(max(frames) / FRAMES_PER_SECOND + self._config.window_margin_s),
        )
        width = min(MAX_FRAMES, int(window_s * FRAMES_PER_SECOND))
        batch = np.zeros((len(requests), mels[0].shape[0], width), dtype=np.float32)
        for i, (mel, n) in enumerate(zip(mels, frames, strict=True)):
            batch[i, :, :n] = mel[:, :n]
        return batch, frames

    def _languages(self, model: Any, requests: Sequence[DecodeRequest], encoder_output: Any
                   ) -> list[str]:
        if not model.model.is_multilingual:
            return ["en"] * len(requests)
        missing = [i for i, r in enumerate(requests) if r.language is None]
        langs = [r.language or "" for r in requests]
        if missing:
            detected = model.model.detect_language(encoder_output)
            for i in missing:
                langs[i] = detected[i][0][0][2:-2]  # "<|de|>" -> "de"
        return langs

    def _tokenizer(self, model: Any, language: str) -> Any:
        key = (id(model), language)
        tok = self._tokenizers.get(key)
        if tok is None:
            from faster_whisper.tokenizer import Tokenizer

            tok = Tokenizer(
                model.hf_tokenizer,
                model.model.is_multilingual,
                task="transcribe",
                language=language if model.model.is_multilingual else "en",
            )
            self._tokenizers[key] = tok
        return tok

    @staticmethod
    def _prefix_tokens(tok: Any, prefix: str) -> list[int]:
        return list(tok.encode(" " + prefix.strip())) if prefix.strip() else []

    def _prompt(self, tok: Any, prompt: str, prefix: str, context: list[int]) -> list[int]:
        tokens: list[int] = []
        if prompt.strip():
            earlier = tok.encode(" " + prompt.strip())[-MAX_PROMPT_TOKENS:]
            tokens = [tok.sot_prev, *earlier]
        return [*tokens, *tok.sot_sequence, tok.no_timestamps, *context,
                *self._prefix_tokens(tok, prefix)]

    @staticmethod
    def _guard_repetition(tok: Any, text: str, tokens: list[int], prefix: str
                          ) -> tuple[str, list[int]]:
        """Cut a decoding loop ("a b c a b c a b c") down to one copy of the phrase."""
        trimmed = trim_repetition(text)
        if trimmed == text:
            return text, tokens
        if prefix.strip() and not trimmed.startswith(prefix.strip()):
            trimmed = prefix.strip()
        return trimmed, list(tok.encode(" " + trimmed)) if trimmed else []

    def _align(
        self,
        model: Any,
        tokenizers: Sequence[Any],
        requests: Sequence[DecodeRequest],
        encoder_output: Any,
        frames: Sequence[int],
        token_lists: Sequence[list[int]],
        context_lengths: Sequence[int],
        indices: Sequence[int],
        results: list[DecodeResult],
    ) -> set[int]:
        """Word times and probabilities from cross-attention (DTW), batched per language.

        ``token_lists[i]`` starts with ``context_lengths[i]`` tokens of context text: those
        words are aligned with the rest (the whole audio is one sequence) and then left out.
        Returns the requests whose decoded words the alignment puts in the context audio.
        """
        from faster_whisper.transcribe import merge_punctuations

        echoed: set[int] = set()
        # One alignment call per start sequence (language): CTranslate2 takes one per batch.
        alignments: dict[int, Any] = {}
        groups: dict[tuple[int, ...], list[int]] = {}
        for i in indices:
            groups.setdefault(tuple(tokenizers[i].sot_sequence), []).append(i)
        for sot, members in groups.items():
            outputs = model.model.align(
                encoder_output,
                list(sot),
                [token_lists[i] if i in members else [tokenizers[i].eot]
                 for i in range(len(requests))],
                list(frames),
                median_filter_width=7,
            )
            for i in members:
                alignments[i] = outputs[i]
        for i in indices:
            tok = tokenizers[i]
            words = _drop_context(
                _words_from_alignment(tok, token_lists[i], alignments[i]), context_lengths[i]
            )
            offset = requests[i].context
            if offset and said_in_context(
                words, len(self._prefix_tokens(tok, requests[i].prefix)), offset
            ):
                echoed.add(i)
            merge_punctuations(words, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
            words = [w for w in words if w["word"]]  # merged punctuation leaves empty words
            text = results[i].text
            if _drop_unheard_repeat(words, len(requests[i].prefix.split())):
                text = "".join(w["word"] for w in words).strip()
            length = len(requests[i].audio) - offset
            decoded = tuple(
                DecodedWord(
                    word=w["word"],
                    start=min(length, max(0, int(w["start"] * SAMPLE_RATE) - offset)),
                    end=min(length, max(0, int(w["end"] * SAMPLE_RATE) - offset)),
                    probability=float(w["probability"]),
                )
                for w in words
            )
            r = results[i]
            results[i] = DecodeResult(
                text=text,
                language=r.language,
                words=decoded,
                avg_logprob=r.avg_logprob,
                no_speech_prob=r.no_speech_prob,
                compression_ratio=r.compression_ratio,
            )
        return echoed


def _same_start(prompts: list[list[int]], sots: Sequence[int]) -> list[list[int]]:
    """Cut earlier-context tokens (oldest first) so every prompt of a batch has its
    <|startoftranscript|> at one position; the prompts all have context or none do."""
    starts = [p.index(sot) for p, sot in zip(prompts, sots, strict=True)]
    common = min(starts)
    return [[p[0], *p[1 + start - common :]] if start > common else p
            for p, start in zip(prompts, starts, strict=True)]


def _drop_context(words: list[dict[str, Any]], context_tokens: int) -> list[dict[str, Any]]:
    """The words after the first ``context_tokens`` tokens (a word that straddles the
    boundary belongs to the utterance)."""
    if not context_tokens:
        return words
    seen = 0
    for index, word in enumerate(words):
        seen += len(word["tokens"])
        if seen > context_tokens:
            return words[index:]
    return []


UNHEARD_S = 0.02
"""A word the alignment gives less audio than this was not heard."""


def _drop_unheard_repeat(words: list[dict[str, Any]], forced: int) -> bool:
    """Drop trailing copies of the word before them that the alignment gives no audio.

    On a short utterance in a mostly silent window the model likes to say its last word
    again ("Zero. Zero.", "1. 2. 3. 3"); the copy gets no frames of its own. Forced
    (committed) words always stay. Returns whether a word was dropped.
    """
    dropped = False
    while len(words) >= 2 and len(words) > forced:
        last, before = words[-1], words[-2]
        if last["end"] - last["start"] >= UNHEARD_S:
            break
        if normalized(last["word"]) != normalized(before["word"]):
            break
        words.pop()
        dropped = True
    return dropped


def said_in_context(words: list[dict[str, Any]], prefix_tokens: int, context: int) -> bool:
    """Whether a decoded word (past the forced ``prefix``) aligns inside the context audio.

    Given the context, the model sometimes says part of it again instead of going on (its
    forced text rarely matches the audio word for word); such words align before the
    utterance begins (``context`` samples into the audio).
    """
    boundary = context / SAMPLE_RATE
    seen = 0
    for word in words:
        forced = seen < prefix_tokens
        seen += len(word["tokens"])
        if not forced and (word["start"] + word["end"]) / 2 < boundary:
            return True
    return False


def context_misled(request: DecodeRequest, result: DecodeResult) -> bool:
    """Whether a decode with acoustic context said the context again or looped."""
    own = normalized(result.text).split()
    if compression_ratio(" ".join(own)) > MAX_COMPRESSION_RATIO:
        return True
    earlier = normalized(request.context_text).split()
    seen = {tuple(earlier[k : k + ECHO_WORDS]) for k in range(len(earlier) - ECHO_WORDS + 1)}
    grams = [tuple(own[k : k + ECHO_WORDS]) for k in range(len(own) - ECHO_WORDS + 1)]
    return any(g in seen for g in grams) or len(set(grams)) < len(grams)


def _words_from_alignment(tok: Any, text_tokens: list[int], result: Any) -> list[dict[str, Any]]:
    """faster-whisper's find_alignment arithmetic for one item (tokens at 50 per second)."""
    text_token_probs = result.text_token_probs
    pairs = result.alignments
    text_indices = np.array([p[0] for p in pairs])
    time_indices = np.array([p[1] for p in pairs])
    words, word_tokens = tok.split_to_word_tokens(text_tokens + [tok.eot])
    if len(word_tokens) <= 1 or len(text_indices) == 0:
        return []
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / 50.0
    if len(jump_times) < boundaries[-1] + 1:
        return []
    starts = jump_times[boundaries[:-1]]
    ends = jump_times[boundaries[1:]]
    probs = [float(np.mean(text_token_probs[i:j])) for i, j in
             zip(boundaries[:-1], boundaries[1:], strict=True)]
    return [
        {"word": w, "tokens": t, "start": float(s), "end": float(e), "probability": p}
        # words ends with the end-of-text marker, which has no span: zip drops it.
        for w, t, s, e, p in zip(words, word_tokens, starts, ends, probs, strict=False)
    ]


def compression_ratio(text: str) -> float:
    """Whisper's repetitiveness measure: raw bytes over zlib-compressed bytes."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0
