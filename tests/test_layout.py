"""The package's layout shows the data flow: one folder per stage, and no import runs back up."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "speakstream"
# The stages in the order a message and its reply flow through them (the spoken message heard
# first); each may use the ones before it.
STAGES = ["hearing", "llm", "text", "voices", "audio", "pipeline", "ui"]
# Used by every stage, using none: configuration, the user's controls, threads, devices, metrics, loading on a pick.
SHARED = {"settings", "controls", "torch_threads", "devices", "host", "metrics", "load_once"}
# Assembly and tools, above the stages: start-up, the benchmarks, running the app (and the
# README's page servers behind nginx) locally.
ABOVE = {"server", "bench", "local_app", "local_cluster"}


def imported_parts(path: Path) -> set[str]:
    """The top-level parts of speakstream that ``path`` imports (``speakstream.llm.model`` -> ``llm``)."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("speakstream."):
            parts.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            parts |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("speakstream.")}
    return parts


def part_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_every_module_belongs_to_a_stage_or_is_shared_or_above_them() -> None:
    parts = {part_of(path) for path in PACKAGE.rglob("*.py")} - {"__init__"}
    assert parts == set(STAGES) | SHARED | ABOVE


def test_no_stage_imports_a_later_stage_and_shared_modules_import_no_stage() -> None:
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        part = part_of(path)
        if part in ABOVE or part == "__init__":
            continue
        for used in imported_parts(path):
            allowed = used in SHARED or (part in STAGES and used in STAGES and STAGES.index(used) <= STAGES.index(part))
            if part in SHARED:
                allowed = (used in SHARED and used != part) or used == part
            if not allowed:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {used}")
    assert wrong == []
