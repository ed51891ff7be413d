"""The voice reads words, not markdown: the chat keeps the text as written, the cleaner makes it speakable."""

from __future__ import annotations

import pytest

from speakstream.text.speech_text import CODE_PHRASE, SpeechCleaner, is_speakable


def spoken(*chunks: str) -> list[str]:
    cleaner = SpeechCleaner()
    return [cleaner.clean(chunk) for chunk in chunks]


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        ("**Bold** and *italic* and __strong__ and ~~gone~~ text.", "Bold and italic and strong and gone text."),
        ("## Why the sky is blue", "Why the sky is blue"),
        ("- Sleep early.", "Sleep early."),
        ("2. Avoid screens before bed.", "Avoid screens before bed."),
        ("> A quoted line.", "A quoted line."),
        ("Read [the guide](https://example.com/guide) first.", "Read the guide first."),
        ("See https://www.example.com/a/b?c=1 for more.", "See example.com for more."),
        ("Call `print()` to write.", "Call print() to write."),
        ("Great news 🎉🤖! Done ✅.", "Great news! Done."),
        ("<b>Bold</b> <script>alert(1)</script>", "Bold alert(1)"),
        ("Price: $1,000 at 5:30, Dr. Smith.", "Price: $1,000 at 5:30, Dr. Smith."),
        ("Crème brûlée, naïve café. Привет! 你好。", "Crème brûlée, naïve café. Привет! 你好。"),
    ],
)
def test_markdown_is_read_as_plain_words(chunk: str, expected: str) -> None:
    assert spoken(chunk) == [expected]


@pytest.mark.parametrize("chunk", ["", "   ", "...", "🎉🎉", "---", "**", "- "])
def test_nothing_speakable_gives_nothing(chunk: str) -> None:
    assert spoken(chunk) == [""]
    assert not is_speakable(spoken(chunk)[0])


def test_a_code_block_across_chunks_is_announced_once_and_skipped() -> None:
    chunks = ["Here is code:\n```python", "print('hello world')\nx = 1 + 2", "```\nThat prints a greeting."]
    assert spoken(*chunks) == ["Here is code: " + CODE_PHRASE, "", "That prints a greeting."]
