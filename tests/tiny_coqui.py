"""Small random-weight Coqui models, written where Coqui keeps its downloads.

The released glow-tts and multiband-melgan come from GitHub releases, which this machine
cannot reach. Coqui does not download a model whose folder already exists, so the tests
write real (untrained) GlowTTS and MelGAN checkpoints of the same kinds and configs there
and load them by name through the same code path as the released models.
"""

from __future__ import annotations

from pathlib import Path

GLOW_TTS_FOLDER = "tts_models--en--ljspeech--glow-tts"
MELGAN_FOLDER = "vocoder_models--en--ljspeech--multiband-melgan"


def _audio_config():
    from TTS.config.shared_configs import BaseAudioConfig

    return BaseAudioConfig(sample_rate=22050, num_mels=80, hop_length=256, win_length=1024, fft_size=1024)


def write_tiny_glow_tts(folder: Path) -> None:
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
        hidden_channels_enc=16,
        hidden_channels_dec=16,
        hidden_channels_dp=16,
        num_flow_blocks_dec=2,
        num_block_layers=2,
        out_channels=80,
        encoder_params={"kernel_size": 3, "dropout_p": 0.1, "num_layers": 2, "num_heads": 2, "hidden_channels_ffn": 32},
    )
    torch.manual_seed(0)
    model = GlowTTS(config)
    with torch.no_grad():  # untrained durations are near zero frames; about 6 frames a phoneme sounds like speech
        model.encoder.duration_predictor.proj.weight.zero_()
        model.encoder.duration_predictor.proj.bias.fill_(2.0)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, folder / "model_file.pth")
    config.save_json(str(folder / "config.json"))


def write_tiny_multiband_melgan(folder: Path) -> None:
    import torch
    from TTS.vocoder.configs.multiband_melgan_config import MultibandMelganConfig
    from TTS.vocoder.models import setup_model

    config = MultibandMelganConfig(
        audio=_audio_config(),
        generator_model_params={"upsample_factors": [8, 4, 2], "num_res_blocks": 1},
        discriminator_model_params={"base_channels": 4, "max_channels": 8, "downsample_factors": [4]},
    )
    torch.manual_seed(0)
    model = setup_model(config)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, folder / "model_file.pth")
    config.save_json(str(folder / "config.json"))


def install_tiny_glow_tts(tts_home: Path) -> Path:
    """Write both models under ``$TTS_HOME/tts`` as Coqui lays out its downloads; returns that folder."""
    root = tts_home / "tts"
    write_tiny_glow_tts(root / GLOW_TTS_FOLDER)
    write_tiny_multiband_melgan(root / MELGAN_FOLDER)
    return root
