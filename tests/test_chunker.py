"""The chunker's rules (see speakstream/chunker.py): sizes 10..100, sentence ends first, then phrase
breaks, then word boundaries; never inside numbers, abbreviations, initials, ellipses, URLs or
e-mail addresses; the first chunk may end early at a phrase break; and the chunks do not depend
on how the text was split when it was fed."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speakstream.settings import Settings
from speakstream.text.chunker import ChunkRules, TextChunker, rules_from_settings

RULES = ChunkRules(min_chars=10, max_chars=100, first_min_chars=12, first_max_chars=100)
FAST_START = ChunkRules(min_chars=10, max_chars=100, first_min_chars=12, first_max_chars=40)
PROTECTED = [
    "Dr. Smith",
    "Mr. Jones",
    "3.14",
    "$1,000",
    "1,000,000",
    "$2.50",
    "v2.0",
    "e.g. this",
    "i.e. that",
    "U.S. Army",
    "J. R. R. Tolkien",
    "https://example.com/a.b?c=d",
    "someone@example.org",
    "5:30",
    "wait...",
    "10:45 p.m.",
]
WORDS = ["the", "robot", "painted", "a", "sky", "Blue", "slowly", "and", "It", "was", "happy", "Paris"]
PUNCT = [".", ",", "!", "?", ";", ":", " -", "\n", ""]


def chunk_all(text: str, pieces: list[int] | None = None, rules: ChunkRules = RULES) -> list[str]:
    """Chunks of ``text`` fed whole, or in pieces of the given sizes."""
    chunker = TextChunker(rules)
    out: list[str] = []
    position = 0
    for size in pieces or []:
        out += chunker.feed(text[position : position + size])
        position += size
    out += chunker.feed(text[position:])
    return out + chunker.flush()


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


token = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(PROTECTED),
    st.builds(lambda w, p: w + p, st.sampled_from(WORDS), st.sampled_from(PUNCT)),
)
replies = st.lists(token, min_size=1, max_size=80).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(replies)
def test_chunks_joined_give_back_the_text(text: str) -> None:
    assert squash("".join(chunk_all(text))) == squash(text)


@settings(max_examples=300, deadline=None)
@given(replies)
def test_every_chunk_but_the_last_is_within_bounds(text: str) -> None:
    chunks = chunk_all(text)
    for chunk in chunks[:-1]:
        assert RULES.min_chars <= len(chunk) <= RULES.max_chars, chunks
    assert len(chunks[-1]) <= RULES.max_chars


@settings(max_examples=300, deadline=None)
@given(replies)
def test_no_boundary_falls_inside_a_protected_span(text: str) -> None:
    chunks = chunk_all(text)
    expected = sum(text.count(item) for item in PROTECTED)
    found = sum(chunk.count(item) for chunk in chunks for item in PROTECTED)
    assert found == expected, chunks


@settings(max_examples=300, deadline=None)
@given(replies, st.lists(st.integers(min_value=0, max_value=12), max_size=60))
def test_any_split_into_pieces_gives_the_same_chunks(text: str, pieces: list[int]) -> None:
    assert chunk_all(text, pieces) == chunk_all(text)


def test_token_by_token_equals_whole() -> None:
    text = "Dr. Smith paid $1,000 for 3.14 kg at 5:30 p.m. on the U.S. coast. Was it worth it? Maybe."
    assert chunk_all(text, [1] * len(text)) == chunk_all(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "The price is $2.50, or 1,000,000 yen. Version v2.0 shipped.",
            ["The price is $2.50,", "or 1,000,000 yen.", "Version v2.0 shipped."],
        ),
        (
            "Dr. Smith met Mr. Jones at 5:30 today. They talked.",
            ["Dr. Smith met Mr. Jones at 5:30 today.", "They talked."],
        ),
        (
            "I love books, e.g. the ones by J. R. R. Tolkien. Really!",
            ["I love books,", "e.g. the ones by J. R. R. Tolkien.", "Really!"],
        ),
        (
            "Visit https://example.com/docs/v1.2. Or write to help@example.org. Thanks a lot.",
            ["Visit https://example.com/docs/v1.2.", "Or write to help@example.org.", "Thanks a lot."],
        ),
        (
            'He said "Stop right there." Then he left (quietly, I think.) The end came.',
            ['He said "Stop right there."', "Then he left (quietly, I think.)", "The end came."],
        ),
        ("Well... I am not sure. Let me think about it.", ["Well... I am not sure.", "Let me think about it."]),
        (
            "Three tips:\n1. Sleep early.\n2. Avoid screens.\n3. Keep a routine.",
            ["Three tips:", "1. Sleep early.", "2. Avoid screens.", "3. Keep a routine."],
        ),
        (
            "## Why the sky is blue\nSunlight scatters off air molecules. Blue scatters most.",
            ["## Why the sky is blue", "Sunlight scatters off air molecules.", "Blue scatters most."],
        ),
        ("Hi! Ok. Yes, that is a fine plan for today.", ["Hi! Ok. Yes,", "that is a fine plan for today."]),
        ("Привет, как дела? Всё хорошо. Спасибо!", ["Привет, как дела?", "Всё хорошо.", "Спасибо!"]),
        ("你好。今天天气很好。我们去公园散步吧！", ["你好。今天天气很好。", "我们去公园散步吧！"]),
        ("Use the `print()` function. It writes text.", ["Use the `print()` function.", "It writes text."]),
        ("Great news 🎉! The robot learned to paint.", ["Great news 🎉!", "The robot learned to paint."]),
    ],
)
def test_tricky_cases(text: str, expected: list[str]) -> None:
    assert chunk_all(text) == expected
    assert chunk_all(text, [1] * len(text)) == expected


def test_first_chunk_ends_at_a_phrase_break_later_chunks_prefer_sentences() -> None:
    text = "Sure, here is the answer, in short form. It works, mostly, as you would expect it to."
    assert chunk_all(text) == [
        "Sure, here is the answer,",
        "in short form.",
        "It works, mostly, as you would expect it to.",
    ]


def test_a_long_sentence_without_punctuation_breaks_at_word_boundaries() -> None:
    words = [f"word{i}" for i in range(170)]
    text = " ".join(words)  # about 1000 characters, no punctuation
    chunks = chunk_all(text)
    assert all(len(c) <= RULES.max_chars for c in chunks)
    assert all(len(c) >= RULES.min_chars for c in chunks[:-1])
    assert " ".join(chunks) == text  # no word split


def test_a_long_sentence_prefers_its_phrase_breaks() -> None:
    text = (
        "The robot walked into the old studio where the light fell softly on the canvas, "
        "and it picked up a brush for the very first time in its long and quiet life"
    )
    assert chunk_all(text)[0].endswith("canvas,")


def test_a_word_longer_than_the_maximum_is_never_split() -> None:
    url = "https://example.com/" + "a" * 150
    chunks = chunk_all(f"See {url} for details. Bye now.")
    assert any(url in c for c in chunks)


def test_a_chunk_is_emitted_as_soon_as_its_boundary_is_certain() -> None:
    chunker = TextChunker(RULES)
    assert chunker.feed("It costs 3.") == []  # "3." may become "3.14"
    assert chunker.feed("14 euros. ") == []  # the next word may be an abbreviation's lowercase tail
    assert chunker.feed("T") == ["It costs 3.14 euros."]
    assert chunker.feed("hanks for all the fish! ") == ["Thanks for all the fish!"]  # "!" is certain at once


def test_a_sentence_shorter_than_the_minimum_waits_for_more_or_the_end() -> None:
    chunker = TextChunker(RULES)
    assert chunker.feed("Thanks! ") == []  # 7 characters: too short to be spoken alone
    assert chunker.flush() == ["Thanks!"]  # unless it is the reply's last


def test_question_mark_is_certain_without_seeing_the_next_word() -> None:
    chunker = TextChunker(RULES)
    assert chunker.feed("Is the sky blue? ") == ["Is the sky blue?"]


def test_rules_come_from_settings() -> None:
    settings = Settings(chunk_min_chars=5, chunk_max_chars=60, first_chunk_min_chars=8, first_chunk_max_chars=30)
    assert rules_from_settings(settings) == ChunkRules(5, 60, 8, 30)
    with pytest.raises(ValueError, match="chunk sizes"):
        ChunkRules(50, 40, 8, 40)
    with pytest.raises(ValueError, match="chunk sizes"):
        ChunkRules(10, 40, 8, 60)


def test_a_long_first_sentence_starts_speech_after_a_few_words() -> None:
    text = "The sky appears to be blue because of molecules that absorb and reflect light of all colours. It is."
    chunks = chunk_all(text, rules=FAST_START)
    assert chunks[0] == "The sky appears to be blue because of"
    assert chunks[1] == "molecules that absorb and reflect light of all colours."


def test_a_short_first_sentence_is_still_whole() -> None:
    assert chunk_all("Paris is the capital. It is lovely in spring.", rules=FAST_START)[0] == "Paris is the capital."


def test_a_time_of_day_closes_its_phrase_while_a_title_binds_to_the_name() -> None:
    """Found by hypothesis: "p.m." had been bound to the next word like "Dr.", so a first chunk
    could not end before the URL after it."""
    assert chunk_all("the 10:45 p.m. https://example.com/a.b?c=d the", rules=FAST_START)[0] == "the 10:45 p.m."
    title = chunk_all("Please call our old family doctor Dr. Richardson today, and tell him.", rules=FAST_START)
    assert title[0] == "Please call our old family doctor"  # not "... Dr." (37 chars, within the 40)


@settings(max_examples=300, deadline=None)
@given(replies, st.lists(st.integers(min_value=0, max_value=12), max_size=60))
def test_fast_start_keeps_every_rule(text: str, pieces: list[int]) -> None:
    chunks = chunk_all(text, rules=FAST_START)
    assert chunk_all(text, pieces, rules=FAST_START) == chunks
    assert squash("".join(chunks)) == squash(text)
    assert len(chunks[0]) <= FAST_START.first_max_chars or len(chunks) == 1 or " " not in chunks[0][-30:]
    found = sum(chunk.count(item) for chunk in chunks for item in PROTECTED)
    assert found == sum(text.count(item) for item in PROTECTED)


arbitrary = st.text(alphabet=st.sampled_from(list("ab Z9.,!?;:-—…\n\"')$@/ыж。")), max_size=400)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Wir fahren z.B. nach Berlin und Hamburg. Das ist schön.", "z.B. nach"),
        ("Das kostet 3,50 Euro, d.h. nicht viel. Danke schön.", "d.h. nicht"),
        ("Die Rechnung ist 1.234,56 Euro hoch. Danke schön.", "1.234,56 Euro"),
        ("Il y a p. ex. trois pommes sur la table. Merci bien.", "p. ex. trois"),
        ("Ce soir nous attendons Mme. Dupont et son mari pour le dîner.", "Mme. Dupont"),
        ("Heute besucht uns Hr. Müller mit seiner ganzen Familie.", "Hr. Müller"),
        ("Mañana viene a casa la Sra. López con su hijo pequeño.", "Sra. López"),
        ("El Sr. García llegó a las 3,30 en punto. ¡Gracias!", "3,30 en"),
        ("Ho comprato mele, pere, ecc. al mercato oggi. Grazie mille.", "ecc. al"),
    ],
)
def test_the_other_languages_abbreviations_and_decimal_commas_are_never_split(text: str, kept: str) -> None:
    for pieces in (None, [1] * len(text), [3, 7, 2] * 20):
        chunks = chunk_all(text, pieces)
        assert any(kept in chunk for chunk in chunks), chunks
        assert squash("".join(chunks)) == squash(text)


other_languages = st.text(alphabet=st.sampled_from(list("ab Zäöüßéèçñ9.,!?;:¿¡«»-\n\"'")), max_size=300)


@settings(max_examples=800, deadline=None)
@given(arbitrary | other_languages, st.lists(st.integers(min_value=0, max_value=7), max_size=80))
def test_arbitrary_text_in_any_language_keeps_every_character_and_is_split_invariant(
    text: str, pieces: list[int]
) -> None:
    whole = chunk_all(text)
    assert squash("".join(whole)) == squash(text)
    assert chunk_all(text, pieces) == whole
