"""The check the model runs after every token: Stop ends generation, a pause holds it, never for long."""

from __future__ import annotations

import threading

import pytest
import torch

from speakstream.llm.model import ReplyGate

from support import WAIT_SECONDS

IDS = torch.zeros((1, 3), dtype=torch.long)


def test_the_token_gate_holds_while_paused_lets_go_when_cleared_and_ends_on_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("speakstream.llm.model.MAX_PAUSE_SECONDS", WAIT_SECONDS)  # only clearing ends this pause
    stop, pause = threading.Event(), threading.Event()
    gate = ReplyGate(stop, pause)
    pause.set()
    answers: list[bool] = []
    waiting = threading.Thread(target=lambda: answers.append(bool(gate(IDS, None))))
    waiting.start()
    waiting.join(timeout=0.2)
    assert waiting.is_alive(), "the next token waits while the pause is set"
    pause.clear()
    waiting.join(timeout=WAIT_SECONDS)
    assert answers == [False], "then generation goes on"
    stop.set()
    assert bool(gate(IDS, None)) is True, "a set stop ends generation at the next token"


def test_a_pause_nobody_clears_does_not_hold_generation_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("speakstream.llm.model.MAX_PAUSE_SECONDS", 0.05)
    pause = threading.Event()
    pause.set()
    assert bool(ReplyGate(pause=pause)(IDS, None)) is False
