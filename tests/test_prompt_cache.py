"""The start of a prompt is read once: later replies reuse it, and answer exactly as before."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from speakstream.llm.model import LanguageModel, Sampling
from speakstream.llm.prompt_cache import PromptCache
from speakstream.llm.sources import ModelSource
from speakstream.settings import Settings

GREEDY = Sampling(temperature=0.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=24)


def test_the_longest_cached_start_is_found_and_handed_out_as_a_copy() -> None:
    cache = PromptCache(max_tokens=100)
    cache.store([1, 2], ["kv of 1 2"])
    cache.store([1, 2, 3, 4], ["kv of 1 2 3 4"])
    assert cache.longest([1, 2, 3, 4, 5]) == (4, ["kv of 1 2 3 4"])
    assert cache.longest([1, 2, 9]) == (2, ["kv of 1 2"])
    assert cache.longest([7]) == (0, None)
    _, copy = cache.longest([1, 2, 3, 4])
    copy.append("changed by a reply")
    assert cache.longest([1, 2, 3, 4])[1] == ["kv of 1 2 3 4"]


def test_the_cache_keeps_within_its_token_bound_dropping_the_least_recently_used() -> None:
    cache = PromptCache(max_tokens=6)
    cache.store([1, 2, 3], "a")
    cache.store([4, 5, 6], "b")
    cache.longest([1, 2, 3])  # a is used again: b is now the oldest
    cache.store([7, 8], "c")
    assert cache.longest([4, 5, 6]) == (0, None)
    assert cache.longest([1, 2, 3])[0] == 3 and cache.longest([7, 8])[0] == 2
    cache.store(list(range(10)), "too long to keep")
    assert cache.tokens <= 6


@pytest.mark.slow
def test_replies_reuse_the_conversation_so_far_and_answer_exactly_as_without_the_cache(
    settings: Settings, bundled_gguf: Path
) -> None:
    """In float32 the reused keys and values are bit for bit those a full read gives: same words.

    (With int4 weights the kernels round in bfloat16, and a different split of the prompt can
    flip a near-tie; test_quantize checks that quality holds there.)
    """
    source = ModelSource(bundled_gguf.parent, bundled_gguf.name, "bundled (tests)")
    exact = dataclasses.replace(settings, weights="float32")
    cached = LanguageModel(exact).load(source)
    uncached = LanguageModel(dataclasses.replace(exact, prompt_cache_tokens=0)).load(source)
    assert uncached.prompt_cache is None and cached.prompt_cache is not None
    first = [{"role": "user", "content": "My name is Alice. What is the capital of France?"}]
    hits = cached.prompt_cache.hits
    answer = "".join(cached.stream_reply(first, GREEDY))
    assert cached.prompt_cache.hits > hits, "the system turn was read at start-up already"
    assert answer == "".join(uncached.stream_reply(first, GREEDY))
    second = [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": "What is my name?"}]
    stored = cached.prompt_cache.tokens
    reply = "".join(cached.stream_reply(second, GREEDY))
    assert cached.prompt_cache.tokens > stored, "the first turn is kept for the next one"
    assert reply == "".join(uncached.stream_reply(second, GREEDY))
