"""python -m speakstream.bench [SECTION ...]: print the figures; settings come from SPEAKSTREAM_* variables."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from speakstream.bench.micro import bench_chunker, bench_voices
from speakstream.bench.replies import DEFAULT_PROMPTS, bench_replies
from speakstream.server import configure_logging
from speakstream.settings import load_settings

SECTIONS = ("chunker", "voices", "speed", "replies", "browser")
LONG_SECTIONS = ("load", "sizes")  # run only when named


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m speakstream.bench", description=__doc__)
    parser.add_argument(
        "sections",
        nargs="*",
        metavar="SECTION",
        help=f"any of {', '.join(SECTIONS + LONG_SECTIONS)} (default: {', '.join(SECTIONS)})",
    )
    parser.add_argument("--replies", type=int, default=300, help="load: replies one after another")
    parser.add_argument("--users", type=int, default=8, help="load: users at once")
    parser.add_argument("--minutes", type=float, default=2.0, help="load: how long the users keep asking")
    parser.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS, help="one prompt a line")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    parser.add_argument("--runs", type=int, default=3, help="browser runs per prompt")
    parser.add_argument(
        "--players", default="hls,webaudio", help="browser: the players measured, comma-separated (hls, webaudio)"
    )
    parser.add_argument(
        "--untrained-glow-tts",
        action="store_true",
        help="glow-tts at the released shapes with random weights (its speed, never its sound), "
        "for machines that cannot fetch the released voice",
    )
    args = parser.parse_args(argv)
    unknown = set(args.sections) - set(SECTIONS + LONG_SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    if args.untrained_glow_tts:
        from speakstream.bench.untrained_coqui import install_untrained_glow_tts

        home = Path(tempfile.mkdtemp(prefix="speakstream-tts-"))
        install_untrained_glow_tts(home)
        os.environ["TTS_HOME"] = str(home)  # for this process and the apps it starts
        print(f"glow-tts: untrained, at the released shapes, in {home}")
    settings = load_settings([])
    configure_logging("WARNING")
    for name in args.sections or SECTIONS:
        print(f"\n== {name} ==")
        if name == "chunker":
            bench_chunker(settings)
        elif name == "voices":
            bench_voices(settings)
        elif name == "speed":
            from speakstream.bench.speed import bench_speed

            bench_speed(settings, args.prompts, args.limit)
        elif name == "replies":
            bench_replies(settings, args.prompts, args.limit)
        elif name == "sizes":
            from speakstream.bench.sizes import bench_sizes

            bench_sizes(settings)
        elif name == "load":
            from speakstream.bench.load import bench_load

            bench_load(args.prompts, args.limit, args.users, args.minutes, args.replies)
        else:
            from speakstream.bench.browser import bench_browser

            bench_browser(settings, args.prompts, args.limit, args.runs, args.players.split(","))


if __name__ == "__main__":
    main()
