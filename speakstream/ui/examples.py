"""The page's examples, and when a request's reply may be given again from the reply cache.

The examples are what most first-time visitors try: asked as they stand, first in a conversation
and with this server's own settings, they get the reply kept from the last time at once
(``SPEAKSTREAM_REPLY_CACHE=examples``, the default). With ``on``, so does any request whose reply
its settings fix (a seed set, or temperature 0). Retry never does: it asks the model afresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from speakstream.settings import Settings
from speakstream.ui.admit import ReplyChoices

if TYPE_CHECKING:
    from speakstream.ui.handlers import ChatApp

EXAMPLE_PROMPTS = [
    "What is the capital of France?",
    "Explain in three sentences why the sky is blue.",
    "Write a haiku about autumn.",
    "Give me three tips for sleeping better, as a numbered list.",
]
# What shapes a reply besides the conversation, the voice and the model.
REPLY_SETTINGS = ("system_prompt", "temperature", "top_p", "repetition_penalty", "max_new_tokens", "speaking_rate")


def replayable(app: ChatApp, text: str, first: bool, chosen: Settings, choices: ReplyChoices, again: bool) -> bool:
    """Whether the reply to ``text`` (``first`` in its conversation, with the settings ``chosen``
    from ``choices``) may be given again from the reply cache."""
    mode = app.settings.reply_cache
    if again or mode == "off":
        return False
    if mode == "on" and (chosen.seed is not None or chosen.temperature == 0):
        return True
    own = all(getattr(chosen, name) == getattr(app.settings, name) for name in REPLY_SETTINGS)
    own = own and choices.voice in (None, app.voices.default) and choices.model in (None, app.models.default_spec)
    return first and own and text in EXAMPLE_PROMPTS
