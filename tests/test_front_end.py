"""The page's front end (speakstream/ui/static): every script parses, and the player's
scheduling holds under ``node --test`` (tests/js/)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "speakstream" / "ui" / "static"
NODE = shutil.which("node") or "node"  # (make test installs Node.js)


@pytest.mark.parametrize("script", sorted(STATIC.glob("*.js")), ids=lambda path: path.name)
def test_each_script_of_the_page_parses(script: Path) -> None:
    checked = subprocess.run([NODE, "--check", str(script)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


def test_the_players_scheduling_passes_its_node_tests() -> None:
    tests = sorted(str(path) for path in (ROOT / "tests" / "js").glob("*.test.js"))  # (Node 21+ takes no folder)
    run = subprocess.run([NODE, "--test", *tests], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# pass 0" not in run.stdout, "no tests ran"


def test_no_javascript_is_left_in_python_strings() -> None:
    python = [path for path in (ROOT / "speakstream").rglob("*.py") if "=>" in path.read_text(encoding="utf-8")]
    assert python == [], "JavaScript lives in .js files (the page's in speakstream/ui/static)"
