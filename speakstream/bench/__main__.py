"""python -m speakstream.bench [SECTION ...]: print the figures; settings come from SPEAKSTREAM_* variables.

Every run starts with the host's line (CPU, vector extensions, cores, torch's kernels, memory
read speed). ``--isa avx2``, ``--cores 1`` and ``--load N`` make a fast host stand in for a
slower one: torch, oneDNN, MKL and CTranslate2 run their AVX2 code, the bench and the apps it
starts run on fewer cores, and N processes stream memory meanwhile (a host with less bandwidth
to spare).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from speakstream.bench.micro import bench_chunker, bench_voices
from speakstream.bench.replies import DEFAULT_PROMPTS, bench_replies
from speakstream.server import configure_logging
from speakstream.settings import load_settings

SECTIONS = ("chunker", "voices", "engines", "speed", "replies", "browser")
EMULATED = "SPEAKSTREAM_BENCH_EMULATED"  # set in the bench re-started with a lower instruction set
# A memory-bound competitor: copies 256 MB back and forth until killed (or for an hour at most).
MEMORY_LOAD = (
    "import time, numpy as np\n"
    "a = np.ones(1 << 26, dtype=np.float32); b = np.empty_like(a); end = time.monotonic() + 3600\n"
    "while time.monotonic() < end: np.copyto(b, a); np.copyto(a, b)\n"
)


LONG_SECTIONS = ("load", "sizes", "voice", "cache", "endpoint", "replicas", "pocket")  # run only when named


def isa_env(isa: str) -> dict[str, str]:
    """Environment that makes torch, oneDNN, MKL and CTranslate2 (Whisper) run their code for
    ``isa`` (e.g. avx2), not the best here.

    (ONNX Runtime, which Piper and ``--cpu-kernels onnx`` use, picks its kernels by CPUID: no
    variable lowers it, so its figures stay those of this CPU.)
    """
    isa_name = isa.upper()
    return {
        "ATEN_CPU_CAPABILITY": isa.lower(),
        "ONEDNN_MAX_CPU_ISA": isa_name,
        "MKL_ENABLE_INSTRUCTIONS": isa_name,
        "CT2_FORCE_CPU_ISA": isa_name,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m speakstream.bench", description=__doc__)
    parser.add_argument(
        "sections",
        nargs="*",
        metavar="SECTION",
        help=f"any of {', '.join(SECTIONS + LONG_SECTIONS)} (default: {', '.join(SECTIONS)})",
    )
    parser.add_argument("--replies", type=int, default=300, help="load, cache: replies one after another")
    parser.add_argument(
        "--write-openings", action="store_true", help="cache: save the common first chunks for the start-up fill"
    )
    parser.add_argument("--users", type=int, default=8, help="load, replicas: users at once")
    parser.add_argument("--minutes", type=float, default=2.0, help="load, replicas: how long the users keep asking")
    parser.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS, help="one prompt a line")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    parser.add_argument("--runs", type=int, default=3, help="browser runs per prompt")
    parser.add_argument("--llama-bench", type=Path, default=None, help="engines: a llama-bench binary, the reference")
    parser.add_argument("--isa", default=None, help="emulate a host with this instruction set (e.g. avx2)")
    parser.add_argument("--cores", type=int, default=None, help="emulate a host with this many cores")
    parser.add_argument("--load", type=int, default=0, help="emulate a busier host: processes streaming memory")
    parser.add_argument(
        "--untrained-glow-tts",
        action="store_true",
        help="glow-tts at the released shapes with random weights (its speed, never its sound), "
        "for machines that cannot fetch the released voice",
    )
    parser.add_argument(
        "--untrained-pocket",
        action="store_true",
        help="Pocket TTS's English model at its released shape with random weights (its speed, never its sound) "
        "as the voice pocket/english/alba, the default one, for machines that cannot fetch the released model",
    )
    args = parser.parse_args(argv)
    unknown = set(args.sections) - set(SECTIONS + LONG_SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    if args.isa and not os.environ.get(EMULATED):  # the instruction set is chosen before torch starts
        env = {**os.environ, **isa_env(args.isa), EMULATED: "1"}
        raise SystemExit(subprocess.call([sys.executable, "-m", "speakstream.bench", *(argv or sys.argv[1:])], env=env))
    if args.cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
    competitors = [subprocess.Popen([sys.executable, "-c", MEMORY_LOAD]) for _ in range(args.load)]
    try:
        run(args)
    finally:
        for competitor in competitors:
            competitor.kill()


def run(args: argparse.Namespace) -> None:
    from speakstream.host import describe_host

    emulated = [f"--isa {args.isa}"] * bool(args.isa) + [f"--cores {args.cores}"] * bool(args.cores)
    emulated += [f"--load {args.load}"] * bool(args.load)
    print(f"host: {describe_host().line()}" + (f" (emulated: {' '.join(emulated)})" if emulated else ""))
    if args.untrained_glow_tts:
        from speakstream.bench.untrained_coqui import install_untrained_glow_tts

        home = Path(tempfile.mkdtemp(prefix="speakstream-tts-"))
        install_untrained_glow_tts(home)
        os.environ["TTS_HOME"] = str(home)  # for this process and the apps it starts
        print(f"glow-tts: untrained, at the released shapes, in {home}")
    if args.untrained_pocket:
        from huggingface_hub import constants

        from speakstream.bench.untrained_pocket import install_untrained_pocket

        home = Path(tempfile.mkdtemp(prefix="speakstream-hf-"))
        os.environ["HF_HOME"] = str(home)  # for the apps it starts
        constants.HF_HUB_CACHE = str(home / "hub")  # and this process (its hub library read HF_HOME already)
        install_untrained_pocket(["english"], {"english": ["alba"]})
        for name in ("VOICE", "VOICES"):
            os.environ.setdefault(f"SPEAKSTREAM_{name}", "pocket/english/alba")
        voice = os.environ["SPEAKSTREAM_VOICE"]
        print(f"Pocket TTS english: untrained, at the released shape, in {home}; voice {voice}")
    # Speech kept from one run would make the next run's first audio faster than a new reply's:
    # every section measures without the voice cache (here and in the apps it starts) but `cache`.
    os.environ.setdefault("SPEAKSTREAM_VOICE_CACHE_MB", "0")
    print(f"voice cache: {os.environ['SPEAKSTREAM_VOICE_CACHE_MB']} MB (SPEAKSTREAM_VOICE_CACHE_MB)")
    settings = load_settings([])
    configure_logging("WARNING")
    for name in args.sections or SECTIONS:
        print(f"\n== {name} ==")
        if name == "chunker":
            bench_chunker(settings)
        elif name == "voices":
            bench_voices(settings)
        elif name == "engines":
            from speakstream.bench.engines import bench_engines

            bench_engines(settings, llama_bench=args.llama_bench)
        elif name == "speed":
            from speakstream.bench.speed import bench_speed

            bench_speed(settings, args.prompts, args.limit)
        elif name == "replies":
            bench_replies(settings, args.prompts, args.limit)
        elif name == "sizes":
            from speakstream.bench.sizes import bench_sizes

            bench_sizes(settings)
        elif name == "voice":
            from speakstream.bench.voice_input import bench_voice

            bench_voice(settings, args.prompts, args.limit)
        elif name == "cache":
            from speakstream.bench.voice_cache import bench_voice_cache

            bench_voice_cache(settings, args.prompts, args.limit, args.replies, args.write_openings)
        elif name == "endpoint":
            from speakstream.bench.voice_server import bench_voice_server

            bench_voice_server(settings, args.prompts, args.limit)
        elif name == "replicas":
            from speakstream.bench.replicas import bench_replicas

            bench_replicas(settings, args.prompts, args.limit, args.users, args.minutes)
        elif name == "load":
            from speakstream.bench.load import bench_load

            bench_load(args.prompts, args.limit, args.users, args.minutes, args.replies)
        elif name == "pocket":
            from speakstream.bench.pocket_voices import bench_pocket

            bench_pocket(settings)
        else:
            from speakstream.bench.browser import bench_browser

            bench_browser(settings, args.prompts, args.limit, args.runs)


if __name__ == "__main__":
    main()
