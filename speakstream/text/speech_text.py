"""What is spoken of a chunk: the chat shows markdown as written; the voice reads plain words.

:class:`SpeechCleaner` is stateful per reply because a fenced code block spans several
chunks: its lines are skipped and replaced, once, by a short spoken phrase.
"""

from __future__ import annotations

import re

# What a voice says in place of a code block, in the language it speaks (English otherwise).
CODE_PHRASES = {
    "en": "There is a code example in the chat.",
    "de": "Im Chat steht ein Codebeispiel.",
    "fr": "Il y a un exemple de code dans la conversation.",
    "es": "Hay un ejemplo de código en el chat.",
    "it": "C'è un esempio di codice nella chat.",
}
CODE_PHRASE = CODE_PHRASES["en"]

_FENCE = re.compile(r"^\s*(```|~~~)")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_URL = re.compile(r"\b(?:https?://|www\.)([^\s/?#]+)[^\s]*", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")
_INLINE_CODE = re.compile(r"`([^`]*)`")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+", re.MULTILINE)
_QUOTE = re.compile(r"^\s*>\s?", re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+", re.MULTILINE)
_RULE = re.compile(r"^\s*(?:[-*_]\s*){3,}$", re.MULTILINE)
_EMPHASIS = re.compile(r"(\*{1,3}|_{1,3}|~~)(?=\S)(.+?)(?<=\S)\1")
_STRAY_MARKS = re.compile(r"[*_~#|`<>\\]")
# Emoji, pictographs, dingbats, flags, variation selectors and joiners.
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f1e6-\U0001f1ff\U0000fe00-\U0000fe0f\U0000200d\U00002b00-\U00002bff]"
)
_SPACES = re.compile(r"[ \t]+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:])")


def is_speakable(text: str) -> bool:
    """Whether the text has anything a voice can say (a letter or a digit)."""
    return any(ch.isalnum() for ch in text)


class SpeechCleaner:
    """Turns chunks of markdown into the text a voice should read."""

    def __init__(self, language: str = "en") -> None:
        self._in_code = False
        self.code_phrase = CODE_PHRASES.get(language, CODE_PHRASE)

    def clean(self, chunk: str) -> str:
        """Spoken form of ``chunk``; an empty string when nothing in it should be spoken."""
        spoken_lines: list[str] = []
        for line in chunk.split("\n"):
            if _FENCE.match(line):
                if not self._in_code:
                    spoken_lines.append(self.code_phrase)
                self._in_code = not self._in_code
                continue
            if not self._in_code:
                spoken_lines.append(line)
        text = "\n".join(spoken_lines)
        text = _IMAGE.sub(r"\1", text)
        text = _LINK.sub(r"\1", text)
        text = _URL.sub(lambda m: m.group(1).removeprefix("www."), text)
        text = _HTML_TAG.sub(" ", text)
        text = _INLINE_CODE.sub(r"\1", text)
        text = _RULE.sub("", text)
        text = _HEADING.sub("", text)
        text = _QUOTE.sub("", text)
        text = _BULLET.sub("", text)
        text = _EMPHASIS.sub(r"\2", text)
        text = _EMOJI.sub("", text)
        text = _STRAY_MARKS.sub(" ", text)
        text = " ".join(_SPACES.sub(" ", line).strip() for line in text.split("\n") if line.strip())
        text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
        return text if is_speakable(text) else ""
