"""From the chat so far to the messages the model sees.

Pure functions: they flatten Gradio's chat history into plain turns, bound the history a
browser sends, and trim the oldest turns so that a long conversation always fits the
model's context. (What a user may send at all is :mod:`speakstream.text.admission`.)
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

from speakstream.llm.model import Message
from speakstream.text.admission import without_markup


def content_text(content: Any) -> str:
    """Plain text of a Gradio chat message's content (a string, or a list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or "")
    if isinstance(content, (list, tuple)):
        return "".join(content_text(part) for part in content)
    return ""


# Written after a reply the page lost while it was being written (ui/browser_storage.py); the
# page shows it, the model never reads it.
CUT_OFF_NOTE = "*This reply was cut off: the page lost its connection to the server. Press Retry to ask again.*"


def to_model_messages(history: Sequence[dict[str, Any]], system_prompt: str) -> list[Message]:
    """Gradio's history as chat-template messages, with the system prompt first if one is set.

    The history comes from the client, so its turns are cleaned like a new message: nobody
    forges a turn through an earlier one.
    """
    messages: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for turn in history:
        role = turn.get("role")
        text = content_text(turn.get("content"))
        # A user's text: undo for_display(). A reply's: without the page's note that it was cut off.
        text = html.unescape(text) if role == "user" else text.removesuffix(CUT_OFF_NOTE).rstrip()
        text = without_markup(text)
        if role in ("user", "assistant") and text and not (turn.get("metadata") or {}).get("title"):
            messages.append({"role": str(role), "content": text})
    return messages


def bounded_history(history: Sequence[Any], max_turns: int, max_chars: int) -> list[dict[str, Any]]:
    """The newest turns of a client's chat history within ``max_turns`` and ``max_chars``.

    Only well-formed turns are kept (a dict with a role and text content); the history comes
    from the client, so nothing in it is trusted to be small or well-formed.
    """
    kept: list[dict[str, Any]] = []
    chars = 0
    for turn in reversed(list(history)[-max_turns:]):
        if not isinstance(turn, dict) or not isinstance(turn.get("role"), str):
            continue
        chars += len(content_text(turn.get("content")))
        if chars > max_chars:
            break
        kept.append(turn)
    return kept[::-1]


def trim_to_context(
    messages: list[Message], count_tokens: Callable[[Sequence[Message]], int], budget: int
) -> list[Message]:
    """Drop the oldest turns (never the system prompt or the newest message) until the prompt fits.

    The whole prompt is counted once; each message's own length is then estimated from its
    share of that count, so dropping turns costs no new counting. One more count checks the
    result (and the dropping goes on in the rare case the estimate was short).
    """
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(head) :]
    total = count_tokens(head + turns)
    if total <= budget or len(turns) <= 1:
        return head + turns
    chars = [len(turn["content"]) + 1 for turn in turns]
    per_char = total / (sum(chars) + sum(len(m["content"]) + 1 for m in head))
    estimate = total
    while len(turns) > 1:
        drop = 2 if len(turns) > 2 else 1
        estimate -= per_char * sum(chars[:drop])
        turns, chars = turns[drop:], chars[drop:]
        if estimate <= budget and count_tokens(head + turns) <= budget:
            break
    return head + turns
