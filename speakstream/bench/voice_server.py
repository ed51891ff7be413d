"""The voice on its own server: a reply's first audio through ``--tts-endpoint`` against the same
voice in this process.

A SpeakStream voice server (``--speech-api``, its voice cache off) runs in this process on the
same cores, so the difference is what the speech API costs (a request per chunk, the WAV read
as it arrives, two resamplings), not what another machine would add or take away. Each
prompt's reply is written with the same seed both ways; the order alternates.
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
from pathlib import Path

from speakstream.bench.replies import load_prompts
from speakstream.bench.report import median_p90, table
from speakstream.llm.model import LanguageModel, Sampling
from speakstream.local_app import free_port
from speakstream.server import assemble, start
from speakstream.settings import Settings
from speakstream.text.conversation import to_model_messages
from speakstream.voices import VoiceSet, load_voices
from speakstream.voices.endpoint import EndpointVoice, SpeechServer


def bench_voice_server(settings: Settings, prompts_file: Path, limit: int | None) -> None:
    prompts = load_prompts(prompts_file)[:limit]
    settings = dataclasses.replace(settings, voice_cache_mb=0.0, rate_limit=0)
    model = LanguageModel(settings).load()
    voices = load_voices(settings)
    voice = voices.get(None)
    assert voice is not None, "no voice could be loaded"
    port = free_port()
    served = dataclasses.replace(settings, speech_api=True, port=port)
    demo = start(assemble(model, voices, served), server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        remote = EndpointVoice(SpeechServer(f"http://127.0.0.1:{port}"), voice.key)
        ways = {
            f"in this process ({voice.label})": assemble(model, voices, settings).pipeline,
            "through --tts-endpoint, same voice": assemble(
                model, VoiceSet({remote.key: remote}, remote.key), settings
            ).pipeline,
        }
        for pipeline in ways.values():  # warm both ways up
            _first_audio(pipeline, model, settings, "Say hello.", 1)
        first_audio: dict[str, list[float]] = {name: [] for name in ways}
        for index, prompt in enumerate(prompts):
            order = list(ways.items()) if index % 2 == 0 else list(reversed(ways.items()))
            for name, pipeline in order:
                if (seconds := _first_audio(pipeline, model, settings, prompt, 3000 + index)) is not None:
                    first_audio[name].append(seconds)
    finally:
        demo.close()
    names = list(first_audio)
    added = [b - a for a, b in zip(first_audio[names[0]], first_audio[names[1]], strict=False)]
    print(f"{len(prompts)} prompts, the same seed both ways, voice cache off on both sides")
    rows = [[name, median_p90(values, 1000)] for name, values in first_audio.items()]
    rows.append(["added by the endpoint (per prompt)", f"{statistics.median(added) * 1000:.0f} ms median"])
    print(table(["voice", "first audio ms (median / p90)"], rows))


def _first_audio(pipeline, model: LanguageModel, settings: Settings, prompt: str, seed: int) -> float | None:
    messages = [*to_model_messages([], settings.system_prompt), {"role": "user", "content": prompt}]
    sampling = dataclasses.replace(Sampling.from_settings(settings), seed=seed)
    *_, final = pipeline.reply(messages, threading.Event(), pipeline.options(model, sampling=sampling))
    return final.timeline.first_audio
