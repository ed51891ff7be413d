"""What a user may send: a message (or a system prompt, or a history turn) cleaned before any model sees it.

Control characters go (line breaks and tabs stay) and chat-template markers go, so nobody
can forge a system or assistant turn; a message that is empty or too long is refused with
a reason the user can act on. HTML a user typed is shown as text, never run.
"""

from __future__ import annotations

import html
import re
import unicodedata

# ChatML-style markers (<|im_start|>, <|endoftext|>, ...) and Llama-style ones ([INST], <s>).
_SPECIAL_TOKEN = re.compile(r"<\|[^<>|]{0,40}\|>|</?s>|\[/?INST\]", re.IGNORECASE)


class InvalidMessage(ValueError):
    """A message that is not sent to the model; its text is shown to the user."""


def clean_message(text: str, max_chars: int) -> str:
    """The message as the model may see it, or :class:`InvalidMessage` saying why not.

    Control characters are dropped (line breaks and tabs kept) and chat-template markers
    are removed, so a user cannot forge a system or assistant turn.
    """
    if len(text) > max_chars:
        raise InvalidMessage(
            f"Your message has {len(text):,} characters; the limit is {max_chars:,}. Please shorten it."
        )
    kept = without_markup(text).strip()
    if not kept:
        raise InvalidMessage("Type a message first.")
    return kept


def without_markup(text: str) -> str:
    """``text`` without control characters (line breaks and tabs kept) and chat-template markers."""
    kept = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co"})
    while True:  # until nothing is left to remove: "<|im_<|x|>start|>" hides a marker in a marker
        kept, removed = _SPECIAL_TOKEN.subn("", kept)
        if not removed:
            return kept


def for_display(text: str) -> str:
    """A user's message as the chat shows it: HTML and script typed by the user appear as text, inert."""
    return html.escape(text, quote=False)
