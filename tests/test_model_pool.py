"""Switching models: each loads once however many ask, stays shared, and at most N stay loaded.

The pool's rules are tested with scripted models whose loads the test holds and releases;
the slow tests load the real SmolLM2-135M-Instruct, saved as plain transformers folders under
other names, through the same code as any model a user picks.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from speakstream.llm.model import LanguageModel
from speakstream.llm.pool import ModelBusy, ModelPool
from speakstream.llm.sources import ModelLoadError
from speakstream.load_once import RETRY_AFTER_SECONDS
from speakstream.server import assemble
from speakstream.settings import DEFAULT_LLM, Settings
from speakstream.text.conversation import content_text
from speakstream.ui.admit import ReplyChoices
from speakstream.ui.handlers import ChatApp, respond
from speakstream.ui.loading import load_model

from fakes import Events, ScriptedModel


@pytest.fixture(scope="module")
def model_folders(model: LanguageModel, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Three model folders (a, b, c) holding the real 135M model: links to the converted copy
    of the bundled GGUF that the first load saved."""
    converted = model.conversion_dir(model.source)
    root = tmp_path_factory.mktemp("models")
    for name in ("model-a", "model-b", "model-c"):
        (root / name).mkdir()
        for file in converted.iterdir():
            (root / name / file.name).symlink_to(file)
    return [str(root / name) for name in ("model-a", "model-b", "model-c")]


class Loader:
    """Loads scripted models by name; a load in ``hold`` waits until the test lets it finish, one in
    ``broken`` fails."""

    def __init__(self, broken: tuple[str, ...] = ()) -> None:
        self.events = Events()
        self.hold: set[str] = set()
        self.broken = broken
        self.calls: list[str] = []

    def __call__(self, spec: str) -> ScriptedModel:
        self.calls.append(spec)
        self.events.add(f"loading {spec}")
        if spec in self.hold:
            self.events.wait_for(f"finish {spec}")
        if spec in self.broken:
            raise ModelLoadError(f"Could not load {spec}.")
        return ScriptedModel(name=spec)


def pool_of(loader: Loader, *, max_loaded_models: int = 2, **overrides: object) -> ModelPool:
    settings = dataclasses.replace(Settings(), model_choices="a/a,b/b,c/c", max_loaded_models=max_loaded_models)
    return ModelPool(dataclasses.replace(settings, **overrides), ScriptedModel(name="default"), load=loader)


def test_a_model_many_users_ask_for_at_once_loads_once() -> None:
    loader = Loader()
    loader.hold.add("a/a")
    pool = pool_of(loader)
    asks = [pool.request("a/a") for _ in range(3)]
    loader.events.wait_for("loading a/a")
    assert not any(ask.done() for ask in asks), "everyone waits for the one load"
    loader.events.add("finish a/a")
    got = [ask.result(timeout=30) for ask in asks]
    assert got[0] is got[1] is got[2] and pool.request("a/a").result() is got[0]
    assert loader.calls == ["a/a"]


@pytest.fixture
def full_pool() -> ModelPool:
    """A pool of at most two models, holding two: the start-up model, then a."""
    pool = pool_of(Loader())
    pool.request("a/a").result(timeout=30)
    assert pool.loaded == [DEFAULT_LLM, "a/a"]
    return pool


def test_beyond_the_bound_the_least_recently_used_idle_model_is_unloaded(full_pool: ModelPool) -> None:
    full_pool.request(DEFAULT_LLM).result()  # the start-up model is used again: a is now the oldest
    full_pool.request("b/b").result(timeout=30)
    assert full_pool.loaded == [DEFAULT_LLM, "b/b"]


def test_an_unloaded_model_is_loaded_again_when_asked_for(full_pool: ModelPool) -> None:
    first = full_pool.request("a/a").result()
    full_pool.request("b/b").result(timeout=30)
    assert full_pool.loaded == [DEFAULT_LLM, "b/b"]
    again = full_pool.request("a/a").result(timeout=30)
    assert again is not first and full_pool.loaded == [DEFAULT_LLM, "a/a"]


