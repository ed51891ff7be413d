"""Every control a user sets for their replies, declared once.

From this table come the page's widgets (``ui/page.py``), the clamping of what an API caller
sends (``ui/handlers.py``), the types a browser may hand back for each (``ui/browser_storage.py``)
and the start-up check of the operator's default, which is the :class:`~speakstream.settings.Settings`
field of the same name (``settings.py``). A test holds all four to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Control:
    """One control: its name (the setting, the ``/chat`` parameter and the key the browser keeps),
    its label, the type of its value, and for a number its range and step."""

    name: str
    label: str
    kind: type
    low: float | None = None
    high: float | None = None
    step: float | None = None
    reply_choice: bool = True  # False: it changes the page, not the reply
    capped_by_setting: bool = False  # the operator's setting is also the most a user may pick

    @property
    def is_number(self) -> bool:
        return self.kind in (int, float)

    def highest(self, setting: float) -> float:
        """The most a user may pick where the operator's setting is ``setting``."""
        assert self.high is not None
        return min(self.high, setting) if self.capped_by_setting else self.high

    def clamp(self, value: object, setting: float) -> float:
        """``value`` within the range a user may pick; the operator's ``setting`` for what is not a
        finite number."""
        assert self.low is not None
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return setting
        if not math.isfinite(number):
            return setting
        return self.kind(min(max(number, self.low), self.highest(setting)))


# In the order the page shows them.
CONTROLS = (
    Control("voice", "Voice", str),
    Control("speaking_rate", "Speaking rate", float, 0.5, 2.0, 0.05),
    Control("text_only", "Text only (no speech)", bool),
    Control("show_stats", "Show reply timings", bool, reply_choice=False),
    Control("system_prompt", "System prompt", str),
    Control("temperature", "Temperature", float, 0.0, 2.0, 0.05),
    Control("top_p", "Top-p", float, 0.05, 1.0, 0.05),
    Control("max_new_tokens", "Max new tokens", int, 8, 8192, 8, capped_by_setting=True),
    Control("repetition_penalty", "Repetition penalty", float, 1.0, 2.0, 0.05),
    Control("model", "Model", str),
)
BY_NAME = {control.name: control for control in CONTROLS}
NUMBERS = tuple(control for control in CONTROLS if control.is_number)
