"""From what a user typed and the chat so far to the messages the model sees.

Pure functions: they check and clean a message, flatten Gradio's chat history, and trim
the oldest turns so that a long conversation always fits the model's context.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

Message = dict[str, str]

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
    return _SPECIAL_TOKEN.sub("", kept)


def content_text(content: Any) -> str:
    """Plain text of a Gradio chat message's content (a string, or a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or "")
    if isinstance(content, (list, tuple)):
        return "".join(content_text(part) for part in content)
    return ""


def for_display(text: str) -> str:
    """A user's message as the chat shows it: HTML and script typed by the user appear as text, inert."""
    return html.escape(text, quote=False)


def to_model_messages(history: Sequence[dict[str, Any]], system_prompt: str) -> list[Message]:
    """Gradio's history as chat-template messages, with the system prompt first if one is set.

    The history comes from the client, so its turns are cleaned like a new message: nobody
    forges a turn through an earlier one.
    """
    messages: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for turn in history:
        role = turn.get("role")
        text = content_text(turn.get("content"))
        if role == "user":
            text = html.unescape(text)  # undo for_display()
        text = without_markup(text)
        if role in ("user", "assistant") and text and not (turn.get("metadata") or {}).get("title"):
            messages.append({"role": str(role), "content": text})
    return messages


def trim_to_context(
    messages: list[Message], count_tokens: Callable[[Sequence[Message]], int], budget: int
) -> list[Message]:
    """Drop the oldest turns (never the system prompt or the newest message) until the prompt fits."""
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(head) :]
    while len(turns) > 1 and count_tokens(head + turns) > budget:
        turns = turns[2:] if len(turns) > 2 else turns[1:]
    return head + turns
