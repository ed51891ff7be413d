"""Hearing a spoken message: the turn's start and end on synthetic audio, a listening page's
states, the early recognition, and every kind of bad audio (order and state, no clock)."""

from __future__ import annotations

import io
import threading
from concurrent.futures import Future

import numpy as np
import pytest
import soundfile

from speakstream.hearing.audio_in import RATE, AudioLimits, BadAudio, decode_pcm, decode_wav
from speakstream.hearing.listener import GIVE_UP_SECONDS, Listener, Listeners
from speakstream.hearing.speech_activity import FRAME, SileroVad
from speakstream.hearing.transcriber import Transcript, said_within
from speakstream.hearing.turns import FRAME_SECONDS, Turn, TurnRules, holds_speech

LOUD = 0.3


def loudness(frame: np.ndarray) -> float:
    """A stand-in for the voice-activity model: speech wherever the frame is loud."""
    return 1.0 if np.sqrt(np.mean(frame**2)) > 0.05 else 0.0


def burst(seconds: float) -> np.ndarray:
    """A loud tone, a whole number of frames long."""
    frames = round(seconds / FRAME_SECONDS)
    return (LOUD * np.sin(np.arange(frames * FRAME) * 0.3)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds / FRAME_SECONDS) * FRAME, dtype=np.float32)


def states(turn: Turn, samples: np.ndarray) -> list[str]:
    """The turn's state after each frame of ``samples``."""
    return [turn.feed(samples[start : start + FRAME]) for start in range(0, len(samples), FRAME)]


RULES = TurnRules(end_silence=0.64, onset=0.096, before_onset=0.32, max_seconds=5.0)


def test_a_turn_starts_after_the_onset_and_ends_after_the_closing_silence() -> None:
    turn = Turn(loudness, RULES)
    seen = states(turn, np.concatenate([silence(1.0), burst(1.0), silence(1.0)]))
    quiet, speech, end = round(1.0 / FRAME_SECONDS), round(1.0 / FRAME_SECONDS), RULES.frames(RULES.end_silence)
    assert seen[: quiet + 2] == ["quiet"] * (quiet + 2)  # two loud frames are not yet speech
    assert seen[quiet + 2] == "speaking"
    assert seen[quiet + speech + end - 1] == "ended" and seen[quiet + speech + end - 2] == "speaking"
    # The utterance: what came just before the onset, the speech, none of the closing silence.
    assert len(turn.utterance()) == (RULES.frames(RULES.before_onset) - 3 + speech) * FRAME


def test_a_pause_shorter_than_the_end_of_turn_keeps_the_turn_going() -> None:
    turn = Turn(loudness, RULES)
    seen = states(turn, np.concatenate([burst(0.5), silence(0.4), burst(0.5), silence(1.0)]))
    assert "ended" in seen and seen.index("ended") > round(1.4 / FRAME_SECONDS)
    assert np.count_nonzero(np.abs(turn.utterance()) > 0.01) > 0.9 * len(burst(1.0))  # both bursts


def test_a_click_is_not_speech_and_sound_without_speech_never_starts_a_turn() -> None:
    turn = Turn(loudness, RULES)
    click = np.concatenate([silence(0.5), burst(FRAME_SECONDS * 2), silence(2.0)])
    assert set(states(turn, click)) == {"quiet"}


def test_a_turn_longer_than_the_limit_is_refused() -> None:
    assert states(Turn(loudness, RULES), burst(6.0))[-1] == "too_long"


def test_a_turn_the_user_finishes_ends_with_its_speech_or_says_none_was_heard() -> None:
    spoken = Turn(loudness, RULES)
    states(spoken, burst(0.5))
    assert spoken.finish() == "ended" and len(spoken.utterance()) > 0
    unspoken = Turn(loudness, RULES)
    states(unspoken, silence(0.5))
    assert unspoken.finish() == "no_speech"


class Loudness(SileroVad):
    """The listener's model, replaced by :func:`loudness` (the real one is tested on real speech)."""

    def __init__(self) -> None:
        pass

    def stream(self):  # type: ignore[override]
        return loudness


