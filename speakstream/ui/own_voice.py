""" "Your voice": a clip the user records or uploads becomes a voice for their session, until they
forget it or close the page.

Gradio stores an upload in its temporary folder before any handler runs; the handler reads the
clip and deletes that file at once, and keeps only what the model made of it
(:mod:`speakstream.voices.own`). A clip counts against the client's rate limit as a message does.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from speakstream.hearing.audio_in import AudioLimits, BadAudio, decode_wav
from speakstream.ui.handlers import supersede
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
FORGOTTEN = "own_forgotten"  # the session's count of Forget clicks: a voice being made when one comes is dropped


def taken(clip: str | None) -> bytes:
    """The clip's bytes; its file (Gradio's copy of the upload) and the folder Gradio made for it
    are deleted at once. A file larger than a clip can be is refused unread."""
    if not clip:
        return b""
    path = Path(clip)
    try:
        if (size := path.stat().st_size) > CLIP_LIMITS.max_bytes:
            raise BadAudio(f"That file is too large ({size / 1e6:.0f} MB): use 5 to 20 seconds of speech.", "too_large")
        return path.read_bytes()
    except FileNotFoundError:
        raise BadAudio("That upload is gone: upload the clip again.", "gone") from None
    finally:
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # (kept where something else is in it)
            path.parent.rmdir()


class OwnVoicePage:
    """The "Your voice" events of the page, bound to ``app`` (methods, so Gradio sees their request)."""

    def __init__(self, app: ChatApp) -> None:
        self.app = app

    def make(
        self, request: gr.Request, clip: str | None, picked: str | None, session: dict[str, Any] | None
    ) -> Iterator[OwnOutputs]:
        """Make the session's own voice from ``clip`` on the picked Pocket TTS voice's model (else one
        loaded, else the first offered), a progress line at each step; the picker then shows "Your voice"."""
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
        forgets = session.get(FORGOTTEN, 0)
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
            app.own_voices.make(base, samples, request.session_hash)
        except BadAudio as bad:
            yield self.refused(bad)
            return
        except VoiceLoadError as error:
            yield f"Your voice is off: {error}.", gr.skip(), None
            return
        except Exception:  # the model's own errors: the details (never the clip) to the log
            log.exception("Making a voice from a clip failed")
            yield "Not made: something went wrong while listening to the clip. Please try again.", gr.skip(), None
            return
        if session.get(FORGOTTEN, 0) != forgets:  # Forget was clicked meanwhile: it wins
            app.own_voices.forget(request.session_hash)
            yield "Forgotten: nothing of your clip is left on the server.", gr.skip(), None
            return
        session[OWN] = request.session_hash
        ready = f"Ready: replies on this page now speak in your voice (made on the model of {base.label})."
        yield ready, OWN, None

    def refused(self, bad: BadAudio) -> OwnOutputs:
        """A clip that cannot be used: the user is told why (and it is counted by its reason)."""
        self.app.metrics.refusals.labels(f"clip_{bad.reason}").inc()
        gr.Warning(str(bad))
        return f"Not made: {bad}", gr.skip(), None

    def forget(self, request: gr.Request, picked: str | None, session: dict[str, Any] | None) -> OwnOutputs:
        """Forget the session's own voice now (a reply speaking in it stops, one being made is
        dropped); a picker on "Your voice" goes back to the default voice."""
        session = {} if session is None else session
        session[FORGOTTEN] = session.get(FORGOTTEN, 0) + 1
        session.pop(OWN, None)
        supersede(session)
        own = self.app.own_voices
        forgot = own is not None and own.forget(request.session_hash)
        line = "Forgotten: nothing of your clip is left on the server." if forgot else "No voice of yours to forget."
        return line, self.app.voices.default if picked == OWN else gr.skip(), None

    def closed(self, request: gr.Request) -> None:
        """A page was closed (Gradio's unload): its own voice goes with it."""
        if self.app.own_voices is not None:
            self.app.own_voices.forget(request.session_hash)
