"""Untrained Pocket TTS models, written into the Hugging Face cache where the package loads them from.

Kyutai's weights live on the hub, which this project's machines cannot reach. Pocket TTS
fetches each file by ``hf://repo/path@revision`` with a pinned commit, and the hub library
hands back a file already in its cache under that commit without asking the hub. So a model
built from the package's own config with random weights (same shapes, same compute), the
tokenizer its config names (written here, with the vocabulary size it expects) and the
built-in voices' states (made by that model from speech of our own) load by name through the
package's own loader exactly as the released ones would. The weights file says it is
untrained (its metadata), so the app labels such a voice untrained: the sound is noise, to
measure with, never to listen to.
"""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from speakstream.voices.pocket import UNTRAINED

# Text the tokenizers are trained on: words as replies use them, so a chunk counts about as many
# tokens as with the released tokenizers (the untrained model speaks for as long as its tokens say).
CORPUS = (
    Path(__file__).resolve().parents[2] / "eval" / "prompts.txt",
    Path(__file__).resolve().parents[1] / "text" / "openings.txt",
    Path(__file__).resolve().parents[1] / "llm" / "quality_reference.txt",
)
# The speech the built-in voices' states are made from (the bundled Piper voice says it).
VOICE_PROMPT = "Hello! I am an untrained voice, made from random numbers, here to be measured and never heard."


def hub_file(source: str) -> Path:
    """Where the hub library keeps ``hf://owner/repo/path@commit`` in its cache."""
    from huggingface_hub import constants

    found = re.fullmatch(r"hf://([^/]+)/([^/]+)/(.+)@([0-9a-f]{40})", source)
    if found is None:
        raise ValueError(f"not a pinned hub file: {source}")
    owner, repo, path, commit = found.groups()
    return Path(constants.HF_HUB_CACHE) / f"models--{owner}--{repo}" / "snapshots" / commit / path


def _corpus() -> list[str]:
    lines = [line.strip() for path in CORPUS if path.is_file() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def write_tokenizer(kind: str, size: int, path: Path) -> None:
    """A tokenizer of ``kind`` (``tokenizers`` JSON or a ``sentencepiece`` model) with exactly ``size``
    entries, trained on :data:`CORPUS` and padded with unused symbols."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "sentencepiece":
        import sentencepiece

        def train(padding: int) -> bytes:
            model = io.BytesIO()
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=iter(_corpus()),
                model_writer=model,
                vocab_size=size,
                hard_vocab_limit=False,
                user_defined_symbols=[f"<unused{i}>" for i in range(padding)],
                minloglevel=2,
            )
            return model.getvalue()

        learned = sentencepiece.SentencePieceProcessor(model_proto=train(0)).vocab_size()
        path.write_bytes(train(size - learned))
        return
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.train_from_iterator(_corpus(), trainers.BpeTrainer(vocab_size=size, special_tokens=["<unk>"]))
    tokenizer.add_tokens([f"<unused{i}>" for i in range(size - tokenizer.get_vocab_size())])
    tokenizer.save(str(path))


def piper_speech(text: str, sample_rate: int) -> np.ndarray:
    """``text`` said by the bundled Piper voice, as float32 samples at ``sample_rate`` (speech of our own)."""
    import soxr

    from speakstream.voices.piper import PiperVoice

    piper = PiperVoice().load()
    samples = piper.synthesize(text).astype(np.float32) / 32768
    return soxr.resample(samples, piper.sample_rate, sample_rate).astype(np.float32)


def install_untrained_pocket(configs: Iterable[str], voices: dict[str, list[str]]) -> None:
    """Write each package config's model (random weights, seeded), its tokenizer and the states of
    ``voices[config]`` (built-in voice names) into the hub cache ``HF_HUB_CACHE`` points at."""
    import safetensors.torch
    import torch
    import yaml
    from pocket_tts import TTSModel
    from pocket_tts.models.model_state import export_model_state
    from pocket_tts.utils.config import CONFIGS_DIR
    from pocket_tts.utils.utils import get_predefined_voice

    for name in configs:
        raw = yaml.safe_load((CONFIGS_DIR / f"{name}.yaml").read_text())
        table = raw["flow_lm"]["lookup_table"]
        write_tokenizer(table["tokenizer"], table["n_bins"], hub_file(table["tokenizer_path"]))
        with tempfile.TemporaryDirectory(prefix="speakstream-pocket-") as folder:
            # The same config without weights builds the model with random ones (the package warns so).
            tokenizer = str(hub_file(table["tokenizer_path"]))
            bare = {**raw, "weights_path": None, "weights_path_without_voice_cloning": None}
            bare["flow_lm"] = {**raw["flow_lm"], "lookup_table": {**table, "tokenizer_path": tokenizer}}
            config = Path(folder) / f"{name}.yaml"
            config.write_text(yaml.safe_dump(bare))
            torch.manual_seed(0)
            model = TTSModel.load_model(config=config)
        target = hub_file(raw["weights_path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        weights = {key: value.contiguous() for key, value in model.state_dict().items()}
        safetensors.torch.save_file(weights, target, metadata=UNTRAINED)
        if not voices.get(name):
            continue
        with torch.inference_mode():
            prompt = torch.from_numpy(piper_speech(VOICE_PROMPT, model.sample_rate))[None, :]
            state = model.get_state_for_audio_prompt(prompt)
        for voice in voices[name]:
            path = hub_file(get_predefined_voice(language=name, name=voice))
            path.parent.mkdir(parents=True, exist_ok=True)
            export_model_state(state, path)
