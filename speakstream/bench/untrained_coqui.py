"""Untrained glow-tts and multiband-MelGAN, written where Coqui keeps its downloads.

The released weights come from GitHub releases, which this project's machines cannot reach.
Coqui does not download a model whose folder already exists, so real GlowTTS and MelGAN
checkpoints with random weights, written there, load by name through the same code path as
the released ones. At the released shapes (Coqui's default configs for both models) they cost
the same compute as the released voice, so its speed is an honest figure; the tests use small
ones. The sound is noise: measure with them, never listen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GLOW_TTS_FOLDER = "tts_models--en--ljspeech--glow-tts"
MELGAN_FOLDER = "vocoder_models--en--ljspeech--multiband-melgan"
# Untrained durations are near zero frames; e**2 rounded up, 8 frames (93 ms) a phoneme, is a speaking pace.
LOG_FRAMES_PER_PHONEME = 2.0

SMALL_GLOW_TTS: dict[str, Any] = {
    "hidden_channels_enc": 16,
    "hidden_channels_dec": 16,
    "hidden_channels_dp": 16,
    "num_flow_blocks_dec": 2,
    "num_block_layers": 2,
    "encoder_params": {"kernel_size": 3, "dropout_p": 0.1, "num_layers": 2, "num_heads": 2, "hidden_channels_ffn": 32},
}
SMALL_MELGAN: dict[str, Any] = {
    "generator_model_params": {"upsample_factors": [8, 4, 2], "num_res_blocks": 1},
    "discriminator_model_params": {"base_channels": 4, "max_channels": 8, "downsample_factors": [4]},
}


def _audio_config() -> Any:
    from TTS.config.shared_configs import BaseAudioConfig

    return BaseAudioConfig(sample_rate=22050, num_mels=80, hop_length=256, win_length=1024, fft_size=1024)


def _save(model: Any, config: Any, folder: Path) -> None:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, folder / "model_file.pth")
    config.save_json(str(folder / "config.json"))


def write_glow_tts(folder: Path, small: bool) -> None:
    """A GlowTTS with the released model's text front end (en-us phonemes through espeak)."""
    import torch
    from TTS.tts.configs.glow_tts_config import GlowTTSConfig
    from TTS.tts.models.glow_tts import GlowTTS

    config = GlowTTSConfig(
        audio=_audio_config(),
        use_phonemes=True,
        phonemizer="espeak",
        phoneme_language="en-us",
        text_cleaner="phoneme_cleaners",
        out_channels=80,
        **(SMALL_GLOW_TTS if small else {}),
    )
    torch.manual_seed(0)
    model = GlowTTS(config)
    with torch.no_grad():
        model.encoder.duration_predictor.proj.weight.zero_()
        model.encoder.duration_predictor.proj.bias.fill_(LOG_FRAMES_PER_PHONEME)
    _save(model, config, folder)


def write_multiband_melgan(folder: Path, small: bool) -> None:
    import torch
    from TTS.vocoder.configs.multiband_melgan_config import MultibandMelganConfig
    from TTS.vocoder.models import setup_model

    config = MultibandMelganConfig(audio=_audio_config(), **(SMALL_MELGAN if small else {}))
    torch.manual_seed(0)
    _save(setup_model(config), config, folder)


def install_untrained_glow_tts(tts_home: Path, small: bool = False) -> Path:
    """Write both models under ``$TTS_HOME/tts`` as Coqui lays out its downloads; returns that folder."""
    root = tts_home / "tts"
    write_glow_tts(root / GLOW_TTS_FOLDER, small)
    write_multiband_melgan(root / MELGAN_FOLDER, small)
    return root