def test_the_start_up_model_stays_loaded_and_counts_towards_the_bound(full_pool: ModelPool) -> None:
    for spec in ("b/b", "c/c", "a/a"):
        full_pool.request(spec).result(timeout=30)
        assert len(full_pool.loaded) == 2 and DEFAULT_LLM in full_pool.loaded
    alone = pool_of(Loader(), max_loaded_models=1)
    with pytest.raises(ModelBusy, match="only its own model"):
        alone.request("a/a").result(timeout=30)


def test_a_model_answering_someone_is_never_unloaded(full_pool: ModelPool) -> None:
    with full_pool.lease("a/a"):
        with pytest.raises(ModelBusy, match="answering users"):
            full_pool.request("b/b").result(timeout=30)
        assert full_pool.loaded == [DEFAULT_LLM, "a/a"]
    full_pool.request("b/b").result(timeout=30)
    assert full_pool.loaded == [DEFAULT_LLM, "b/b"]


def test_a_model_that_fails_to_load_unloads_nothing() -> None:
    pool = pool_of(Loader(broken=("b/b",)))
    pool.request("a/a").result(timeout=30)
    with pytest.raises(ModelLoadError, match="Could not load b/b"):
        pool.request("b/b").result(timeout=30)
    assert pool.loaded == [DEFAULT_LLM, "a/a"], "a failed load evicts nothing"


def test_users_may_pick_listed_models_and_only_with_permission_other_hub_ids_never_paths() -> None:
    closed = pool_of(Loader())
    assert closed.check("b/b") == "b/b"  # the server listed it
    assert closed.check("") == DEFAULT_LLM
    with pytest.raises(ModelLoadError, match="only offers the listed models"):
        closed.check("someone/huge-model")
    pool = pool_of(Loader(), allow_custom_models=True)
    assert pool.check("HuggingFaceTB/SmolLM2-360M-Instruct") == "HuggingFaceTB/SmolLM2-360M-Instruct"
    for path in ("/etc", "../models", "~/.ssh/x.gguf", "a/b/c", "speakstream/..", "a/..", "x" * 120 + "/y", "-a/b"):
        with pytest.raises(ModelLoadError, match="not a Hugging Face model id"):
            pool.check(path)


def fake_hub(monkeypatch: pytest.MonkeyPatch, files: dict[str, int], sha: str = "c0ffee") -> list[tuple[str, Any]]:
    """The hub's metadata for one model with ``files`` (name: bytes); returns the downloads asked for."""
    siblings = [SimpleNamespace(rfilename=name, size=size) for name, size in files.items()]
    monkeypatch.setattr(
        "huggingface_hub.HfApi.model_info", lambda self, repo, **_: SimpleNamespace(siblings=siblings, sha=sha)
    )
    downloads: list[tuple[str, Any]] = []

    def download(repo: str, *, local_files_only: bool, revision: str | None = None) -> str:
        downloads.append((repo, revision))
        raise OSError("not cached" if local_files_only else "offline")

    monkeypatch.setattr("speakstream.llm.pool.download_from_hub", download)
    return downloads


def test_a_hub_model_over_the_size_limit_is_refused_before_downloading(monkeypatch: pytest.MonkeyPatch) -> None:
    downloads = fake_hub(monkeypatch, {"model.safetensors": 70 * 10**9, "config.json": 700})
    settings = dataclasses.replace(Settings(), allow_custom_models=True, max_model_size_gb=1.0)
    pool = ModelPool(settings, ScriptedModel(name="default"))
    with pytest.raises(ModelLoadError, match=r"70.0 GB, more than this server's limit of 1 GB"):
        pool.request("someone/huge-model").result(timeout=30)
    assert downloads == [("someone/huge-model", None)], "only the local cache was looked at"
    assert pool.loaded == [DEFAULT_LLM]


