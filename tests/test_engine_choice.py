"""``--cpu-kernels auto``: the model runs the way measured fastest on this machine, within 2% of
float32's perplexity; measured once per machine and model, kept, and said in the log and on the page."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from speakstream.llm import engine_choice
from speakstream.llm.cpu import onnx_runtime
from speakstream.llm.cpu.onnx_runtime import OnnxCache
from speakstream.llm.engine_choice import Measured, candidates, choose_engine, pick
from speakstream.llm.model import LanguageModel, ReplyGate, Sampling
from speakstream.llm.sources import ModelLoadError, ModelSource
from speakstream.settings import Settings, problems

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def test_the_fastest_path_within_two_percent_of_float32s_perplexity_wins() -> None:
    measured = [
        Measured("torch", "int4", 50.0, 16.07),
        Measured("torch", "int8", 40.0, 16.14),
        Measured("onnx", "int8", 70.0, 16.21),
        Measured("off", "float32", 15.0, 15.99),
    ]
    assert pick(measured) == measured[2]
    worse = [*measured[:2], Measured("onnx", "int4", 95.0, 20.6), measured[3]]
    assert pick(worse) == measured[0], "faster but coarser is passed over"


def test_a_path_that_fails_is_not_picked_and_when_all_fail_the_reasons_are_said() -> None:
    measured = [Measured("onnx", "int8", error="the ONNX model builder failed"), Measured("torch", "int4", 50.0, 16.07)]
    assert pick(measured) == measured[1], "without float32 the best perplexity measured is the reference"
    with pytest.raises(ModelLoadError, match="builder failed"):
        pick([measured[0]])


def test_a_path_whose_perplexity_is_not_a_number_is_neither_picked_nor_the_reference() -> None:
    measured = [Measured("onnx", "int8", 90.0, float("nan")), Measured("off", "float32", 15.0, 15.99)]
    assert pick(measured) == measured[1]
    broken_reference = [Measured("torch", "int4", 50.0, 16.07), Measured("off", "float32", 15.0, float("nan"))]
    assert pick(broken_reference) == broken_reference[0]


def test_the_choice_is_kept_apart_for_each_weights_setting_and_each_gguf_file_in_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("a.gguf", "b.gguf"):
        (folder / name).write_bytes(b"GGUF")
    one = ModelSource(folder, "a.gguf", "test")
    files = {
        engine_choice.choice_file(Settings(model_cache=tmp_path, weights=weights), source)
        for weights in ("auto", "int8")
        for source in (one, ModelSource(folder, "b.gguf", "test"))
    }
    assert len(files) == 4


def test_the_timed_reply_is_timed_from_its_first_token_however_long_the_prompt_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_choice, "TIMED_SECONDS", 0.2)

    class SlowToStart:
        def stream_reply(self, messages: object, sampling: Sampling, gate: ReplyGate) -> Iterator[str]:
            time.sleep(0.5)  # reading the prompt: longer than the timed part (the timer is the product's own)
            for _ in range(5):
                if gate.stop.is_set():
                    return
                yield " word"

        def text_tokens(self, text: str) -> int:
            return len(text.split())

    assert engine_choice.decode_speed(SlowToStart()) > 0


def test_asking_for_weights_leaves_only_the_paths_with_those_weights_and_the_float32_reference() -> None:
    assert candidates(Settings(weights="int8")) == [("torch", "int8"), ("onnx", "int8"), ("off", "float32")]
    assert len(candidates(Settings())) == 4
    assert any(
        "needs --cpu-kernels torch" in problem for problem in problems(Settings(cpu_kernels="onnx", weights="int4"))
    )


@pytest.mark.slow
def test_auto_measures_every_path_once_keeps_the_choice_and_says_why(
    bundled_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    source = ModelSource(bundled_gguf.parent, bundled_gguf.name, "bundled (tests)")
    settings = Settings(model_cache=tmp_path, prompt_cache_tokens=0, seed=7)
    caplog.set_level("INFO")
    model = LanguageModel(settings).load(source)
    kept = json.loads(next((tmp_path / "engine").glob("*.json")).read_text())
    measured = [Measured(**m) for m in kept["measured"]]
    assert {(m.kernels, m.weights) for m in measured} == set(engine_choice.CANDIDATES)
    assert all(m.tokens_per_second and m.perplexity for m in measured), measured
    best = pick(measured)
    assert (model.kernels.name, model.weights) == (best.kernels, best.weights) == (kept["kernels"], kept["weights"])
    assert "fastest here" in model.engine and "tokens/s" in caplog.text
    assert "".join(model.stream_reply(FRANCE, Sampling.from_settings(settings)))
    others = [*(tmp_path / "packed").glob("*.pt"), *(tmp_path / "onnx").glob("*")]
    assert len(others) <= 1, f"only the chosen path keeps its copy: {others}"

    def measured_again(*args: object) -> Measured:
        raise AssertionError("the kept choice is used, not measured again")

    monkeypatch.setattr(engine_choice, "measure", measured_again)
    again = LanguageModel(settings).load(source)
    assert (again.kernels.name, again.weights) == (best.kernels, best.weights)
    assert (
        choose_engine(settings, source).reason()
        == engine_choice.EngineChoice(kept["kernels"], kept["weights"], tuple(measured), kept["host"]).reason()
    )


@pytest.fixture(scope="module")
def onnx(bundled_gguf: Path, settings: Settings) -> LanguageModel:
    source = ModelSource(bundled_gguf.parent, bundled_gguf.name, "bundled (tests)")
    return LanguageModel(Settings(seed=7, cpu_kernels="onnx", model_cache=settings.model_cache)).load(source)


@pytest.mark.slow
def test_the_onnx_path_writes_a_reply_stops_when_asked_and_keeps_float32s_quality(
    bundled_gguf: Path, settings: Settings, model: LanguageModel, onnx: LanguageModel
) -> None:
    source = ModelSource(bundled_gguf.parent, bundled_gguf.name, "bundled (tests)")
    assert onnx.weights == "int8" and onnx.kernels.name == "onnx"
    assert "Paris" in "".join(onnx.stream_reply(FRANCE, Sampling.from_settings(settings)))
    stop = threading.Event()
    pieces = []
    for piece in onnx.stream_reply(FRANCE, Sampling(0.2, 0.9, 1.15, 200, seed=1), ReplyGate(stop)):
        pieces.append(piece)
        if len(pieces) == 3:
            stop.set()
    assert len(pieces) <= 4, "Stop ends the reply within a token"
    short = "".join(onnx.stream_reply(FRANCE, Sampling(0.2, 0.9, 1.15, 5, seed=1)))
    assert onnx.text_tokens(short) <= 6
    assert onnx.prompt_cache is not None and onnx.prompt_cache.hits >= 1, "the prompt cache works on it too"
    assert isinstance(onnx.kernels.new_cache(None), OnnxCache)
    float32 = LanguageModel(Settings(weights="float32", cpu_kernels="torch", model_cache=settings.model_cache))
    reference = float32.load(source).perplexity(engine_choice.QUALITY_REFERENCE.read_text(encoding="utf-8"))
    ours = onnx.perplexity(engine_choice.QUALITY_REFERENCE.read_text(encoding="utf-8"))
    assert ours <= reference * engine_choice.QUALITY_TOLERANCE


@pytest.mark.slow
def test_the_onnx_cache_written_in_place_reads_as_onnx_runtimes_own_arrays_as_it_grows_and_when_copied(
    onnx: LanguageModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Token by token, the logits are exactly those of ONNX Runtime's plain call (which returns the
    whole cache as new arrays each step), through a cache that outgrows its room every 3 tokens
    and a copy of it taken half-way (as the prompt cache hands out)."""
    monkeypatch.setattr(onnx_runtime, "SPARE_TOKENS", 3)
    net = onnx._model
    session = net._session(net.threads)
    presents = [name.replace("past_key_values.", "present.") for name in net._past]
    ids = torch.randint(0, net.config.vocab_size, (1, 24), generator=torch.Generator().manual_seed(0))
    cache, arrays = (
        net.new_cache(),
        {name: np.zeros((1, *net._kv_shape[1:2], 0, net._kv_shape[2]), np.float32) for name in net._past},
    )
    for position in range(ids.shape[1]):
        if position == 12:
            cache = copy.deepcopy(cache)
        ours = net(ids[:, position : position + 1], cache).logits[0, -1].numpy()
        feeds = {
            "input_ids": ids[:, position : position + 1].numpy(),
            "attention_mask": np.ones((1, position + 1), np.int64),
        }
        logits, *present = session.run(["logits", *presents], feeds | arrays)
        arrays = dict(zip(net._past, present, strict=True))
        assert np.array_equal(ours, logits[0, -1]), f"token {position}"
    assert cache.get_seq_length() == ids.shape[1]


@pytest.mark.slow
def test_the_onnx_sessions_workers_spin_only_with_every_core_the_model_may_use(onnx: LanguageModel) -> None:
    """With fewer (a voice speaks, a page shows a reply here) they sleep, leaving the cores to others."""
    net = onnx._model

    def spins(threads: int) -> str:
        return net._session(threads).get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    assert spins(net.threads) == "1"
    assert all(spins(fewer) == "0" for fewer in range(1, net.threads))
