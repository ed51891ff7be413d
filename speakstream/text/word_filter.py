"""Optional word list for public deployments: refuse it in messages, mask it in replies."""

from __future__ import annotations

import re
from collections.abc import Iterable


class WordFilter:
    """Whole words from ``words``, case-insensitive; empty means no filtering (the default)."""

    def __init__(self, words: Iterable[str]) -> None:
        cleaned = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
        self._pattern = (
            re.compile(r"\b(?:" + "|".join(re.escape(w) for w in cleaned) + r")\b", re.IGNORECASE) if cleaned else None
        )

    def blocks(self, text: str) -> bool:
        return bool(self._pattern and self._pattern.search(text))

    def mask(self, text: str) -> str:
        """The text with every listed word replaced by asterisks of the same length."""
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: "*" * len(m.group(0)), text)