def test_the_size_limit_counts_every_file_a_download_takes_and_the_download_is_of_the_commit_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = dataclasses.replace(Settings(), allow_custom_models=True, max_model_size_gb=1.0)
    pool = ModelPool(settings, ScriptedModel(name="default"))
    fake_hub(monkeypatch, {"model.safetensors": 10**8, "tokenizer.json": 2 * 10**9, "README.md": 10**12})
    with pytest.raises(ModelLoadError, match=r"2.1 GB, more than"):  # the README is not downloaded
        pool.request("someone/padded-model").result(timeout=30)
    downloads = fake_hub(monkeypatch, {"model.safetensors": 10**8, "config.json": 700}, sha="abc123")
    with pytest.raises(ModelLoadError):  # offline here, after the size check passed
        pool.request("someone/small-model").result(timeout=30)
    assert downloads == [("someone/small-model", None), ("someone/small-model", "abc123")]


@pytest.mark.slow
def test_a_model_folder_picked_in_the_page_loads_and_answers(
    model: LanguageModel, app: ChatApp, settings: Settings, model_folders: list[str]
) -> None:
    listed = dataclasses.replace(settings, model_choices=",".join(model_folders))
    handlers = assemble(model, app.voices, listed)
    status = list(load_model(handlers, model_folders[2]))
    assert status[0].startswith("Loading model-c") and status[-1] == "model-c is ready."
    picked = ReplyChoices(text_only=True, model=model_folders[2])
    outputs = list(respond(handlers, "What is the capital of France?", [], picked))
    assert "Paris" in content_text(outputs[-1][1][-1]["content"])
    assert outputs[-1][4].endswith("model model-c")  # the stats line names the model
    assert handlers.models.loaded[-1] == model_folders[2]


@pytest.mark.slow
def test_a_model_that_fails_to_load_says_so_without_server_paths_and_the_default_still_answers(
    model: LanguageModel, app: ChatApp, settings: Settings, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    listed = dataclasses.replace(settings, model_choices=str(broken))
    handlers = assemble(model, app.voices, listed)
    with pytest.warns(UserWarning, match=r"Could not load broken-model \(") as warned:
        status = list(load_model(handlers, str(broken)))
    assert status[-1].startswith("Not loaded: Could not load broken-model")
    assert str(tmp_path) not in str(warned[0].message) and str(tmp_path) not in status[-1]
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    with pytest.warns(UserWarning, match="Could not load broken-model"):
        refused = list(respond(handlers, "Still there?", history, ReplyChoices(text_only=True, model=str(broken))))
    assert refused[-1][1] == history and not isinstance(refused[-1][0], str), "the message stays in the box"
    again = list(respond(handlers, "Still there?", history, ReplyChoices(text_only=True)))
    assert content_text(again[-1][1][-1]["content"]), "the default model still answers"


def test_a_model_that_failed_to_load_gives_its_reason_for_a_while_before_it_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loader = Loader(broken=("a/a",))
    pool = pool_of(loader)
    with pytest.raises(ModelLoadError, match="Could not load a/a"):
        pool.request("a/a").result(timeout=30)
    with pytest.raises(ModelLoadError, match="Could not load a/a"):
        pool.request("a/a").result(timeout=30)
    assert loader.calls == ["a/a"], "not retried at once"
    later = time.monotonic() + RETRY_AFTER_SECONDS
    monkeypatch.setattr("speakstream.load_once.time", SimpleNamespace(monotonic=lambda: later))
    with pytest.raises(ModelLoadError):
        pool.request("a/a").result(timeout=30)
    assert loader.calls == ["a/a", "a/a"]


def test_only_a_few_loads_wait_at_once_so_a_stream_of_picks_cannot_pile_up_work() -> None:
    loader = Loader()
    loader.hold.add("a/a")
    pool = pool_of(loader, max_loaded_models=5, model_choices="a/a,b/b,c/c,d/d")
    waiting = [pool.request(spec) for spec in ("a/a", "b/b", "c/c")]
    loader.events.wait_for("loading a/a")
    with pytest.raises(ModelBusy, match="Other models are loading for other users right now"):
        pool.request("d/d").result(timeout=30)
    assert pool.request("b/b") is waiting[1], "a model already waiting is still the same load"
    loader.events.add("finish a/a")
    assert [load.result(timeout=30).name for load in waiting] == ["a/a", "b/b", "c/c"]
    assert pool.request("d/d").result(timeout=30).name == "d/d", "refused only while the others waited"
    assert loader.calls == ["a/a", "b/b", "c/c", "d/d"]
