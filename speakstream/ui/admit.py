"""Whether a message is answered, and with what: the cleaned message, the user's choices clamped
to their controls' ranges, the model (loaded?) and the client's rate limit; or a refusal that
says why."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from speakstream.controls import NUMBERS
from speakstream.llm.sources import ModelLoadError, model_label
from speakstream.settings import Settings
from speakstream.text.admission import InvalidMessage, clean_message
from speakstream.voices.base import Voice
from speakstream.voices.own import OWN

if TYPE_CHECKING:
    from speakstream.ui.handlers import ChatApp


@dataclass(frozen=True)
class ReplyChoices:
    """One user's choices for their next reply, as the page's controls (or an API caller) sent them.

    ``None`` leaves the server's own setting; :func:`reply_settings` clamps the rest.
    """

    voice: str | None = None
    speaking_rate: float | None = None
    text_only: bool = False
    system_prompt: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: float | None = None
    repetition_penalty: float | None = None
    model: str | None = None


REPLY_CONTROLS = [field.name for field in dataclasses.fields(ReplyChoices)]


def choices_from(arguments: dict[str, Any]) -> ReplyChoices:
    """The reply controls among an event handler's arguments (its ``locals()``), by name."""
    return ReplyChoices(**{name: arguments[name] for name in REPLY_CONTROLS})


class Refused(ValueError):
    """A message that is not answered; the text says why, ``reason`` counts it."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def admit(
    app: ChatApp, message: str, choices: ReplyChoices, client: str, count: bool = True
) -> tuple[str, Settings, str]:
    """The cleaned message, this reply's settings and its model, or :class:`Refused` saying why not.

    The client's message is counted against its rate limit only once everything else is fine
    (``count``: False for an answer prepared before it is known to be a message; see ``spoken``).
    """
    settings = app.settings
    try:
        text = clean_message(message or "", settings.max_input_chars)
    except InvalidMessage as problem:
        raise Refused(str(problem), "too_long" if (message or "").strip() else "empty") from None
    if app.word_filter.blocks(text):
        raise Refused("Your message contains words this app does not accept. Please rephrase it.", "blocked_word")
    try:
        chosen = reply_settings(settings, choices)
    except InvalidMessage as problem:
        raise Refused(f"The system prompt cannot be used: {problem}", "too_long") from None
    try:
        spec = app.models.check(choices.model)
        loading = app.models.request(spec)
    except ModelLoadError as problem:
        raise Refused(str(problem), "model_refused") from None
    if not loading.done():
        raise Refused(
            f"{model_label(spec)} is still loading (first use). Your message stays in the box: "
            "send it again once the model is ready.",
            "model_loading",
        )
    if isinstance(loading.exception(), ModelLoadError):
        raise Refused(str(loading.exception()), "model_refused")
    if wait := (app.limits.check(client) if count else app.limits.waiting(client)):
        raise too_quick(wait)
    return text, chosen, spec


def too_quick(wait: float) -> Refused:
    """The refusal of a client over its rate limit."""
    return Refused(f"You are sending messages too quickly. Please wait {wait:.0f} seconds.", "rate_limit")


def reply_settings(settings: Settings, choices: ReplyChoices) -> Settings:
    """The server's settings with one user's choices, kept within safe ranges.

    Anything an API caller sends is clamped (what is not a finite number leaves the server's
    setting); a reply can never be longer than the server's own ``max_new_tokens``. A system
    prompt is cleaned like a message (:class:`InvalidMessage` when it is too long).
    """
    chosen: dict[str, Any] = {}
    if choices.system_prompt is not None:
        prompt = str(choices.system_prompt).strip()
        chosen["system_prompt"] = clean_message(prompt, settings.max_input_chars) if prompt else ""
    for control in NUMBERS:
        if (value := getattr(choices, control.name)) is not None:
            chosen[control.name] = control.clamp(value, getattr(settings, control.name))
    return dataclasses.replace(settings, **chosen)


def voice_notice(app: ChatApp, choices: ReplyChoices, own: Voice | None = None) -> str | None:
    """What to tell the user when the voice they picked cannot speak this reply (None: it can).

    A picked voice that is not loaded yet starts loading; the reply meanwhile speaks with the
    default voice, as it does for "Your voice" (``own``) not made yet or forgotten since.
    """
    key = choices.voice
    default = app.voices.get(None)
    if choices.text_only or not key or default is None or app.voices.loaded(key):
        return None
    instead = f"this reply speaks with {default.label}"
    if key == OWN:
        return None if own is not None else f"Your voice is not made yet (or was forgotten); {instead}."
    loading = app.voices.request(key)
    if loading.done() and loading.exception() is None:
        return None
    if not loading.done():
        return f"{app.voices.label(key)} is loading (first use); {instead}."
    return f"{app.voices.label(key)}: {loading.exception()}; {instead}."
