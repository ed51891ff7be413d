"""A spoken message: the page's audio heard piece by piece (:mod:`speakstream.hearing.listener`)
or a WAV sent through the API, its words recognized, then answered exactly as a typed message
(:func:`speakstream.ui.handlers.respond`: the same limits, history, settings, Stop and saving).

The page asks for the answer as soon as the user pauses: it is written and spoken while the pause
lasts but held back, then shown at once if the pause ends the turn, or dropped (not counted as a
message) if the user speaks on. The wait after the user stops is then the end-of-turn silence
alone, not that plus recognition plus the reply's first words.

Audio is never written to disk nor logged; a message about it says what was wrong, never what
was said.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from speakstream.hearing.audio_in import AudioLimits, BadAudio, decode_pcm, decode_wav, too_long
from speakstream.hearing.listener import Listener, Pause, Utterance
from speakstream.hearing.transcriber import Transcript
from speakstream.hearing.turns import holds_speech
from speakstream.ui.admit import REPLY_CONTROLS, Refused, ReplyChoices, admit, choices_from, too_quick
from speakstream.ui.handlers import CHAT_OUTPUTS, ChatApp, ChatOutputs, ChatView, History, respond
from speakstream.ui.player import carries_audio
from speakstream.ui.request_identity import client_address, page_on_this_machine

log = logging.getLogger(__name__)

VOICE_INPUT_OFF = "Voice input is off on this server: type your message instead."
NO_WORDS = "No words were heard. Please say it again."
NOT_A_WAV = "That is not audio SpeakStream can read: send a WAV file in base64."
# An answer prepared in a pause gives up when the page has sent nothing that decides it for this
# long past the end-of-turn silence (the page was closed or lost its connection).
PAUSE_DECIDED_WITHIN = 5.0


def hear(app: ChatApp, piece: Any, client: str = "local") -> dict[str, str]:
    """A piece of a listening page's audio: ``{"id", "pcm", "first", "last"}`` (the page's own
    random id, 16 kHz 16-bit PCM in base64, whether it starts or ends what the page sends); the
    turn's state after it, and a message for the user when there is one. A client over its rate
    limit is told so when it starts sending (before its speech costs any recognizing)."""
    if app.listeners is None:
        return {"state": "off", "message": VOICE_INPUT_OFF}
    if not isinstance(piece, dict) or not isinstance(piece.get("id"), str) or not isinstance(piece.get("pcm"), str):
        return {"state": "error", "message": "That is not audio SpeakStream can read."}
    limits = AudioLimits(app.settings.max_utterance_seconds)
    try:
        samples = decode_pcm(piece["pcm"])
    except BadAudio as problem:
        return {"state": "error", "message": str(problem)}
    if piece.get("first") and (wait := app.limits.waiting(client)):
        app.metrics.refusals.labels("rate_limit").inc()
        return {"state": "error", "message": str(too_quick(wait))}
    listener = app.listeners.get(piece["id"][:64])
    if piece.get("first"):
        listener.restart()
    state = listener.hear(samples, finish=bool(piece.get("last")))
    if state == "too_long":
        app.metrics.refusals.labels("too_long").inc()
        return {"state": state, "message": str(too_long(limits))}
    if state == "no_speech":
        app.metrics.refusals.labels("no_speech").inc()
        return {"state": state, "message": NO_WORDS}
    return {"state": state, "message": ""}


class SpokenMessages:
    """The events of spoken messages, bound to the app (Gradio reads their parameters' names and
    types: a bound method shows them, a ``functools.partial`` hides the types)."""

    def __init__(self, app: ChatApp) -> None:
        self.app = app

    def heard(
        self, request: gr.Request, event: gr.EventData, history: History | None, *controls: Any
    ) -> Iterator[ChatOutputs]:
        """The page's spoken message: the utterance its listener (``event.listening``, the page's id)
        ended a moment ago or, with ``event.early``, the pause the user is in now (answered if the
        pause ends the turn); ``controls``: the reply controls in :class:`ReplyChoices` order, then the session."""
        app = self.app
        *values, session = controls
        choices = ReplyChoices(**dict(zip(REPLY_CONTROLS, values, strict=True)))
        listening = getattr(event, "listening", None)
        listener = app.listeners.find(listening[:64]) if app.listeners and isinstance(listening, str) else None
        hops = app.settings.proxy_hops
        asking = Asking(history, choices, session, client_address(request, hops), page_on_this_machine(request, hops))
        if getattr(event, "early", False):
            pause = listener.claim() if listener else None
            if pause is None:  # already decided, or another answer has it: the turn's end asks if it must
                yield _UNCHANGED
                return
            yield from _answer_in_pause(app, listener, pause, asking)
            return
        utterance = listener.take() if listener else None
        if utterance is None:
            yield from _refused(app, history, NO_WORDS, "no_speech")
            return
        yield from _answer(app, utterance, asking)

    def talk(
        self,
        request: gr.Request,
        audio: str,
        history: History | None,
        voice: str | None = None,
        speaking_rate: float | None = None,
        text_only: bool = False,
        system_prompt: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_new_tokens: float | None = None,
        repetition_penalty: float | None = None,
        model: str | None = None,
        session: dict[str, Any] | None = None,
    ) -> Iterator[ChatOutputs]:
        """The ``/talk`` event for API callers: a WAV file (base64), the chat, each reply control
        (as for ``/chat``), the session. The reply is streamed as for ``/chat``; the recognized words
        are the chat's new user turn."""
        choices, app = choices_from(locals()), self.app
        if app.recognition is None or app.listeners is None:
            yield from _refused(app, history, VOICE_INPUT_OFF, "voice_input_off")
            return
        limits = AudioLimits(app.settings.max_utterance_seconds)
        try:
            if len(audio or "") > limits.max_bytes * 4 // 3 + 4:
                raise too_long(limits)
            try:
                data = base64.b64decode(audio or "", validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise BadAudio(
                    "That is not audio SpeakStream can read: send a WAV file in base64.", "not_audio"
                ) from None
            samples = decode_wav(data, limits)
            if not holds_speech(app.listeners.vad.stream(), samples, app.listeners.rules):
                raise BadAudio(NO_WORDS, "no_speech")
        except BadAudio as problem:
            yield from _refused(app, history, str(problem), problem.reason)
            return
        asking = Asking(history, choices, session, client_address(request, app.settings.proxy_hops), False)
        yield from _answer(app, Utterance(samples, ended_at=time.monotonic()), asking)


@dataclass(frozen=True)
class Asking:
    """Who asks for an answer, and with what: the chat so far, the reply controls, the session."""

    history: History | None
    choices: ReplyChoices
    session: dict[str, Any] | None
    client: str
    page_here: bool

    def respond(self, app: ChatApp, text: str, count: bool = True) -> Iterator[ChatOutputs]:
        """The reply to ``text``, a spoken message (``count``: as in :func:`respond`)."""
        return respond(
            app, text, self.history, self.choices, self.session, self.client, self.page_here, spoken=True, count=count
        )


def _answer(app: ChatApp, utterance: Utterance, asking: Asking) -> Iterator[ChatOutputs]:
    if wait := app.limits.waiting(asking.client):  # before recognizing: that is the costly part
        yield from _refused(app, asking.history, str(too_quick(wait)), "rate_limit")
        return
    transcript = _words(app, utterance, asking.choices)
    _recognized(app, transcript)
    if not transcript.text:
        yield from _refused(app, asking.history, NO_WORDS, "no_speech")
        return
    yield from _first_audio_timed(app, utterance, asking.respond(app, transcript.text))


def _answer_in_pause(app: ChatApp, listener: Listener, pause: Pause, asking: Asking) -> Iterator[ChatOutputs]:
    """The answer to the words before ``pause``, written while the pause lasts and held back: shown
    when the pause ends the turn, dropped when the user speaks on (see the module's docstring)."""
    patience = listener.rules.end_silence + PAUSE_DECIDED_WITHIN
    replies: Iterator[ChatOutputs] | None = None
    try:
        transcript = _words(app, Utterance(pause.samples, pause.early), asking.choices)
        if not transcript.text or _refusal(app, transcript.text, asking):  # said only if it turns out to be a message
            decision = listener.decided(pause, wait=patience)
            yield from _answer(app, decision, asking) if isinstance(decision, Utterance) else [_UNCHANGED]
            return
        replies = asking.respond(app, transcript.text, count=False)
        held: list[ChatOutputs] = []
        decision: Utterance | bool = True
        for outputs in replies:
            held.append(outputs)
            decision = listener.decided(pause)
            if decision is not True:
                break
        if decision is True:  # the whole reply was written before the pause was over
            decision = listener.decided(pause, wait=patience)
        if not isinstance(decision, Utterance):
            replies.close()  # before anything is yielded: a newer answer waits for this one to end
            app.metrics.early_answers.labels("dropped").inc()
            yield _UNCHANGED
            return
        app.metrics.early_answers.labels("shown").inc()
        app.limits.check(asking.client)  # now it is a message
        _recognized(app, transcript)
        yield from _first_audio_timed(app, decision, itertools.chain(held, replies))
    finally:
        if replies is not None:
            replies.close()  # cancelled: the model and the voice stop
        listener.release(pause)


def _refusal(app: ChatApp, text: str, asking: Asking) -> bool:
    """Whether ``text`` would be refused (no rate limit counted, nothing said yet)."""
    try:
        admit(app, text, asking.choices, asking.client, count=False)
    except Refused:
        return True
    return False


def _words(app: ChatApp, utterance: Utterance, choices: ReplyChoices) -> Transcript:
    voice = app.voices.get(choices.voice)
    return app.recognition.words(utterance, voice.language if voice else None)


def _recognized(app: ChatApp, transcript: Transcript) -> None:
    app.metrics.utterances.inc()
    app.metrics.transcription.observe(transcript.seconds)


def _first_audio_timed(app: ChatApp, utterance: Utterance, replies: Iterator[ChatOutputs]) -> Iterator[ChatOutputs]:
    """``replies``, timing the first that carries audio from the end of the utterance."""
    waiting = True
    for outputs in replies:
        if waiting and carries_audio(ChatView.of(outputs).player):
            app.metrics.speech_to_audio.observe(time.monotonic() - utterance.ended_at)
            waiting = False
        yield outputs


# What an answer that is not needed shows: nothing changes
_UNCHANGED: ChatOutputs = tuple(gr.skip() for _ in CHAT_OUTPUTS)  # type: ignore[assignment]


def _refused(app: ChatApp, history: History | None, message: str, reason: str) -> Iterator[ChatOutputs]:
    log.info("Refused a spoken message (%s)", reason)
    app.metrics.refusals.labels(reason).inc()
    gr.Warning(message)
    yield ChatView(gr.skip(), history or [], gr.skip(), gr.skip(), gr.skip(), gr.skip()).outputs()
