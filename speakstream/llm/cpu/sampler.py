"""Drawing the next token: temperature, top-k and top-p, from the top-k candidates alone.

transformers' sampler keeps the most likely tokens (its default top-k), then sorts the whole
vocabulary for top-p and draws with ``torch.multinomial`` over all of it: a noticeable share
of a decoding step. Only the top-k tokens can ever be drawn, so the fast decoding loop
(:meth:`speakstream.llm.cpu.FastKernels.generate`) draws from them directly, after the
repetition penalty: the same distribution, for a fraction of the work.
"""

from __future__ import annotations

import torch

TOP_K = 50  # transformers' default, which replies have always used


class TopKTopPSampler:
    """Draws a token from the top-k, top-p distribution at ``temperature``; every other score becomes -inf."""

    def __init__(
        self, temperature: float, top_p: float, top_k: int = TOP_K, generator: torch.Generator | None = None
    ) -> None:
        """``generator``: this reply's own random numbers (a seeded reply never touches the process-wide RNG)."""
        if temperature <= 0:
            raise ValueError("temperature must be above 0 to sample (0 means greedy)")
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.generator = generator

    def candidates(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens that can be drawn and their probabilities (zero for those top-p cuts)."""
        best, tokens = torch.topk(scores, min(self.top_k, scores.shape[-1]), dim=-1)  # most likely first
        probabilities = torch.softmax(best.float() / self.temperature, dim=-1)
        # top-p: keep a token while the more likely ones before it hold less than top_p (the first always stays)
        before = probabilities.cumsum(-1) - probabilities
        return tokens, probabilities.masked_fill(before >= self.top_p, 0.0)

    def draw(self, scores: torch.Tensor) -> torch.Tensor:
        """The drawn token of each row (shape: rows x 1)."""
        tokens, probabilities = self.candidates(scores)
        return tokens.gather(-1, torch.multinomial(probabilities, 1, generator=self.generator))