class Recognizer:
    """Recognition started early, by the length of audio it was given; resolves at once."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def __call__(self, samples: np.ndarray) -> Future[Transcript]:
        self.asked.append(len(samples))
        future: Future[Transcript] = Future()
        future.set_result(Transcript(f"{len(samples)} samples", 0.0))
        return future


def pieces(listener: Listener, samples: np.ndarray, size: int = 1600) -> list[str]:
    """The answers to ``samples`` sent in 0.1 s pieces, as the page sends them."""
    return [listener.hear(samples[start : start + size]) for start in range(0, len(samples), size)]


def test_a_listener_answers_speaking_then_ended_and_hands_the_utterance_out_once() -> None:
    listener = Listener(Loudness(), RULES)
    answers = pieces(listener, np.concatenate([silence(0.3), burst(1.0), silence(1.0)]))
    assert "speaking" in answers and answers.count("ended") == 1
    assert answers.index("speaking") < answers.index("ended")
    utterance = listener.take()
    assert utterance is not None and len(utterance.samples) > len(burst(1.0)) and utterance.ended_at > 0
    assert listener.take() is None


def test_sound_without_speech_makes_the_listener_give_up_so_the_page_stops_sending() -> None:
    listener = Listener(Loudness(), RULES)
    answers = pieces(listener, silence(GIVE_UP_SECONDS + 0.2))
    assert answers[-1] == "quiet" and "idle" in answers and listener.take() is None


def test_words_recognized_during_the_pause_that_ended_the_turn_are_used() -> None:
    recognize = Recognizer()
    listener = Listener(Loudness(), RULES, recognize)
    pieces(listener, np.concatenate([burst(1.0), silence(1.0)]))
    utterance = listener.take()
    assert recognize.asked == [len(utterance.samples)]  # once, at the pause, on what became the utterance
    assert utterance.early is not None and utterance.early.result().text == f"{len(utterance.samples)} samples"


def test_words_recognized_during_a_pause_the_user_spoke_on_after_are_not_used() -> None:
    recognize = Recognizer()
    listener = Listener(Loudness(), RULES, recognize)
    pieces(listener, np.concatenate([burst(0.5), silence(0.4), burst(0.5), silence(1.0)]))
    utterance = listener.take()
    assert len(recognize.asked) == 2 and recognize.asked[0] < len(utterance.samples)
    assert utterance.early is not None and recognize.asked[-1] == len(utterance.samples)


def test_a_pause_is_answered_paused_once_and_a_claimed_pause_that_ends_the_turn_is_answered() -> None:
    listener = Listener(Loudness(), RULES, Recognizer())
    answers = pieces(listener, np.concatenate([burst(1.0), silence(0.4)]))
    assert answers.count("paused") == 1 and "ended" not in answers
    pause = listener.claim()
    assert pause is not None and listener.claim() is None  # one answer per pause
    assert listener.decided(pause) is True  # the pause goes on
    answers = pieces(listener, silence(1.0))
    assert "answered" in answers and "ended" not in answers  # the page need not ask again
    utterance = listener.decided(pause)
    assert utterance is not None and utterance is not True and utterance.early is pause.early
    assert len(utterance.samples) == len(pause.samples) and listener.take() is None  # handed out once


def test_a_claimed_pause_the_user_spoke_on_after_is_decided_against() -> None:
    listener = Listener(Loudness(), RULES, Recognizer())
    pieces(listener, np.concatenate([burst(0.5), silence(0.4)]))
    pause = listener.claim()
    assert pause is not None
    pieces(listener, burst(0.3))
    assert listener.decided(pause) is False
    answers = pieces(listener, silence(1.0))
    assert answers.count("paused") == 1 and "ended" in answers  # unclaimed: the page asks at the end
    assert listener.take() is not None


def test_early_recognition_never_queues_up_behind_a_busy_recognizer() -> None:
    from speakstream.hearing.recognition import Recognition

    release = threading.Event()

    class Slow:
        def transcribe(self, samples: np.ndarray, language: str | None = None) -> Transcript:
            release.wait(30)
            return Transcript("", 0.0)

    recognition = Recognition(Slow())  # type: ignore[arg-type]
    first = recognition.soon(burst(0.5))
    assert first is not None and recognition.soon(burst(0.5)) is None  # busy: nothing waits in line
    release.set()
    first.result(30)
    assert recognition.soon(burst(0.5)) is not None


def test_push_to_talk_ends_the_turn_when_the_user_says_so() -> None:
    listener = Listener(Loudness(), RULES)
    pieces(listener, burst(0.5))
    assert listener.hear(silence(0.1), finish=True) == "ended" and listener.take() is not None
    assert listener.hear(silence(0.1), finish=True) == "no_speech"


def test_listeners_are_kept_for_the_most_recently_heard_pages_only() -> None:
    listeners = Listeners(Loudness(), RULES, most=2)
    first = listeners.get("a")
    listeners.get("b")
    listeners.get("c")
    assert len(listeners) == 2 and listeners.get("a") is not first


def wav(samples: np.ndarray, rate: int = RATE, channels: int = 1, subtype: str = "PCM_16") -> bytes:
    out = io.BytesIO()
    data = np.repeat(samples[:, None], channels, axis=1) if channels > 1 else samples
    soundfile.write(out, data, rate, format="WAV", subtype=subtype)
    return out.getvalue()


def test_a_wav_at_any_usual_rate_and_channels_becomes_16_khz_mono() -> None:
    samples = 0.2 * np.sin(np.arange(48_000) * 0.05).astype(np.float32)
    heard = decode_wav(wav(samples, 48_000, channels=2), AudioLimits())
    assert heard.dtype == np.float32 and len(heard) == RATE


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"this is text, not a recording", "not_audio"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 30, "not_audio"),
        (wav(np.zeros(0, np.float32)), "empty"),
        (wav(np.zeros(RATE, np.float32)), "silent"),
        (wav(np.ones(RATE, np.float32)), "clipped"),
        (wav(0.2 * np.ones(4000, np.float32), rate=4000), "sample_rate"),
        (wav(0.2 * np.sin(np.arange(31 * RATE) * 0.05).astype(np.float32)), "too_long"),
        (b"RIFF" + b"\xff" * (AudioLimits().max_bytes + 1), "too_long"),
    ],
    ids=["empty", "text", "broken header", "no samples", "silent", "clipped", "4 kHz", "31 s", "huge"],
)
def test_bad_audio_is_refused_with_a_message_saying_what_to_do(data: bytes, reason: str) -> None:
    with pytest.raises(BadAudio) as refused:
        decode_wav(data, AudioLimits(max_seconds=30))
    assert refused.value.reason == reason and str(refused.value).endswith(".")


def test_the_pages_pieces_must_be_16_bit_pcm_in_base64() -> None:
    assert len(decode_pcm("AAABAA==")) == 2
    for bad in ("not base64!", "AAAA", "A" * 4 * 60 * RATE):  # not base64; 3 bytes; a minute at once
        with pytest.raises(BadAudio):
            decode_pcm(bad)


def espeak(text: str, tmp_path) -> np.ndarray:
    """Real speech, as espeak-ng says it (the package glow-tts needs anyway)."""
    import subprocess

    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
    return decode_wav(path.read_bytes(), AudioLimits())


def test_silero_hears_speech_in_speech_and_none_in_noise_or_tones(tmp_path) -> None:
    vad, rules = SileroVad(), TurnRules()
    noise = np.random.default_rng(0).normal(0, 0.05, 3 * RATE).astype(np.float32)
    assert holds_speech(vad.stream(), espeak("What is the capital of France?", tmp_path), rules)
    assert not holds_speech(vad.stream(), noise, rules)
    assert not holds_speech(vad.stream(), burst(2.0), rules)


def test_the_transcript_follows_the_voices_language_where_the_recognizer_knows_it() -> None:
    from types import SimpleNamespace

    from speakstream.hearing.transcriber import Transcriber

    recognizer = Transcriber("small")
    recognizer.model = SimpleNamespace(model=SimpleNamespace(is_multilingual=True), supported_languages=["en", "de"])
    assert recognizer.language_for("de") == "de" and recognizer.language_for("xx") is None  # None: it detects
    recognizer.model.model.is_multilingual = False  # an English-only model hears English whatever the voice
    assert recognizer.language_for("de") == "en"


def test_text_whisper_places_after_the_audio_is_left_out_of_the_transcript() -> None:
    begin = 1000  # the first timestamp token: 0.00 s, then 0.02 s (2 mel frames) each
    said = [begin, 1, 2, 3, begin + 100]  # <|0.00|> words <|2.00|>
    repeat = [begin + 100, 1, 2, 3, begin + 150]  # <|2.00|> the same words <|3.00|>, in the padding
    assert said_within(said + repeat, begin, frames=200) == [1, 2, 3]  # 2.00 s of audio: the repeat starts after it
    assert said_within(said + repeat, begin, frames=201) == [1, 2, 3, 1, 2, 3]
    unfinished = [begin, 1, 2, begin + 100, begin + 100, 4, 5]  # the last piece has no end yet
    assert said_within(unfinished, begin, frames=200) == [1, 2]
    assert said_within(unfinished, begin, frames=201) == [1, 2, 4, 5]
    assert said_within([begin + 60, 7, 8, begin + 80], begin, frames=100) == [7, 8]  # the first piece is kept
    assert said_within([begin + 60, 7, 8], begin, frames=100) == [7, 8]
