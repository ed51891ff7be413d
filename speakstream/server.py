"""Start-up: settings, logging, loading the models once, building the page, launching it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import gradio as gr

from speakstream.ffmpeg import ensure_ffmpeg
from speakstream.limits import RateLimits
from speakstream.metrics import Metrics, serve_metrics
from speakstream.model import LanguageModel, ModelLoadError, resolve_model_source
from speakstream.pipeline import ReplyPipeline
from speakstream.replay_files import ReplayFiles
from speakstream.settings import Settings, load_settings
from speakstream.ui import ChatApp, build_ui
from speakstream.voices import load_voices

log = logging.getLogger("speakstream")


def configure_logging(level: str) -> None:
    """One log format for the app; chatty HTTP libraries only speak up on warnings."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "httpcore2", "urllib3", "filelock", "asyncio", "matplotlib", "numba"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # Coqui logs a failed model download with a full traceback; the voice notice already says why.
    logging.getLogger("TTS.utils.manage").setLevel(logging.CRITICAL)


def load_pipeline(settings: Settings) -> ReplyPipeline:
    """Load every model once; shared by all sessions for the life of the process."""
    model = LanguageModel(settings).load()
    return ReplyPipeline(model, load_voices(settings), settings)


def create_app(pipeline: ReplyPipeline, settings: Settings, replays: ReplayFiles) -> ChatApp:
    """What every session shares besides the models: the rate limits, the metrics, the replay files."""
    return ChatApp(pipeline, settings, RateLimits(settings.rate_limit, settings.rate_window), Metrics(), replays)


def start(app: ChatApp, **launch: Any) -> gr.Blocks:
    """Build the page for ``app`` and serve it (``launch``: Gradio's launch options), with ``/metrics``."""
    demo = build_ui(app)
    demo.launch(prevent_thread_lock=True, **launch)
    serve_metrics(demo.app, app.metrics)
    return demo


def download_models(settings: Settings) -> int:
    """Fetch and cache every default model and voice, then return (for image builds and offline prep)."""
    failures = 0
    try:
        source = resolve_model_source(settings.llm, bundled=lambda: None)
        log.info("Language model ready: %s", source.origin)
    except ModelLoadError as error:
        log.error("%s", error)
        failures += 1
    voices = load_voices(settings)
    for notice in voices.notices:
        log.error("%s", notice)
    failures += len(voices.voices) < 2
    log.info("Voices ready: %s", ", ".join(voice.label for voice in voices.voices.values()) or "none")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app until interrupted; returns the process exit status."""
    settings = load_settings(argv)
    configure_logging(settings.log_level)
    if settings.download_models:
        return download_models(settings)
    if settings.player == "hls":  # Gradio's streaming audio element encodes with ffmpeg
        ensure_ffmpeg(settings.model_cache_dir / "bin")
    try:
        pipeline = load_pipeline(settings)
    except ModelLoadError as error:
        log.error("%s", error)
        return 1
    app = create_app(pipeline, settings, ReplayFiles(settings.audio_file_max_age))
    try:
        demo = start(app, server_name=settings.host, server_port=settings.port, share=settings.share)
    except OSError as error:
        log.error(
            "Could not serve on %s:%d (%s). Is another app using that port? Try --port %d.",
            settings.host,
            settings.port,
            error,
            settings.port + 1,
        )
        return 1
    if settings.share and not demo.share_url:
        log.warning("No public link could be created (no internet?); still serving on %s", demo.local_url)
    demo.block_thread()  # until Ctrl+C
    return 0
