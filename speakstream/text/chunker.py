"""Speakable chunks from a token stream: feed text as it arrives, get back the chunks that are ready.

The rules (all sizes configurable through :class:`ChunkRules`):

- A chunk has at least ``min_chars`` and at most ``max_chars`` characters; only the last
  chunk of a reply may be shorter, and only a single word longer than ``max_chars`` may
  make one longer (words are never split).
- Sentence ends (``. ! ? …``, line breaks, CJK full stops) are preferred. Phrase breaks
  (``, ; :`` and dashes) are used when no sentence end fits, else the last word boundary.
- The first chunk of a reply may end at its first phrase break once it has
  ``first_min_chars`` characters, and is at most ``first_max_chars`` long (then it ends at
  a word boundary), so speech starts early; later chunks prefer whole sentences.
- A caller that knows a later chunk must be shorter (its audio is needed sooner: see
  :mod:`speakstream.pipeline.pacing`) passes a ``limit`` below ``max_chars``; it is never
  below ``min_chars``.
- No boundary falls inside a number ("3.14", "$1,000", "5:30", "v2.0"), an abbreviation
  or initials ("Dr. Smith", "e.g. this", "U.S. Army", "J. R. R. Tolkien"), an ellipsis, a
  URL or an e-mail address; closing quotes and brackets stay with their sentence.
- A chunk is emitted the moment its boundary is certain: "." followed by a space and a
  capital is certain, "3." is not yet. The result does not depend on how the text was
  split into pieces when it was fed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from speakstream.settings import Settings

SENTENCE_PUNCT = ".!?…।؟"
FIRM_SENTENCE_PUNCT = "!?।؟"  # a sentence end whenever whitespace follows
NO_SPACE_SENTENCE_PUNCT = "。！？"  # CJK: no space follows a full stop
PHRASE_PUNCT = ",;:、，；："
DASHES = "–—"
CLOSERS = "\"'”’»)]}*_`"
# Words that end in "." without ending a sentence (compared lower-case, without the final ".").
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs etc e.g i.e cf al approx dept est fig inc ltd co corp no vol gen gov "  # noqa: SIM905
    "sgt capt lt col rev ave blvd jan feb mar apr jun jul aug sep sept oct nov dec p.m a.m u.s u.k u.n ph.d "
    # German, French, Spanish, Italian: the languages the offered voices speak
    "z.b d.h u.a usw bzw ca evtl ggf inkl vgl nr str hr fr mme mlle ex env av sra srta ud uds pág núm aprox dña "
    "sig ecc".split()
)
# Of those, the ones that close what came before rather than bind to the next word ("Dr. Smith"):
# a word break after them is fine ("at 10:45 p.m. | see the schedule").
CLOSING_ABBREVIATIONS = frozenset({"a.m", "p.m", "etc"})
_WORD_BEFORE = re.compile(r"(\S+)$")
_MERIDIEM = re.compile(r"\s+[ap]\.?m\b\.?", re.IGNORECASE)


@dataclass(frozen=True)
class ChunkRules:
    """Chunk sizes, in characters."""

    min_chars: int
    max_chars: int
    first_min_chars: int
    first_max_chars: int

    def __post_init__(self) -> None:
        if not 1 <= self.min_chars <= self.first_max_chars <= self.max_chars or self.first_min_chars < 1:
            raise ValueError(f"chunk sizes must satisfy 1 <= min <= first max <= max and first min >= 1, got {self}")


def _bare(word: str) -> str:
    """A word without opening quotes or brackets and its final dots, lower-case: "(Dr." -> "dr"."""
    return word.lstrip("\"'“‘([{*_").rstrip(".").lower()


def _is_abbreviation(word: str) -> bool:
    """Whether ``word`` (ending in '.') is an abbreviation or an initial rather than a sentence end."""
    bare = _bare(word)
    if bare in ABBREVIATIONS or (len(bare) == 1 and bare.isalpha()):
        return True
    # Dotted acronyms and initials glued together: "U.S", "J.R.R".
    return bool(re.fullmatch(r"(?:[a-z]\.)+[a-z]", bare))


class TextChunker:
    """Stateful, one per reply: :meth:`feed` as tokens arrive, :meth:`flush` at the end."""

    def __init__(self, rules: ChunkRules) -> None:
        self.rules = rules
        self._buffer = ""
        self._emitted = 0
        self._limit: int | None = None

    def feed(self, text: str, limit: int | None = None) -> list[str]:
        """Add streamed text; return the chunks whose boundaries are now certain.

        ``limit``: the most characters a later chunk may have now (None: ``max_chars``).
        """
        self._buffer += text
        self._limit = limit
        return self._drain(final=False)

    def flush(self, limit: int | None = None) -> list[str]:
        """The reply is complete: return everything still pending."""
        self._limit = limit
        chunks = self._drain(final=True)
        rest = self._buffer.strip()
        self._buffer = ""
        if rest:
            chunks.append(rest)
        return chunks

    def _drain(self, final: bool) -> list[str]:
        chunks: list[str] = []
        while True:
            self._buffer = self._buffer.lstrip()
            cut = self._decide(self._buffer, final)
            if cut is None:
                return chunks
            chunk, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
            if chunk:
                chunks.append(chunk)
                self._emitted += 1

    # -- the decision -------------------------------------------------------------------

    def _decide(self, buf: str, final: bool) -> int | None:
        """Where to cut ``buf`` now, or None while more text could change the answer."""
        rules = self.rules
        first = self._emitted == 0
        if first:
            max_chars = rules.first_max_chars
        elif self._limit is None:
            max_chars = rules.max_chars
        else:
            max_chars = max(rules.min_chars, min(self._limit, rules.max_chars))
        last_phrase: int | None = None
        last_word: int | None = None
        i = 0
        n = len(buf)
        while i < n:
            if i > max_chars:
                break
            kind, end = self._boundary_at(buf, i, final)
            if kind == "unknown":
                return None
            if kind is None:
                i += 1
                continue
            length = len(buf[:end].rstrip())
            if length > max_chars:
                break
            if kind == "sentence" and length >= rules.min_chars:
                return end
            if kind in ("sentence", "phrase"):
                if first and length >= rules.first_min_chars:
                    return end
                if length >= rules.min_chars:
                    last_phrase = end
            if length >= rules.min_chars:
                last_word = end
            i = max(end, i + 1)
        else:
            # Reached the end of the text without passing max_chars.
            if not final:
                return None
            if len(buf.rstrip()) <= max_chars:
                return n if buf.strip() else None
        if last_phrase is not None:
            return last_phrase
        if last_word is not None:
            return last_word
        return self._after_long_word(buf, final, max_chars)

    def _after_long_word(self, buf: str, final: bool, max_chars: int) -> int | None:
        """No boundary fits: cut at the first word boundary past max_chars (a word is never split)."""
        for match in re.finditer(r"\s", buf):
            if match.start() <= max_chars:
                continue
            protected = self._protected_space(buf, match.start(), final)
            if protected is None:
                return None
            if not protected:
                return match.start()
        return len(buf) if final else None

    def _boundary_at(self, buf: str, i: int, final: bool) -> tuple[str | None, int]:
        """Classify position ``i``: ("sentence" | "phrase" | "word" | None | "unknown", cut index).

        "unknown" means the text after ``i`` is needed to decide and has not arrived yet.
        """
        ch = buf[i]
        n = len(buf)
        if ch == "\n":
            return "sentence", i + 1
        if ch in NO_SPACE_SENTENCE_PUNCT:
            end = self._skip(buf, i, NO_SPACE_SENTENCE_PUNCT + CLOSERS)
            return ("unknown", end) if end == n and not final else ("sentence", end)
        if ch.isspace():
            protected = self._protected_space(buf, i, final) if i > 0 else False
            if protected is None:
                return "unknown", i
            if protected:
                return None, i
            if i + 2 >= n and not final:
                return "unknown", i  # " - " may be arriving: a phrase break, not a word break
            if buf[i + 1 : i + 2] in ("-", *DASHES) and buf[i + 2 : i + 3].isspace():
                return "phrase", i + 2
            return "word", i
        if ch in DASHES and i > 0 and not buf[i - 1].isspace():
            return "phrase", i + 1
        if ch in SENTENCE_PUNCT or ch in PHRASE_PUNCT:
            end = self._skip(buf, i, SENTENCE_PUNCT + PHRASE_PUNCT + CLOSERS)
            if end == n:
                return ("unknown", end) if not final else ("sentence", end)
            if not buf[end].isspace():
                return None, end  # "3.14", "$1,000", "5:30", a URL, an e-mail address
            run = buf[i:end]
            if any(p in run for p in FIRM_SENTENCE_PUNCT):
                return "sentence", end
            if any(p in run for p in ".…"):
                return self._after_period(buf, i, end, final)
            return "phrase", end
        return None, i

    def _after_period(self, buf: str, start: int, end: int, final: bool) -> tuple[str | None, int]:
        """A '.' or '…' followed by whitespace: a sentence end only if what follows starts one."""
        rest = buf[end:]
        stripped = rest.lstrip(" \t")
        if stripped.startswith("\n"):
            return "sentence", end
        if not stripped:
            return ("unknown", end) if not final else ("sentence", end)
        word = _WORD_BEFORE.search(buf[: start + 1])
        before = word.group(1) if word else ""
        if buf[start] == "." and _is_abbreviation(before + buf[start + 1 : end].rstrip(CLOSERS)):
            return None, end
        word_start = start + 1 - len(before)
        if buf[start] == "." and before.rstrip(".").isdigit() and buf[word_start - 1 : word_start] in ("", "\n"):
            return None, end  # a list marker at the start of a line: "1. Sleep early"
        nxt = stripped[0]
        if nxt.isupper() or nxt.isdigit() or nxt in "\"'“‘([*#-" or (nxt.isalpha() and not nxt.islower()):
            return "sentence", end
        return "phrase", end

    def _protected_space(self, buf: str, i: int, final: bool) -> bool | None:
        """Whether the space at ``i`` must not be cut: after an abbreviation or initial ("Dr. Smith"),
        or between a time and its "a.m."/"p.m.". None while the text that decides has not arrived.
        """
        word = _WORD_BEFORE.search(buf[:i])
        before = word.group(1) if word else ""
        if before.endswith(".") and _is_abbreviation(before):
            return _bare(before) not in CLOSING_ABBREVIATIONS
        if before[-1:].isdigit():
            ahead = buf[i : i + 6]
            if _MERIDIEM.match(ahead):
                return True
            if len(ahead) < 6 and not final:
                return None
        return False

    @staticmethod
    def _skip(buf: str, i: int, chars: str) -> int:
        while i < len(buf) and buf[i] in chars:
            i += 1
        return i


def rules_from_settings(settings: Settings) -> ChunkRules:
    return ChunkRules(
        settings.chunk_min_chars,
        settings.chunk_max_chars,
        settings.first_chunk_min_chars,
        settings.first_chunk_max_chars,
    )
