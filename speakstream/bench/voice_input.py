"""Speaking to the page, measured in headless Chromium against `python app.py`: the fake
microphone plays spoken prompts (the bundled Piper voice; espeak-ng in several voices and speeds).

For each prompt: the end of its speech (the file's clock, which starts when the page asks for the
microphone) to the transcript shown, and to the reply's first audible sound; the transcript's
word error rate. Then: speaking over a reply, the speech's onset to the player's stop; replies
played while the microphone listens to silence or to noise, and any barge-in they caused; the
server's CPU while 20 tabs (two browsers) listen in conversation mode to a silent room. The
baseline, in the same run: Gradio's own microphone recorder (record, stop, submit), as a Gradio
user first writes it, with the same recognizer and the same reply.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr

from speakstream.bench.browser import probe_script
from speakstream.bench.replies import load_prompts
from speakstream.bench.report import median_p90, table
from speakstream.bench.spoken_prompts import (
    FILE_RATE,
    Said,
    espeak_speech,
    fake_microphone,
    piper_speech,
    write_prompts,
)
from speakstream.local_app import CHROMIUM_ARGS, chromium_path, free_port, start_app, stop_app
from speakstream.settings import Settings

SPOKEN_JS = probe_script("spoken.js")
MICROPHONE_JS = probe_script("microphone.js")
MEDIA_PLAYING_JS = probe_script("media_playing.js")
# espeak-ng's speakers for the second half of the prompts: (voice, words a minute)
ESPEAK = [("en-us", 175), ("en-us", 140), ("en-us", 210), ("en-gb", 170), ("en-us+f3", 160)]
STORY = "Tell me a long story about a dragon and a knight."
IDLE_TABS = 20
TABS_PER_BROWSER = 10
IDLE_SECONDS = 30.0
STOP_AFTER_MS = 150  # the baseline's Stop click, after the speech ended


def spoken_word(word: str) -> str:
    from num2words import num2words

    return num2words(float(word) if "." in word else int(word)) if re.fullmatch(r"\d+(\.\d+)?", word) else word


def normalized(text: str) -> list[str]:
    """Words to compare: lower case, numbers, amounts and percentages spelled out, no punctuation."""
    text = re.sub(r"\$(\d[\d,]*(?:\.\d+)?)", r"\1 dollars", text.lower().replace(",", ""))
    text = text.replace("%", " percent").replace("-", " ")
    words = re.findall(r"\d+(?:\.\d+)?|[a-z']+", text)
    return " ".join(spoken_word(word) for word in words).replace("-", " ").replace(",", "").split()


def word_errors(reference: str, heard: str) -> tuple[int, int]:
    """(word edits from ``reference`` to ``heard``, words in ``reference``)."""
    ref, hyp = normalized(reference), normalized(heard)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1], len(ref)


def spoken(prompts: list[str], every_voice: bool = False) -> list[tuple[str, np.ndarray]]:
    """Each prompt said by Piper, then each by espeak-ng: a voice and speed in turn, or
    (``every_voice``) in each of them."""
    from speakstream.voices import PiperVoice

    piper = PiperVoice().load()
    said = [(text, piper_speech(piper, text)) for text in prompts]
    for index, text in enumerate(prompts):
        voices = ESPEAK if every_voice else [ESPEAK[index % len(ESPEAK)]]
        said += [(text, espeak_speech(text, *voice)) for voice in voices]
    return said


def make_prompts(folder: Path, prompts: list[str]) -> list[tuple[Path, Said]]:
    """The :func:`spoken` prompts, one WAV each."""
    files = []
    for index, (text, samples) in enumerate(spoken(prompts)):
        path = folder / f"prompt-{index:02d}.wav"
        files.append((path, write_prompts(path, [(text, samples)], lead=1.0, gap=25.0)[0]))
    return files


def _recognizer_alone(settings: Settings, files: list[tuple[Path, Said]], prompts: list[str]) -> None:
    """Whisper alone on 2 threads: its time on the files' utterances, and its WER on every prompt
    said by Piper and by each espeak-ng voice (a set three times the page's, so a steadier figure)."""
    from speakstream.hearing.audio_in import RATE, AudioLimits, decode_wav
    from speakstream.hearing.speech_activity import SileroVad
    from speakstream.hearing.transcriber import Transcriber
    from speakstream.hearing.turns import Turn, TurnRules

    recognizer = Transcriber(settings.asr_model, "cpu", 2).load()
    timed = []
    for path, said in files:
        samples = decode_wav(path.read_bytes(), AudioLimits(60))
        utterance = samples[int((said.start - 0.3) * RATE) : int((said.end + 0.2) * RATE)]
        timed.append((recognizer.transcribe(utterance).seconds, len(utterance) / RATE))
    vad, rules = SileroVad(), TurnRules()
    errors = []
    for text, samples in spoken(prompts, every_voice=True):
        turn = Turn(vad.stream(), rules)  # the utterance as the server cuts it from what the page sends
        silence = np.zeros(RATE // 2)
        turn.feed(
            np.concatenate([silence, soxr.resample(samples, FILE_RATE, RATE), silence, silence]).astype(np.float32)
        )
        errors.append(word_errors(text, recognizer.transcribe(turn.utterance()).text))
    print(
        f"  recognizer: {recognizer.label}, alone on 2 threads: {median_p90([t for t, _ in timed], 1000)} ms "
        f"(median / p90), real-time factor {median_p90([t / s for t, s in timed], digits=2)}; "
        f"WER {sum(e for e, _ in errors) / sum(n for _, n in errors):.3f} on {len(errors)} utterances "
        f"(Piper and all {len(ESPEAK)} espeak-ng voices)"
    )


def quiet_room(folder: Path, name: str, level: float) -> Path:
    """A microphone hearing nothing (``level`` 0) or steady noise at ``level`` (RMS), for two minutes."""
    path = folder / f"{name}.wav"
    noise = np.random.default_rng(0).normal(0, level, 120 * FILE_RATE).astype(np.float32)
    soundfile.write(path, noise, FILE_RATE, subtype="PCM_16")
    return path


def bench_voice(settings: Settings, prompts_file: Path, limit: int | None) -> None:
    """The figures of speaking to SpeakStream (see the module's docstring)."""
    import psutil
    from playwright.sync_api import sync_playwright

    from speakstream.bench.speed import settings_env

    prompts = load_prompts(prompts_file)[: limit or 10]
    folder = Path(tempfile.mkdtemp(prefix="speakstream-voice-"))
    files = make_prompts(folder, prompts)
    _recognizer_alone(settings, files, prompts)
    port = free_port()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / "speakstream-bench-voice-app.log"
    with log_path.open("w") as log:
        process = start_app(port, settings_env({"rate_limit": 0}), log)
    url = f"http://127.0.0.1:{port}/"
    try:
        with sync_playwright() as playwright:
            results = [_spoken_prompt(playwright, url, path, said) for path, said in files]
            bargeins = [_barge_in(playwright, url, path, said) for path, said in files[: len(files) // 2]]
            false = [_false_barge_in(playwright, url, quiet_room(folder, "silence", 0.0), p) for p in prompts]
            false += [_false_barge_in(playwright, url, quiet_room(folder, "noise", 0.01), p) for p in prompts]
            idle = _idle_tabs(playwright, url, quiet_room(folder, "idle", 0.0), psutil.Process(process.pid))
    finally:
        stop_app(process)
    baseline = _baseline(settings, files)
    edits = sum(word_errors(r["said"], r["heard"])[0] for r in results)
    total = sum(word_errors(r["said"], r["heard"])[1] for r in results)
    rows = [
        [
            median_p90([r["ended"] for r in results]),
            median_p90([r["shown"] for r in results]),
            median_p90([r["audio"] for r in results]),
            f"{edits / total:.3f}",
            median_p90(bargeins),
            f"{sum(false)} of {len(false)}",
            f"{idle['listening']:.1f}% / {idle['open']:.1f}%",
        ]
    ]
    headers = ["speech end→turn ended ms", "→transcript ms", "speech end→audible ms", "WER", "onset→silent ms"]
    headers += ["false barge-ins", f"server CPU, {IDLE_TABS} tabs listening / open"]
    print(table(headers, rows))
    print(
        f"  baseline, Gradio's recorder (Stop clicked {STOP_AFTER_MS} ms after the speech; the whole reply played): "
        f"speech end→audible {median_p90(baseline)} ms (median / p90) over {len(baseline)} prompts"
    )
    print(f"  (app log: {log_path}; prompts in {folder})")


def _browser(playwright, microphone: Path):
    """Chromium whose microphone plays ``microphone``."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS + fake_microphone(microphone))


def _open(playwright, url: str, microphone: Path):
    """A browser whose microphone plays ``microphone``, and the page open in it."""
    browser = _browser(playwright, microphone)
    return browser, _page(browser, url)


def _page(browser, url: str):
    """A new tab of ``browser`` on the page, its microphone watched by the probe."""
    page = browser.new_page()
    page.goto(url)
    page.get_by_label("Message", exact=True).wait_for()
    page.evaluate(MICROPHONE_JS)
    return page


def _listen(page) -> float:
    """Turn conversation mode on and start listening; the page's clock when capture began (ms)."""
    page.get_by_label("Conversation mode (listens, you can interrupt)").check()
    page.get_by_role("button", name="Talk: speak a message").click()
    page.wait_for_function("window.__mic.at('capture') !== null")
    return page.evaluate("window.__mic.at('capture')")


def _spoken_prompt(playwright, url: str, path: Path, said: Said) -> dict:
    browser, page = _open(playwright, url, path)
    try:
        page.evaluate(SPOKEN_JS)
        capture = _listen(page)
        page.wait_for_function("window.__spoken.audio !== null", timeout=120_000)
        probe = page.evaluate("window.__spoken")
        ended = page.evaluate("window.__mic.at('ended')")
        heard = page.locator("#chat .user").last.inner_text()
    finally:
        browser.close()
    end = capture + said.end * 1000
    result = {"said": said.text, "heard": heard, "shown": probe["shown"] - end, "audio": probe["audio"] - end}
    result["ended"] = ended - end
    print(
        f"  {said.text[:38]:38s} turn ended {result['ended']:4.0f} ms, transcript {result['shown']:5.0f} ms, "
        f"audible {result['audio']:5.0f} ms after the speech; heard {heard!r}"
    )
    return result


def _barge_in(playwright, url: str, path: Path, said: Said) -> float:
    """Ask for a long story, then speak while it plays: the speech's onset to the player's stop (ms)."""
    browser, page = _open(playwright, url, path)
    try:
        box = page.get_by_label("Message", exact=True)
        box.fill(STORY)
        box.press("Enter")
        page.wait_for_function("window.__mic.speaking()", timeout=60_000)
        capture = _listen(page)
        page.wait_for_function("window.__mic.at('barge-in') !== null", timeout=30_000)
        stopped = page.evaluate("window.__mic.at('barge-in')")
        sent = page.evaluate(f"window.__mic.lastBefore('send', {stopped})")  # the gate opened for this speech
        silent = page.evaluate("window.__mic.silent()")
    finally:
        browser.close()
    onset = capture + said.start * 1000
    print(
        f"  barge-in: onset → player stopped {stopped - onset:.0f} ms ({'silent' if silent else 'still sounding'}; "
        f"the page started sending {sent - onset:.0f} ms after the onset)"
    )
    return stopped - onset


def _false_barge_in(playwright, url: str, room: Path, prompt: str) -> int:
    """A reply played to its end while the page listens to ``room``: 1 if it was interrupted."""
    browser, page = _open(playwright, url, room)
    try:
        _listen(page)
        box = page.get_by_label("Message", exact=True)
        box.fill(prompt)
        box.press("Enter")
        page.wait_for_function("window.__mic.speaking()", timeout=60_000)
        page.wait_for_function("window.__mic.playedOrInterrupted()", timeout=180_000)
        interrupted = page.evaluate("window.__mic.at('barge-in') !== null")
        sent = page.evaluate("window.__mic.count('send')")
    finally:
        browser.close()
    outcome = "INTERRUPTED" if interrupted else "played through"
    print(f"  {room.stem:7s} microphone, {prompt[:36]:36s}: {outcome}, the page sent audio {sent} times")
    return int(interrupted)


def _idle_tabs(playwright, url: str, room: Path, server) -> dict[str, float]:
    """The server's CPU (% of one core) while :data:`IDLE_TABS` tabs are open, then listening to
    ``room`` in conversation mode: :data:`TABS_PER_BROWSER` tabs to a browser (a browser each would
    not fit on 2 cores; Chromium starts at most 16 microphone captures in one)."""
    browsers = [_browser(playwright, room) for _ in range(-(-IDLE_TABS // TABS_PER_BROWSER))]
    pages = [_page(browsers[index // TABS_PER_BROWSER], url) for index in range(IDLE_TABS)]

    def busy() -> float:
        before, started = server.cpu_times(), time.monotonic()
        time.sleep(IDLE_SECONDS)
        after = server.cpu_times()
        return 100 * (after.user + after.system - before.user - before.system) / (time.monotonic() - started)

    try:
        opened = busy()
        for page in pages:
            _listen(page)
        listening = busy()
        # The gate's noise floor has come down from where it starts: each tab heard the room.
        heard = sum(page.evaluate("window.speakstreamMicrophone.gate.floor < 1e-4") for page in pages)
        states = {page.evaluate("window.__mic.state()") for page in pages}
        sent = sum(page.evaluate("window.__mic.count('send')") for page in pages)
    finally:
        for browser in browsers:
            browser.close()
    print(
        f"  {IDLE_TABS} tabs: server CPU {opened:.1f}% open, {listening:.1f}% listening "
        f"(microphones {', '.join(sorted(states))}, {heard} hearing the room; audio sent {sent} times)"
    )
    return {"open": opened, "listening": listening}


def _baseline(settings: Settings, files: list[tuple[Path, Said]]) -> list[float]:
    """Speech end → first sound with Gradio's own recorder, stopped the moment the speech ends (ms)."""
    from playwright.sync_api import sync_playwright

    from speakstream.bench.gradio_recorder import recorder_page
    from speakstream.hearing.transcriber import Transcriber
    from speakstream.llm.model import LanguageModel
    from speakstream.server import assemble
    from speakstream.voices import PiperVoice, VoiceSet

    voice = PiperVoice().load()
    app = assemble(
        LanguageModel(settings).load(),
        VoiceSet({"piper": voice}, "piper"),
        settings,
        transcriber=Transcriber(settings.asr_model, "cpu", 2).load(),
    )
    demo = recorder_page(app)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url, results = f"http://127.0.0.1:{port}/", []
    try:
        with sync_playwright() as playwright:
            for path, said in files:
                browser = _browser(playwright, path)
                try:
                    page = browser.new_page()
                    page.add_init_script(MEDIA_PLAYING_JS)
                    page.goto(url)
                    record = page.locator("#recorder").get_by_role("button", name="Record")
                    record.click()
                    # A person clicks Stop a moment after they stop speaking (the file's clock
                    # starts as the recorder asks for the microphone, just after this click).
                    page.wait_for_timeout(said.end * 1000 + STOP_AFTER_MS)
                    page.locator("#recorder").get_by_role("button", name="Stop").click()
                    stopped = page.evaluate("performance.now()")
                    page.wait_for_function("window.__mediaPlaying !== null", timeout=180_000)
                    sound = page.evaluate("window.__mediaPlaying")
                finally:
                    browser.close()
                results.append(sound - stopped + STOP_AFTER_MS)
                print(f"  baseline {said.text[:38]:38s} audible {results[-1]:6.0f} ms after the speech")
    finally:
        demo.close()
    return results
