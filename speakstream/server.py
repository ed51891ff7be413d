"""Start-up: settings, logging, loading the models once, building the page, launching it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from speakstream.audio.replay_files import ReplayFiles
from speakstream.devices import NoGpu, choose_device
from speakstream.hearing.listener import Listeners
from speakstream.hearing.recognition import Recognition
from speakstream.hearing.speech_activity import SileroVad
from speakstream.hearing.transcriber import Transcriber, TranscriberLoadError
from speakstream.hearing.turns import TurnRules
from speakstream.host import describe_host
from speakstream.llm.endpoint import EndpointModel
from speakstream.llm.model import ChatModel, LanguageModel
from speakstream.llm.pool import ModelPool
from speakstream.llm.sources import ModelLoadError, resolve_model_source
from speakstream.metrics import Metrics, serve_metrics
from speakstream.pipeline.reply import ReplyPipeline
from speakstream.pipeline.reply_cache import MOST_REPLIES, ReplyCache
from speakstream.settings import Settings, load_settings
from speakstream.text.limits import RateLimits
from speakstream.text.word_filter import WordFilter
from speakstream.torch_threads import CoreBudget, machine_cores
from speakstream.ui.handlers import ChatApp
from speakstream.ui.own_voice import CLIP_LIMITS
from speakstream.ui.page import build_ui
from speakstream.ui.speech_api import serve_speech_api
from speakstream.voices import VoiceLoadError, VoiceSet, load_voices
from speakstream.voices.cache import SpeechCache
from speakstream.voices.own import OwnVoices, clone_base

log = logging.getLogger("speakstream")


def configure_logging(level: str) -> None:
    """One log format for the app; chatty HTTP libraries only speak up on warnings."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    noisy_loggers = ("httpx", "httpcore", "httpcore2", "urllib3", "filelock", "asyncio", "matplotlib", "numba")
    for noisy in (*noisy_loggers, "pocket_tts"):  # (Pocket TTS logs every chunk it speaks at INFO)
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    # Coqui logs a failed model download with a full traceback; the voice notice already says why.
    logging.getLogger("TTS.utils.manage").setLevel(logging.CRITICAL)


def assemble(
    model: ChatModel,
    voices: VoiceSet,
    settings: Settings,
    replays: ReplayFiles | None = None,
    load: Callable[[str], LanguageModel] | None = None,
    transcriber: Transcriber | None = None,
) -> ChatApp:
    """The app from its loaded models: every shared part is made here, once, and handed to what needs it.

    ``replays``: where whole replies' audio goes (None: to Gradio as samples); ``load``: how the
    model pool loads a model a user picks (default: from its source); ``transcriber``: the loaded
    speech recognizer (None: voice input is off).
    """
    word_filter = WordFilter(settings.blocked_word_list)
    cores = CoreBudget(machine_cores(), settings.threads, settings.share_cores)
    metrics = Metrics()
    metrics.voices_waiting.set_function(lambda: cores.voices_waiting)
    speech = SpeechCache(int(settings.voice_cache_mb * 1_000_000), metrics)
    metrics.voice_cache_bytes.set_function(lambda: speech.bytes)
    replies = ReplyCache(MOST_REPLIES if settings.reply_cache != "off" else 0, metrics)
    recognition = listeners = None
    if transcriber is not None:
        recognition = Recognition(transcriber)
        rules = TurnRules(end_silence=settings.end_of_turn, max_seconds=settings.max_utterance_seconds)
        listeners = Listeners(SileroVad(), rules, recognition.soon)
        metrics.listening.set_function(lambda: len(listeners))
    own_voices = None
    if settings.max_own_voices and not settings.text_only and clone_base(voices.offered, None):
        own_voices = OwnVoices(settings.max_own_voices, cores)
        metrics.own_voices.set_function(lambda: len(own_voices))
    return ChatApp(
        pipeline=ReplyPipeline(settings, voices, speech, word_filter, cores, replies),
        models=ModelPool(settings, model, load),
        voices=voices,
        word_filter=word_filter,
        settings=settings,
        limits=RateLimits(settings.rate_limit, settings.rate_window),
        metrics=metrics,
        replays=replays,
        recognition=recognition,
        listeners=listeners,
        own_voices=own_voices,
    )


def load_transcriber(settings: Settings, device: str) -> Transcriber | None:
    """The speech recognizer ``--asr-model`` names, loaded (None: voice input is off, by choice or
    because none could be loaded)."""
    if settings.asr_model == "off":
        return None
    try:
        transcriber = Transcriber(settings.asr_model, device, machine_cores()).load()
    except TranscriberLoadError as error:
        log.error("%s; voice input is off", error)
        return None
    log.info("Speech recognizer: %s", transcriber.label)
    return transcriber


def start(app: ChatApp, **launch: Any) -> gr.Blocks:
    """Build the page for ``app`` and serve it (``launch``: Gradio's launch options), with ``/metrics``."""
    demo = build_ui(app)
    # No upload larger than a clip for "Your voice" can be (refused at the door, before it is stored).
    launch = {"max_file_size": CLIP_LIMITS.max_bytes, **launch}
    demo.launch(prevent_thread_lock=True, state_session_capacity=app.settings.max_sessions, **launch)
    serve_metrics(demo.app, app.metrics)
    if app.settings.speech_api:
        serve_speech_api(demo.app, app)
    return demo


def download_models(settings: Settings) -> int:
    """Fetch and cache the start-up model, the listed models, the voices and the speech recognizer,
    then return (for image builds and offline prep); exits non-zero when any could not be fetched."""
    failures = 0
    for spec in dict.fromkeys([settings.llm, *settings.model_names]):
        try:
            source = resolve_model_source(spec, bundled=lambda: None)
            log.info("Language model ready: %s", source.origin)
        except ModelLoadError as error:
            log.error("%s", error)
            failures += 1
    voices = load_voices(settings, machine_cores())
    for notice in voices.notices:
        log.error("%s", notice)
    failures += len(voices.voices) < 2
    fetched = []
    for name in voices.offered:
        try:
            voices.request(name).result()  # fetched into the hub's cache as it loads
            fetched.append(name)
        except VoiceLoadError as error:
            log.error("%s", error)
            failures += 1
    ready = [voice.label for voice in voices.voices.values()] + [voices.label(name) for name in fetched]
    log.info("Voices ready: %s", ", ".join(ready) or "none")
    transcriber = load_transcriber(settings, "cpu")  # faster-whisper keeps what it fetched in the hub's cache
    failures += settings.asr_model != "off" and (transcriber is None or bool(transcriber.notice))
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the app until interrupted; returns the process exit status."""
    settings = load_settings(argv)
    configure_logging(settings.log_level)
    if settings.download_models:
        return download_models(settings)
    try:
        device = choose_device(settings.device)
    except NoGpu as error:
        log.error("%s", error)
        return 1
    log.info("Host: %s", describe_host().line())
    try:
        # Loaded once, shared by every session (or served elsewhere)
        model = EndpointModel(settings).load() if settings.llm_endpoint else LanguageModel(settings).load()
    except ModelLoadError as error:
        log.error("%s", error)
        return 1
    voices = load_voices(settings, machine_cores())
    transcriber = load_transcriber(settings, device)
    app = assemble(model, voices, settings, ReplayFiles(settings.audio_file_max_age), transcriber=transcriber)
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
    threading.Thread(target=app.pipeline.keep_common_speech, name="speakstream-voice-cache", daemon=True).start()
    if settings.share and not demo.share_url:
        log.warning("No public link could be created (no internet?); still serving on %s", demo.local_url)
    demo.block_thread()  # until Ctrl+C
    return 0
