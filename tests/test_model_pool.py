"""Switching models: each loads once however many ask, stays shared, and at most N stay loaded.

The models are real: the bundled SmolLM2-135M-Instruct saved as plain transformers folders
under other names, loaded through the same code as any model a user picks.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

from speakstream.conversation import content_text
from speakstream.model import LanguageModel, ModelLoadError
from speakstream.model_pool import ModelBusy, ModelPool
from speakstream.pipeline import ReplyPipeline
from speakstream.settings import Settings
from speakstream.ui import respond

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_folders(model: LanguageModel, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Three model folders (a, b, c) holding the real 135M model: links to the converted copy
    of the bundled GGUF that the first load saved."""
    converted = settings.model_cache_dir / model._conversion_dir(model.source).name
    root = tmp_path_factory.mktemp("models")
    for name in ("model-a", "model-b", "model-c"):
        (root / name).mkdir()
        for file in converted.iterdir():
            (root / name / file.name).symlink_to(file)
    return [str(root / name) for name in ("model-a", "model-b", "model-c")]


def pool_for(model: LanguageModel, settings: Settings, folders: list[str], **overrides) -> ModelPool:
    listed = dataclasses.replace(settings, model_choices=",".join(folders), **overrides)
    return ModelPool(listed, model)


def test_a_model_many_users_ask_for_at_once_loads_once(
    model: LanguageModel, settings: Settings, model_folders: list[str]
) -> None:
    pool = pool_for(model, settings, model_folders)
    got: list[LanguageModel] = []
    askers = [threading.Thread(target=lambda: got.append(pool.request(model_folders[0]).result())) for _ in range(3)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(timeout=60)
    assert len(got) == 3 and got[0] is got[1] is got[2]
    assert pool.loads == 1
    assert pool.request(model_folders[0]).result() is got[0]  # later requests reuse it
    assert pool.loads == 1


@pytest.fixture
def full_pool(model: LanguageModel, settings: Settings, model_folders: list[str]) -> ModelPool:
    """A pool of at most two models, holding two: the start-up model, then model a."""
    pool = pool_for(model, settings, model_folders, max_loaded_models=2)
    pool.request(model_folders[0]).result()
    assert pool.loaded == [settings.llm, model_folders[0]]
    return pool


def test_beyond_the_bound_the_least_recently_used_idle_model_is_unloaded(
    full_pool: ModelPool, settings: Settings, model_folders: list[str]
) -> None:
    pool = full_pool
    b = model_folders[1]
    pool.request(settings.llm).result()  # the start-up model is used again: a is now the oldest
    pool.request(b).result()
    assert pool.loaded == [settings.llm, b]
    assert pool.loads == 2


def test_a_model_answering_someone_is_never_unloaded(
    full_pool: ModelPool, settings: Settings, model_folders: list[str]
) -> None:
    pool = full_pool
    a, b, _ = model_folders
    with pool.lease(settings.llm), pool.lease(a):
        with pytest.raises(ModelBusy, match="answering other users"):
            pool.request(b).result()
        assert pool.loaded == [settings.llm, a]
    with pool.lease(a):
        pool.request(b).result()
    assert pool.loaded == [a, b]


def test_users_may_pick_listed_models_and_hub_ids_but_never_server_paths(
    model: LanguageModel, settings: Settings, model_folders: list[str]
) -> None:
    pool = pool_for(model, settings, model_folders)
    assert pool.check(model_folders[1]) == model_folders[1]  # the server listed it
    assert pool.check("") == settings.llm
    assert pool.check("HuggingFaceTB/SmolLM2-360M-Instruct") == "HuggingFaceTB/SmolLM2-360M-Instruct"
    for path in ("/etc", "../models", "~/.ssh/x.gguf", "a/b/c"):
        with pytest.raises(ModelLoadError, match="not a Hugging Face model id"):
            pool.check(path)
    closed = pool_for(model, settings, model_folders, allow_custom_models=False)
    with pytest.raises(ModelLoadError, match="only offers the listed models"):
        closed.check("someone/huge-model")


def test_the_chat_shows_a_model_loading_then_answers_with_it(
    pipeline: ReplyPipeline, settings: Settings, model_folders: list[str]
) -> None:
    listed = dataclasses.replace(settings, model_choices=",".join(model_folders))
    fresh = ReplyPipeline(pipeline.model, pipeline.voices, listed)
    shown: list[str] = []  # the reply's place in the chat at each update (the history is updated in place)
    for outputs in respond(fresh, listed, "What is the capital of France?", [], text_only=True, model=model_folders[2]):
        shown.append(content_text(outputs[1][-1]["content"]))
    assert shown[1].startswith("*Loading model-c")
    assert "Paris" in shown[-1]
    assert outputs[4].endswith("model model-c")  # the stats line names the model
    assert fresh.models.loads == 1


def test_a_model_that_fails_to_load_leaves_the_message_to_send_again(
    pipeline: ReplyPipeline, settings: Settings, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    listed = dataclasses.replace(settings, model_choices=str(broken))
    fresh = ReplyPipeline(pipeline.model, pipeline.voices, listed)
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    with pytest.warns(UserWarning, match="Could not load"):
        outputs = list(respond(fresh, listed, "Still there?", history, text_only=True, model=str(broken)))
    message_box, shown, *_ = outputs[-1]
    assert message_box == "Still there?" and shown == history
    again = list(respond(fresh, listed, "Still there?", history, text_only=True))  # the default model still answers
    assert content_text(again[-1][1][-1]["content"])
