"""This server's voices on OpenAI's speech API (``--speech-api``), for other page servers and any
OpenAI client: ``POST /v1/audio/speech``, ``GET /v1/audio/voices``, ``GET /v1/models``.

It keeps the chat's rules: the same longest input, blocked words and rate limit per client
(a request counts as a message, and only once everything else about it is fine), and an optional
key (``SPEAKSTREAM_SPEECH_API_KEY``). The speech streams chunk by chunk as it is made: raw PCM
(16-bit mono, 24 kHz, as OpenAI sends it) or a WAV whose header leaves the length open. Errors
have OpenAI's shape: ``{"error": {"message", "type", "code", "param"}}``.
"""

from __future__ import annotations

import json
import math
import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request  # (at module level: FastAPI reads the handlers' annotations by name)

from speakstream.controls import NUMBERS
from speakstream.pipeline.spoken_text import spoken_text
from speakstream.text.admission import InvalidMessage, clean_message
from speakstream.ui.handlers import ChatApp
from speakstream.ui.request_identity import client_address
from speakstream.voices import Voice
from speakstream.voices.endpoint import PCM_RATE

# OpenAI's own voice names: its clients send one of them, and get this server's default voice.
OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage", "shimmer", "verse"}
)
FORMATS = ("wav", "pcm")
MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "speakstream")
SPEED = next(control for control in NUMBERS if control.name == "speaking_rate")


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "code": self.code, "param": self.param}}


@dataclass(frozen=True)
class SpeechAsk:
    text: str
    voice: Voice
    speed: float
    format: str


def speech_ask(body: object, app: ChatApp) -> SpeechAsk:
    """What a request asks for, or :class:`ApiError` saying what is wrong with it (reason in ``code``)."""
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.", "invalid_body")
    text = body.get("input")
    if not isinstance(text, str):
        raise ApiError(400, "'input' must be the text to speak.", "empty", "input")
    try:
        text = clean_message(text, app.settings.max_input_chars)
    except InvalidMessage as problem:
        raise ApiError(400, str(problem), "too_long" if text.strip() else "empty", "input") from None
    if app.word_filter.blocks(text):
        raise ApiError(400, "The input contains words this server does not accept.", "blocked_word", "input")
    name = body.get("voice")
    voice = app.voices.get(None) if name is None or name in OPENAI_VOICES else app.voices.voices.get(str(name))
    if voice is None:
        listed = ", ".join(app.voices.voices) or "none: this server speaks no voice"
        raise ApiError(400, f"Unknown voice {str(name)[:80]!r}; this server has: {listed}.", "unknown_voice", "voice")
    speed = body.get("speed", 1.0)
    if not isinstance(speed, int | float) or not math.isfinite(speed) or not SPEED.low <= speed <= SPEED.high:
        raise ApiError(400, f"'speed' must be a number from {SPEED.low:g} to {SPEED.high:g}.", "bad_speed", "speed")
    format_ = body.get("response_format", "wav")
    if format_ not in FORMATS:
        raise ApiError(400, f"'response_format' must be one of {', '.join(FORMATS)}.", "bad_format", "response_format")
    return SpeechAsk(text, voice, float(speed), format_)


def wav_header(rate: int) -> bytes:
    """A 16-bit mono WAV header whose lengths say "as long as the stream" (the most they can hold)."""
    unknown = 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", unknown)
    )


def serve_speech_api(web: Any, app: ChatApp) -> None:
    """Answer the speech API from the app's own web server (Gradio's FastAPI app, once launched),
    before Gradio's own catch-all routes."""
    from fastapi.responses import JSONResponse, StreamingResponse
    from fastapi.routing import APIRoute

    def failed(error: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
        if error.code in ("empty", "too_long", "blocked_word", "rate_limit"):
            app.metrics.refusals.labels(error.code).inc()
        return JSONResponse(error.body(), status_code=error.status, headers=headers)

    def authorized(request: Request) -> bool:
        key = app.settings.speech_api_key
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return not key or (scheme.lower() == "bearer" and secrets.compare_digest(given.strip(), key))

    # The longest input, four bytes a character, and room for the other fields.
    most_bytes = 4 * app.settings.max_input_chars + 4096
    refused = ApiError(401, "A valid key is needed: Authorization: Bearer <key>.", "invalid_api_key")

    def models(request: Request) -> Any:
        if not authorized(request):
            return failed(refused)
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "speakstream"} for m in MODELS]}

    def voices(request: Request) -> Any:
        if not authorized(request):
            return failed(refused)
        listed = [
            {"id": key, "name": voice.label, "language": voice.language} for key, voice in app.voices.voices.items()
        ]
        return {"voices": listed, "default": app.voices.default}

    async def speech(request: Request) -> Any:
        if not authorized(request):
            return failed(refused)
        body = bytearray()
        async for piece in request.stream():  # read no more than a request may hold
            body += piece
            if len(body) > most_bytes:
                return failed(ApiError(413, f"The body is larger than {most_bytes:,} bytes.", "too_long"))
        try:
            ask = speech_ask(json.loads(body), app)
        except ValueError:
            return failed(ApiError(400, "The body must be JSON.", "invalid_body"))
        except ApiError as error:
            return failed(error)
        if wait := app.limits.check(client_address(request, app.settings.proxy_hops)):
            error = ApiError(429, f"Too many requests; try again in {math.ceil(wait)} s.", "rate_limit")
            return failed(error, {"Retry-After": str(math.ceil(wait))})

        def stream() -> Iterator[bytes]:
            if ask.format == "wav":
                yield wav_header(PCM_RATE)
            pipeline = app.pipeline
            for samples in spoken_text(
                ask.text, ask.voice, ask.speed, PCM_RATE, pipeline.speech, pipeline.cores, app.settings
            ):
                yield samples.astype("<i2").tobytes()

        media = "audio/wav" if ask.format == "wav" else "audio/pcm"
        return StreamingResponse(stream(), media_type=media, headers={"X-Sample-Rate": str(PCM_RATE)})

    routes = [
        APIRoute("/v1/audio/speech", speech, methods=["POST"], include_in_schema=False),
        APIRoute("/v1/audio/voices", voices, methods=["GET"], include_in_schema=False),
        APIRoute("/v1/models", models, methods=["GET"], include_in_schema=False),
    ]
    web.router.routes[0:0] = routes
