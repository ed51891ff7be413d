"""The growing key/value cache holds exactly what transformers' own cache holds, writes new
tokens in place, and its copies are private and hold no spare room."""

from __future__ import annotations

import copy

import torch
from transformers import DynamicCache, LlamaConfig

from speakstream.llm.cpu.kv_cache import SPARE_TOKENS, GrowingLayer, new_cache

CONFIG = LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2)


def feed(cache: DynamicCache, pieces: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    for tokens in pieces:
        keys, values = (torch.randn(1, 2, tokens, 16, generator=generator) for _ in range(2))
        seen = [cache.update(keys, values, layer) for layer in range(2)]
    return seen[-1]


def test_it_holds_what_transformers_cache_holds() -> None:
    pieces = [7, 1, 1, 300, *[1] * 40]
    ours, theirs = feed(new_cache(CONFIG), pieces), feed(DynamicCache(config=CONFIG), pieces)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_tokens_are_written_in_place_until_the_room_runs_out() -> None:
    cache = new_cache(CONFIG)
    feed(cache, [5])
    layer = cache.layers[1]
    assert isinstance(layer, GrowingLayer) and cache.get_seq_length() == 5
    room = layer.keys.untyped_storage().data_ptr()
    feed(cache, [1] * SPARE_TOKENS)
    assert layer.keys.untyped_storage().data_ptr() == room  # no copy for SPARE_TOKENS more tokens
    feed(cache, [1])
    assert layer.keys.untyped_storage().data_ptr() != room and cache.get_seq_length() == SPARE_TOKENS + 6


def test_a_copy_is_private_and_holds_only_the_filled_part() -> None:
    cache = new_cache(CONFIG)
    feed(cache, [9])
    twin = copy.deepcopy(cache)
    assert twin.layers[0].keys.untyped_storage().nbytes() == 9 * 2 * 16 * 4
    feed(twin, [1], seed=1)
    feed(cache, [1], seed=2)
    assert twin.get_seq_length() == cache.get_seq_length() == 10
    assert not torch.equal(twin.layers[0].keys[..., 9, :], cache.layers[0].keys[..., 9, :])
    assert torch.equal(twin.layers[0].keys[..., :9, :], cache.layers[0].keys[..., :9, :])
