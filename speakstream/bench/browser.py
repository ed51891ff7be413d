"""What a person perceives, measured in headless Chromium against `python app.py`.

For each prompt: Enter to the first chat text, Enter to the first audible sound, and
playback stalls (silences of 150 ms or more before the reply's audio has all played); then,
once per prompt, Stop pressed while the reply speaks, to silence; then, once per prompt, the
page's main-thread time over a reply (Chromium's counters). Sound is audible when the
player's analyser sees it; a stall is a segment scheduled after the one before had ended;
the transport is from the server handing out the first segment (its clock, the same
machine's) to that sound. Needs Playwright and Debian's Chromium (the test extras).
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from speakstream.bench.replies import load_prompts
from speakstream.bench.report import median_p90, table
from speakstream.local_app import CHROMIUM_ARGS, chromium_path, free_port, start_app, stop_app
from speakstream.settings import Settings


def probe_script(name: str) -> str:
    """A script the bench runs in the page (``speakstream/bench/probes``)."""
    return resources.files("speakstream.bench").joinpath("probes", name).read_text(encoding="utf-8")


PROBE_JS = probe_script("probe.js")
STALLS_JS = probe_script("stalls.js")
TRANSPORT_JS = probe_script("transport.js")
STOP_JS = probe_script("stop_to_silence.js")
PLAYED_JS = probe_script("played.js")
REPLIED_JS = probe_script("replied.js")
HEARD_JS = probe_script("heard.js")
MEASURED_JS = probe_script("measured.js")

# Chromium's main-thread counters (seconds): all tasks, and of those script, style and layout.
MAIN_THREAD_COUNTERS = ("TaskDuration", "ScriptDuration", "RecalcStyleDuration", "LayoutDuration")


def _ask(page, url: str, prompt: str) -> None:
    """Open the page, start the probe, and send ``prompt`` with Enter (the moment timed from)."""
    page.goto(url)
    box = page.get_by_label("Message", exact=True)
    box.wait_for()
    page.evaluate(PROBE_JS)
    box.fill(prompt)
    box.press("Enter")


def _measure(page, url: str, prompt: str) -> dict:
    _ask(page, url, prompt)
    page.wait_for_function(REPLIED_JS, timeout=180_000)
    spoken = float(re.search(r"audio ([\d.]+) s", page.locator("#stats").inner_text()).group(1))
    page.wait_for_function(PLAYED_JS, timeout=(spoken + 60) * 1000)
    probe = page.evaluate(MEASURED_JS)
    probe["stalls"] = page.evaluate(STALLS_JS)
    transport = page.evaluate(TRANSPORT_JS)
    gaps = [s["ms"] / 1000 for s in probe["stalls"] if s["at"] < spoken - 0.3]
    if os.environ.get("SPEAKSTREAM_BENCH_DEBUG"):
        print("    stalls:", probe["stalls"])
    return {"text": probe["text"], "audio": probe["audio"], "transport": transport, "gaps": gaps, "spoken": spoken}


def _stop_to_silence(page, url: str, prompt: str) -> float:
    """Send ``prompt``, press Stop once its reply has spoken for a second, and time the silence."""
    _ask(page, url, prompt)
    page.wait_for_function(HEARD_JS, timeout=60_000)
    page.wait_for_timeout(1000)
    return page.evaluate(STOP_JS)


def _main_thread(page, url: str, prompt: str) -> dict[str, float]:
    """The page's main-thread time over one reply, from Enter until its audio has played, by
    Chromium's own counters (the probe is not running: its polling would be counted)."""
    page.goto(url)
    box = page.get_by_label("Message", exact=True)
    box.wait_for()
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")

    def counters() -> dict[str, float]:
        return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}

    before = counters()
    box.fill(prompt)
    box.press("Enter")
    page.wait_for_function(REPLIED_JS, polling=250, timeout=180_000)
    page.wait_for_function(PLAYED_JS, polling=250, timeout=180_000)
    after = counters()
    busy = {name: after[name] - before[name] for name in MAIN_THREAD_COUNTERS}
    return {"seconds": after["Timestamp"] - before["Timestamp"], **busy}


def bench_browser(settings: Settings, prompts_file: Path, limit: int | None, runs: int) -> None:
    """Enter -> first text and -> first audible sound in Chromium, against `python app.py`.

    Each reply gets a new browser context, so nothing a previous reply left in the browser is
    restored into the chat.
    """
    from speakstream.bench.speed import settings_env

    prompts = load_prompts(prompts_file)[:limit]
    # One person asking again and again: the per-address rate limit is not what is measured.
    results, stops, busy = _browse(prompts, runs, settings_env({"rate_limit": 0}))
    rows = [
        [
            median_p90([r["text"] for r in results]),
            median_p90([r["audio"] for r in results]),
            median_p90([r["transport"] for r in results]),
            str(sum(len(r["gaps"]) for r in results)),
            f"{sum(sum(r['gaps']) for r in results):.2f}",
            str(sum(bool(r["gaps"]) for r in results)),
            str(len(results)),
            median_p90(stops),
            median_p90([b["TaskDuration"] * 1000 for b in busy]),
            f"{100 * sum(b['TaskDuration'] for b in busy) / sum(b['seconds'] for b in busy):.1f}",
        ]
    ]
    headers = ["Enter→text ms", "Enter→audible ms", "server→audible ms", "stalls", "stall s"]
    headers += ["replies with stalls", "replies", "Stop→silence ms", "page main thread ms/reply", "% busy"]
    print(table(headers, rows))


def _browse(prompts: list[str], runs: int, env: dict[str, str]) -> tuple[list[dict], list[float], list[dict]]:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    port = free_port()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / "speakstream-bench-app.log"
    with log_path.open("w") as log:
        process = start_app(port, env, log)
    url = f"http://127.0.0.1:{port}/"
    results, stops, busy = [], [], []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            for prompt in prompts:
                for _ in range(runs):
                    context = browser.new_context()
                    result = _measure(context.new_page(), url, prompt)
                    context.close()
                    results.append(result)
                    print(
                        f"  {prompt[:40]:40s} first text {result['text'] or 0:6.0f} ms, first audible "
                        f"{result['audio'] or 0:6.0f} ms (server→audible {result['transport'] or 0:4.0f}), "
                        f"{len(result['gaps'])} gaps ({sum(result['gaps']):.2f} s), "
                        f"{result['spoken']:.1f} s spoken"
                    )
            for prompt in prompts:
                context = browser.new_context()
                try:
                    stops.append(_stop_to_silence(context.new_page(), url, prompt))
                except PlaywrightError as error:  # one reply that never spoke does not lose the run's figures
                    print(f"  Stop → silence not measured for {prompt[:40]!r}: {str(error).splitlines()[0]}")
                context.close()
            print(f"  Stop → silence: {', '.join(f'{ms:.0f}' for ms in stops)} ms")
            for prompt in prompts:
                context = browser.new_context()
                busy.append(_main_thread(context.new_page(), url, prompt))
                context.close()
                figures = ", ".join(f"{name} {busy[-1][name] * 1000:.0f}" for name in MAIN_THREAD_COUNTERS)
                print(f"  {prompt[:40]:40s} main thread ms: {figures} over {busy[-1]['seconds']:.1f} s")
            browser.close()
    finally:
        stop_app(process)
    print(f"  (app log: {log_path})")
    return results, stops, busy
