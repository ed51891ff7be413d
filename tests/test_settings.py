"""Settings come from flags, then the environment, then defaults; --help documents each one."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from speakstream.settings import BENCH_KNOBS, FLAGS, Settings, build_parser, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_without_flags_or_environment() -> None:
    assert load_settings([], {}) == Settings()


def test_flag_beats_environment_which_beats_default() -> None:
    env = {"SPEAKSTREAM_MAX_NEW_TOKENS": "64", "SPEAKSTREAM_TEMPERATURE": "0.5"}
    settings = load_settings(["--max-new-tokens", "32"], env)
    assert settings.max_new_tokens == 32
    assert settings.temperature == 0.5
    assert settings.top_p == Settings().top_p


def test_gradio_and_log_variables_are_honoured() -> None:
    env = {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "9000", "GRADIO_SHARE": "true", "LOG_LEVEL": "DEBUG"}
    settings = load_settings([], env)
    assert (settings.host, settings.port, settings.share, settings.log_level) == ("0.0.0.0", 9000, True, "DEBUG")


def test_on_a_space_the_client_is_who_the_spaces_proxy_saw_unless_told_otherwise() -> None:
    assert load_settings([], {"SPACE_ID": "someone/speakstream"}).proxy_hops == 1
    assert load_settings(["--proxy-hops", "0"], {"SPACE_ID": "someone/speakstream"}).proxy_hops == 0
    assert load_settings([], {}).proxy_hops == 0


def test_boolean_flags_turn_on_and_off() -> None:
    assert load_settings(["--share"], {}).share is True
    assert load_settings(["--no-share"], {"GRADIO_SHARE": "1"}).share is False


def test_a_malformed_environment_variable_names_itself() -> None:
    with pytest.raises(SystemExit, match="SPEAKSTREAM_PORT"):
        load_settings([], {"SPEAKSTREAM_PORT": "eighty"})


def test_model_cache_defaults_under_xdg_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert Settings().model_cache_dir == tmp_path / "speakstream"
    assert load_settings([], {"SPEAKSTREAM_MODEL_CACHE": "/srv/models"}).model_cache_dir == Path("/srv/models")


def test_help_lists_about_25_flags_by_stage_and_names_every_other_setting() -> None:
    result = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, check=True)
    flags = [name for names in FLAGS.values() for name in names]
    assert len(flags) <= 26 and len(build_parser()._actions) == len(flags) + 1  # + --help
    for title, names in FLAGS.items():
        assert f"{title}:" in result.stdout
        assert all("--" + name.replace("_", "-") in result.stdout for name in names)
    documented = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    for field in dataclasses.fields(Settings):
        if field.name not in flags:
            assert f"SPEAKSTREAM_{field.name.upper()}" in documented, field.name
            assert field.name in BENCH_KNOBS or f"SPEAKSTREAM_{field.name.upper()}" in result.stdout, field.name


def test_a_setting_without_a_flag_comes_from_the_environment() -> None:
    assert load_settings([], {"SPEAKSTREAM_CHUNK_MAX_CHARS": "80"}).chunk_max_chars == 80
    with pytest.raises(SystemExit):
        load_settings(["--chunk-max-chars", "80"], {})


def test_a_setting_that_is_not_a_finite_number_is_refused_by_name() -> None:
    with pytest.raises(SystemExit) as refused:
        load_settings(["--temperature", "nan"], {"SPEAKSTREAM_RATE_WINDOW": "inf", "SPEAKSTREAM_TOP_P": "nan"})
    assert str(refused.value).splitlines() == [
        "error: --temperature must be a number (got nan)",
        "error: SPEAKSTREAM_TOP_P must be a number (got nan)",
        "error: SPEAKSTREAM_RATE_WINDOW must be a number (got inf)",
    ], "each named where it came from (a flag, or a variable as on a Space or in a container)"
