"""Faster decoding on a CPU, in place of parts of transformers, behind one switch: ``--cpu-kernels``.

``auto``: smaller weights multiplied by torch's CPU kernels, with each plain Llama decoder layer
rebuilt from fewer, larger products (:mod:`.quantize`, :mod:`.decoder_layer`); a key/value
cache that grows in place (:mod:`.kv_cache`); each token drawn from the 50 candidates rather
than the whole vocabulary (:mod:`.sampler`); and a decoding loop of its own in place of
``generate()``, doing per token only what a reply needs (:meth:`FastKernels.generate`).
``off``: plain transformers (float32 weights, its own cache, sampling and ``generate()``),
for the day a torch or transformers upgrade breaks any of the above: ship with the switch
off, the app works the same, only slower.

Everything the language model needs from this package goes through :func:`cpu_kernels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Reply:
    """What one reply is written with: its sampling, its length, and the tokens that end it."""

    temperature: float
    top_p: float
    seed: int | None
    repetition_penalty: float
    max_new_tokens: int
    end_tokens: frozenset[int]
    pad_token: int | None


class FastKernels:
    """``--cpu-kernels auto``."""

    name = "auto"

    def shrink(self, model: Any, weights: str) -> str:
        """Make ``model``'s weights ``weights`` (``auto``: int4); returns the kind used (float32
        when this torch build lacks the kernels)."""
        from speakstream.llm.cpu.quantize import choose_weights, kernels_work, quantize

        chosen = choose_weights(weights)
        if chosen == "float32" or not kernels_work(chosen):
            return "float32"
        quantize(model, chosen)
        return chosen

    def new_cache(self, config: Any) -> Any:
        from speakstream.llm.cpu.kv_cache import new_cache

        return new_cache(config)

    def sampling(self, temperature: float, top_p: float, seed: int | None) -> dict[str, Any]:
        """``generate()`` arguments that draw tokens as asked, each reply from its own random numbers."""
        from transformers import LogitsProcessorList

        from speakstream.llm.cpu.sampler import TopKTopPSampler

        if temperature <= 0:
            return {"do_sample": False}
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        # The sampler draws; greedy search then takes the one token it leaves.
        return {
            "do_sample": False,
            "logits_processor": LogitsProcessorList([TopKTopPSampler(temperature, top_p, generator=generator)]),
        }

    def generate(self, model: Any, prompt: Any, cache: Any, reply: Reply, gate: Any, streamer: Any) -> None:
        """Write the reply into ``streamer`` token by token, ``gate`` deciding after each whether to go on.

        What ``generate()`` does for this model and these settings, and no more: the repetition
        penalty on every token seen so far (as transformers applies it), then the sampler (or the
        likeliest token at temperature 0); the streamer gets the prompt first (it skips it), then
        each token; the end of text or ``max_new_tokens`` ends it. For the same seed the text is
        the same as ``generate()``'s (tests/test_cpu_kernels.py).
        """
        from speakstream.llm.cpu.sampler import TopKTopPSampler

        draw = None
        if reply.temperature > 0:
            generator = None if reply.seed is None else torch.Generator().manual_seed(reply.seed)
            draw = TopKTopPSampler(reply.temperature, reply.top_p, generator=generator).draw
        seen = prompt[0]
        streamer.put(prompt)
        done = cache.get_seq_length()
        logits = model(input_ids=prompt[:, done:], cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1, :]
        for _ in range(reply.max_new_tokens):
            scores = logits.float()
            if reply.repetition_penalty != 1.0:
                penalised = scores.gather(-1, seen[None])
                penalised = torch.where(
                    penalised < 0, penalised * reply.repetition_penalty, penalised / reply.repetition_penalty
                )
                scores = scores.scatter(-1, seen[None], penalised)
            token = draw(scores) if draw else scores.argmax(-1, keepdim=True)
            streamer.put(token[0])
            if int(token) in reply.end_tokens or gate.stops():
                break
            seen = torch.cat([seen, token[0]])
            logits = model(input_ids=token, cache=cache, use_cache=True).logits[:, -1, :]
        streamer.end()


class PlainTransformers:
    """``--cpu-kernels off``: transformers as it comes."""

    name = "off"

    def shrink(self, model: Any, weights: str) -> str:
        return "float32"

    def new_cache(self, config: Any) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=config)

    def sampling(self, temperature: float, top_p: float, seed: int | None) -> dict[str, Any]:
        """transformers' own sampling. It has no per-call random generator: a seed seeds torch's
        process-wide one (replies running at once then share it)."""
        if temperature <= 0:
            return {"do_sample": False}
        if seed is not None:
            torch.manual_seed(seed)
        return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 50}

    def generate(self, model: Any, prompt: Any, cache: Any, reply: Reply, gate: Any, streamer: Any) -> None:
        """transformers' ``generate()``, with ``gate`` as its stopping criterion."""
        from transformers import StoppingCriteriaList

        model.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            cache=cache,
            streamer=streamer,
            max_new_tokens=reply.max_new_tokens,
            repetition_penalty=reply.repetition_penalty,
            stopping_criteria=StoppingCriteriaList([gate]),
            pad_token_id=reply.pad_token,
            **self.sampling(reply.temperature, reply.top_p, reply.seed),
        )


CpuKernels = FastKernels | PlainTransformers


def cpu_kernels(setting: str) -> CpuKernels:
    """The CPU path ``--cpu-kernels`` names."""
    return PlainTransformers() if setting == "off" else FastKernels()
