"""A key/value cache that grows in steps, instead of copying itself for every token.

transformers' ``DynamicCache`` appends each new token with ``torch.cat``, which copies the
whole cache of every layer (keys and values: two copies a layer) for every token written,
their cost growing with the conversation. This cache keeps spare room and writes each
token in place; the model sees views of the filled part.
A copy (what the prompt cache hands out) holds only the filled part.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

SPARE_TOKENS = 256


class GrowingLayer(DynamicLayer):
    """One layer's keys and values in buffers with room for ``SPARE_TOKENS`` more tokens."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self.keys = key_states[..., :0, :]
        self.values = value_states[..., :0, :]
        self._key_room, self._value_room = self.keys, self.values

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        filled, new = self.keys.shape[-2], key_states.shape[-2]
        if filled + new > self._key_room.shape[-2]:
            self._key_room = _roomier(self.keys, filled + new + SPARE_TOKENS)
            self._value_room = _roomier(self.values, filled + new + SPARE_TOKENS)
        self._key_room[..., filled : filled + new, :] = key_states
        self._value_room[..., filled : filled + new, :] = value_states
        self.keys = self._key_room[..., : filled + new, :]
        self.values = self._value_room[..., : filled + new, :]
        return self.keys, self.values

    def __deepcopy__(self, memo: dict[int, Any]) -> GrowingLayer:
        """A copy of the filled part only: stored prompt starts keep no spare room."""
        twin = GrowingLayer()
        if self.is_initialized:
            twin.lazy_initialization(self.keys, self.values)
            twin.keys = twin._key_room = self.keys.clone()
            twin.values = twin._value_room = self.values.clone()
        return twin


def _roomier(filled: torch.Tensor, tokens: int) -> torch.Tensor:
    room = filled.new_empty(*filled.shape[:-2], tokens, filled.shape[-1])
    room[..., : filled.shape[-2], :] = filled
    return room


def new_cache(config: Any) -> DynamicCache:
    """An empty cache for ``config``'s model, with growing layers wherever the model keeps full attention."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
