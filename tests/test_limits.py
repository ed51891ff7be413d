"""Fairness and filtering rules that need no model: the per-session rate limit and the word list."""

from __future__ import annotations

import pytest

from speakstream.settings import Settings
from speakstream.text.limits import RateLimiter
from speakstream.text.word_filter import WordFilter


def test_rate_limit_allows_the_limit_then_says_how_long_to_wait() -> None:
    limiter = RateLimiter(limit=3, window=60)
    assert [limiter.check(now=t) for t in (0, 1, 2)] == [0, 0, 0]
    assert limiter.check(now=10) == pytest.approx(50)
    assert limiter.check(now=60) == 0  # the first message left the window


def test_refused_messages_do_not_count() -> None:
    limiter = RateLimiter(limit=1, window=10)
    assert limiter.check(now=0) == 0
    assert limiter.check(now=5) > 0
    assert limiter.check(now=10) == 0


def test_zero_means_no_limit() -> None:
    limiter = RateLimiter(limit=0, window=60)
    assert all(limiter.check(now=t) == 0 for t in range(100))


def test_the_word_list_is_off_by_default() -> None:
    words = WordFilter(Settings().blocked_word_list)
    assert not words.blocks("anything at all") and words.mask("anything") == "anything"


def test_listed_words_are_found_as_whole_words_in_any_case() -> None:
    words = WordFilter(Settings(blocked_words="darn, heck ,").blocked_word_list)
    assert words.blocks("Oh DARN it")
    assert not words.blocks("darnit, checkered")
    assert words.mask("Heck, darn! and darnit") == "****, ****! and darnit"
