"""What a browser keeps across page reloads (never the server): the conversation and the settings.

Two encrypted entries in the browser's local storage (Gradio's ``BrowserState``, keyed by
``SPEAKSTREAM_STORAGE_SECRET``, or by a secret made anew at each start): the conversation,
written as a reply is written (and by Stop, Undo and Clear), and the settings, written when one
changes. Restoring puts back only what this server can still use. A reply still being written
when the page lost its server (a replica gone, a restart, a reload) comes back with a note that
it was cut off: Gradio reloads a page whose server went away, so the page itself cannot say it.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from speakstream.controls import BY_NAME, CONTROLS
from speakstream.llm.pool import ModelPool
from speakstream.llm.sources import ModelLoadError
from speakstream.text.conversation import CUT_OFF_NOTE, content_text
from speakstream.voices import VoiceSet

History = list[dict[str, Any]]
MAX_SAVED_MESSAGES = 100


# Every control of the page a browser keeps across reloads, in page order, with the types a
# saved value may have (JSON gives back 1.0 as 1: a number may come back as either).
SAVED_CONTROLS: dict[str, type | tuple[type, ...]] = {
    control.name: (int, float) if control.is_number else control.kind for control in CONTROLS
}


def clear_chat() -> tuple[History, str, None, None, str, list[Any], dict[str, Any]]:
    """Empty the conversation, the message box, both players, the stats line and what the browser saved.

    The browser's storage is overwritten with empty values that Gradio still stores (it skips
    ``None`` and ``""``).
    """
    return [], "", None, None, "", [], {}


def remember_chat(history: History | None) -> list[dict[str, Any]]:
    """The conversation as this browser keeps it across reloads: plain text turns, the newest ones."""
    messages = [
        {"role": item["role"], "content": content_text(item.get("content"))}
        for item in history or []
        if item.get("role") in ("user", "assistant")
    ]
    return messages[-MAX_SAVED_MESSAGES:]


def with_reply_being_written(earlier: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """What the browser keeps while a reply is written: ``earlier`` (from :func:`remember_chat`,
    made once per reply, not per piece of text) and the reply so far, marked for :func:`restore`."""
    return [*earlier, {"role": "assistant", "content": text, "writing": True}][-MAX_SAVED_MESSAGES:]


def remember_settings(*values: Any) -> dict[str, Any]:
    """The settings this browser keeps across reloads, by name."""
    return dict(zip(SAVED_CONTROLS, values, strict=True))


def restore(voices: VoiceSet, models: ModelPool, chat: Any, chosen: Any) -> list[Any]:
    """Put back what the browser saved; anything this server cannot use now is left as it is."""
    saved = [
        item
        for item in (chat if isinstance(chat, list) else [])
        if isinstance(item, dict) and item.get("role") in ("user", "assistant") and isinstance(item.get("content"), str)
    ]
    history = [{"role": item["role"], "content": item["content"]} for item in saved]
    if saved and saved[-1]["role"] == "assistant" and saved[-1].get("writing") is True:
        cut = history[-1]["content"]
        history[-1]["content"] = f"{cut}\n\n{CUT_OFF_NOTE}" if cut else CUT_OFF_NOTE
    values = chosen if isinstance(chosen, dict) else {}
    restored: list[Any] = [history or gr.skip()]
    for name, kind in SAVED_CONTROLS.items():
        value = values.get(name)
        usable = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if usable and (control := BY_NAME[name]).is_number:  # (the operator may have changed the range)
            usable = control.low <= value <= control.highest(getattr(models.settings, name))
        if usable and name == "voice":
            usable = value in {key for _, key in voices.choices}
        if usable and name == "model":
            try:
                models.check(value)
            except ModelLoadError:
                usable = False
        restored.append(value if usable else gr.skip())
    return restored
