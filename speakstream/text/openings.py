"""What replies most often begin with, and the lines the app says itself: the speech worth
making before anyone asks (the voice cache's start-up fill).

``openings.txt`` holds the first chunks, as spoken, that the bundled SmolLM2-135M-Instruct wrote
most often for the benchmark prompts and the page's examples with the default settings, most
frequent first; ``python -m speakstream.bench openings --write`` measures it again. Another model
or system prompt begins differently: its lines are then made for nothing but cost no more than a
second of the voice's time at start.
"""

from __future__ import annotations

from pathlib import Path

from speakstream.text.speech_text import CODE_PHRASES

OPENINGS_FILE = Path(__file__).with_name("openings.txt")


def common_openings(path: Path = OPENINGS_FILE) -> list[str]:
    """The first chunks in ``path``, one a line (``#`` starts a comment)."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def lines_to_keep(language: str) -> list[str]:
    """What a voice speaking ``language`` says before anyone asks: the app's own line for a code
    block, and (in English, the bundled model's language) the common openings."""
    own = [CODE_PHRASES.get(language, CODE_PHRASES["en"])]
    return own + (common_openings() if language == "en" else [])
