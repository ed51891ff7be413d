"""Where torch computes (``--device``). No GPU here: the choice itself is tested, on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from speakstream.devices import NoGpu, choose_device, model_dtype
from speakstream.llm.model import LanguageModel
from speakstream.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_auto_takes_the_gpu_when_torch_sees_one_and_the_cpu_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto") == "cpu" and choose_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("auto") == "cuda" and choose_device("cpu") == "cpu"


def test_asking_for_a_gpu_where_there_is_none_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(NoGpu, match="torch sees no CUDA GPU"):
        choose_device("cuda")


def test_on_a_gpu_the_model_takes_half_precision_and_plain_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert model_dtype("cuda") == torch.bfloat16 and model_dtype("cpu") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert model_dtype("cuda") == torch.float16
    on_gpu = LanguageModel(Settings(device="auto"))
    assert on_gpu.device == "cuda" and on_gpu.kernels.name == "off", "the CPU speed-ups stay on the CPU"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert LanguageModel(Settings(device="auto", cpu_kernels="onnx")).kernels.name == "onnx"


@pytest.mark.slow
def test_the_app_asked_for_a_gpu_it_does_not_have_exits_with_a_message() -> None:
    result = subprocess.run(
        [sys.executable, "app.py", "--device", "cuda"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1 and "torch sees no CUDA GPU" in result.stderr
    assert "Traceback" not in result.stderr
