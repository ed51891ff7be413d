"""Drawing the next token: the sampler draws from exactly the distribution transformers'
temperature, top-k and top-p would give, only faster."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from speakstream.llm.cpu.sampler import TOP_K, TopKTopPSampler


def transformers_distribution(scores: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    warpers = LogitsProcessorList(
        [TemperatureLogitsWarper(temperature), TopKLogitsWarper(TOP_K), TopPLogitsWarper(top_p)]
    )
    return torch.softmax(warpers(torch.zeros(1, 1, dtype=torch.long), scores.clone()), dim=-1)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    temperature=st.floats(0.05, 2.0),
    top_p=st.floats(0.05, 1.0),
    spread=st.floats(0.5, 8.0),
)
def test_the_distribution_is_transformers_own(seed: int, temperature: float, top_p: float, spread: float) -> None:
    scores = torch.randn(1, 500, generator=torch.Generator().manual_seed(seed)) * spread
    tokens, probabilities = TopKTopPSampler(temperature, top_p).candidates(scores)
    ours = torch.zeros_like(scores).scatter_(-1, tokens, probabilities / probabilities.sum())
    torch.testing.assert_close(ours, transformers_distribution(scores, temperature, top_p), atol=1e-5, rtol=1e-4)


def test_draws_follow_the_probabilities() -> None:
    scores = torch.full((1, 1000), -20.0)
    scores[0, [7, 11, 13]] = torch.tensor([2.0, 1.0, 0.0])
    sampler = TopKTopPSampler(temperature=1.0, top_p=1.0, generator=torch.Generator().manual_seed(0))
    draws = [int(sampler.draw(scores)) for _ in range(3000)]
    share_of_7 = draws.count(7) / len(draws)
    assert share_of_7 == pytest.approx(torch.softmax(torch.tensor([2.0, 1.0, 0.0]), 0)[0].item(), abs=0.03)
    assert set(draws) == {7, 11, 13}


def test_a_tight_top_p_keeps_only_the_likeliest_token() -> None:
    scores = torch.tensor([[5.0, 1.0, 0.5, 0.0]])
    sampler = TopKTopPSampler(temperature=1.0, top_p=0.5)
    assert {int(sampler.draw(scores)) for _ in range(50)} == {0}


def test_zero_temperature_is_refused() -> None:
    with pytest.raises(ValueError, match="greedy"):
        TopKTopPSampler(temperature=0.0, top_p=0.9)
