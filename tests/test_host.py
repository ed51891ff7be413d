"""Every figure names its host: the CPU, its vector extensions, its cores, the kernels torch runs, memory read speed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from speakstream import host
from speakstream.host import Host, cpu_extensions, cpu_model

X86 = "processor : 0\nmodel name : AMD EPYC 7B13\nflags : fpu sse avx avx2 fma avx512f avx512_vnni amx_tile\n"
ARM = "processor : 0\nFeatures : fp asimd evtstrm aes asimddp i8mm\nCPU part : 0xd0c\n"


@pytest.mark.parametrize(
    ("cpuinfo", "model", "extensions"),
    [(X86, "AMD EPYC 7B13", ("AVX2", "AVX-512", "AVX512-VNNI", "AMX")), (ARM, None, ("NEON", "NEON-dot", "I8MM"))],
)
def test_the_cpu_and_its_vector_extensions_are_named(
    monkeypatch: pytest.MonkeyPatch, cpuinfo: str, model: str | None, extensions: tuple[str, ...]
) -> None:
    monkeypatch.setattr(host, "_cpuinfo", lambda: cpuinfo)
    assert cpu_extensions() == extensions
    if model:
        assert cpu_model() == model


def test_the_host_line_says_everything_a_figure_depends_on() -> None:
    line = Host("AMD EPYC", ("AVX2",), 2, "AVX2", 8.04).line()
    assert line == "AMD EPYC (AVX2) · 2 cores · torch kernels AVX2 · 8.0 GB/s read"
    assert Host("AMD EPYC", ("AVX2",), 2, "AVX2", 8.0).key() == Host("AMD EPYC", ("AVX2",), 2, "AVX2", 30.0).key()
    assert host.read_bandwidth(repeats=1) > 0


@pytest.mark.skipif("AVX-512" not in cpu_extensions(), reason="needs an AVX-512 CPU to lower")
def test_a_fast_host_can_run_torchs_avx2_code_to_stand_in_for_a_slower_one() -> None:
    probe = "from speakstream.host import torch_kernels; print(torch_kernels())"
    env = {"ATEN_CPU_CAPABILITY": "avx2", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "AVX2"
