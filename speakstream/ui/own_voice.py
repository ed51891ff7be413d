""" "Your voice": a clip the user records or uploads becomes a voice for their session, until they
forget it or close the page.

Gradio stores an upload in its temporary folder before any handler runs; the handler reads the
clip and deletes that file at once, and keeps only what the model made of it
(:mod:`speakstream.voices.own`). A clip counts against the client's rate limit as a message does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from speakstream.hearing.audio_in import AudioLimits, BadAudio, decode_wav
from speakstream.ui.loading import LOADING_TICK_SECONDS
from speakstream.ui.request_identity import client_address
from speakstream.voices.base import VoiceLoadError
from speakstream.voices.own import CLIP_SECONDS, OWN, clone_base
from speakstream.voices.pocket import PocketVoice

if TYPE_CHECKING:
    from speakstream.ui.handlers import ChatApp

log = logging.getLogger(__name__)

CONSENT = (
    "Use your own voice, or one you have permission to use. The clip (5 to 20 seconds of speech) is heard "
    "once and never saved: what is made of it stays in this server's memory for this page only, and goes "
    "when you close the page or press *Forget my voice*."
)
CLIP_LIMITS = AudioLimits(max_seconds=CLIP_SECONDS[1], min_seconds=CLIP_SECONDS[0], shorter="use 5 to 20 seconds")
# (the status line, the voice picker, the clip)
OwnOutputs = tuple[str, Any, Any]


def taken(clip: str | None) -> bytes:
    """The clip's bytes; its file (Gradio's copy of the upload) is deleted at once. A file larger
    than a clip can be is refused unread."""
    if not clip:
        return b""
    path = Path(clip)
    try:
        if (size := path.stat().st_size) > CLIP_LIMITS.max_bytes:
            raise BadAudio(f"That file is too large ({size / 1e6:.0f} MB): use 5 to 20 seconds of speech.", "too_large")
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


class OwnVoicePage:
    """The "Your voice" events of the page, bound to ``app`` (methods, so Gradio sees their request)."""

    def __init__(self, app: ChatApp) -> None:
        self.app = app

    def make(
        self, request: gr.Request, clip: str | None, picked: str | None, session: dict[str, Any] | None
    ) -> Iterator[OwnOutputs]:
        """Make the session's own voice from ``clip`` on the picked Pocket TTS voice's model (else the
        first offered), a progress line at each step; the picker then shows "Your voice"."""
        app = self.app
        try:
            data = taken(clip)
        except BadAudio as bad:
            yield self.refused(bad)
            return
        session = {} if session is None else session
        base_key = clone_base(app.voices.offered, picked, app.voices.loaded)
        if app.own_voices is None or base_key is None:
            yield "Your voice is off on this server (no Pocket TTS voice is offered).", gr.skip(), None
            return
        if wait := app.limits.check(client_address(request, app.settings.proxy_hops)):
            gr.Warning(f"You are sending too quickly. Please wait {wait:.0f} seconds.")
            yield "Not made: wait a moment and try again.", gr.skip(), None
            return
        loading, started = app.voices.request(base_key), time.monotonic()
        while not loading.done():
            yield f"Preparing your voice: loading Pocket TTS… {time.monotonic() - started:.0f} s", gr.skip(), None
            futures.wait([loading], timeout=LOADING_TICK_SECONDS)
        try:
            base = loading.result()
            if not isinstance(base, PocketVoice):
                raise VoiceLoadError(f"{base.label} cannot make voices")
            yield "Preparing your voice: checking the clip…", gr.skip(), None
            samples = decode_wav(data, CLIP_LIMITS, target=base.sample_rate)
            yield "Preparing your voice: listening to it (a few seconds)…", gr.skip(), None
            with app.pipeline.cores.voice_speaking():
                session[OWN] = app.own_voices.make(base, samples, session.get(OWN))
        except BadAudio as bad:
            yield self.refused(bad)
            return
        except VoiceLoadError as error:
            yield f"Your voice is off: {error}.", gr.skip(), None
            return
        ready = f"Ready: replies on this page now speak in your voice (made on the model of {base.label})."
        yield ready, OWN, None

    def refused(self, bad: BadAudio) -> OwnOutputs:
        """A clip that cannot be used: the user is told why (and it is counted by its reason)."""
        self.app.metrics.refusals.labels(f"clip_{bad.reason}").inc()
        gr.Warning(str(bad))
        return f"Not made: {bad}", gr.skip(), None

    def forget(self, session: dict[str, Any] | None) -> OwnOutputs:
        """Forget the session's own voice now; the picker goes back to the default voice."""
        token = (session or {}).pop(OWN, None)
        own = self.app.own_voices
        line = "Forgotten: nothing of your clip is left on the server." if own and own.forget(token) else ""
        return line or "No voice of yours to forget.", self.app.voices.default, None

    def closed(self, session: dict[str, Any] | None) -> None:
        """A page's session ended (Gradio drops its state): its own voice goes with it."""
        if self.app.own_voices is not None and session:
            self.app.own_voices.forget(session.get(OWN))
