"""Audio segments: one rate for the whole stream, no click at a seam, the player's lead and gaps."""

from __future__ import annotations

import numpy as np
import pytest

from speakstream.audio.level import KNEE, MOST_GAIN, SPEECH_LEVEL, gain_for, speech_level, with_gain
from speakstream.audio.segments import FADE_SECONDS, from_first_sound, resample, with_fades
from speakstream.pipeline.timeline import Timeline

RATE = 22050


def tone(seconds: float, rate: int, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * 16000).astype(np.int16)


def phrase(amplitude: float, pause_seconds: float = 0.0) -> np.ndarray:
    """Two "words" of a tone at ``amplitude`` (full scale 1), ``pause_seconds`` of silence between."""
    word = tone(0.3, RATE).astype(np.float64) / 16000 * amplitude * 32767
    return np.concatenate([word, np.zeros(int(pause_seconds * RATE)), word]).astype(np.int16)


@pytest.mark.parametrize("amplitude", [0.05, 0.2, 0.6])
def test_quiet_and_loud_speech_is_brought_to_one_level_and_pauses_do_not_count(amplitude: float) -> None:
    for pause in (0.0, 1.0):
        samples = phrase(amplitude, pause)
        assert speech_level(with_gain(samples, gain_for(samples, RATE)), RATE) == pytest.approx(SPEECH_LEVEL, rel=0.01)


def test_peaks_lifted_past_full_scale_are_rounded_off_below_it_in_order_and_the_rest_is_untouched() -> None:
    spiky = phrase(0.05)
    spiky[100:103] = [9000, 16000, 30000]
    gain = gain_for(spiky, RATE)
    leveled = with_gain(spiky, gain).astype(np.int32)
    assert 32000 < leveled[102] <= 32767 and leveled[100] < leveled[101] < leveled[102]
    calm = np.abs(spiky.astype(np.float64) * gain) < KNEE * 32768
    assert np.abs(leveled[calm] - spiky[calm] * gain).max() <= 1


def test_a_faint_sound_is_raised_only_so_far() -> None:
    assert gain_for(phrase(0.012), RATE) == MOST_GAIN


def test_silence_stays_silent() -> None:
    for samples in (np.zeros(RATE, dtype=np.int16), np.full(RATE, 200, dtype=np.int16), np.zeros(0, dtype=np.int16)):
        assert gain_for(samples, RATE) == 1.0
        assert with_gain(samples, 1.0) is samples


def test_resampling_keeps_the_duration_and_the_pitch() -> None:
    out = resample(tone(1.0, 16000), 16000, RATE)
    assert out.dtype == np.int16 and out.size == pytest.approx(RATE, abs=2)
    spectrum = np.abs(np.fft.rfft(out.astype(np.float32)))
    assert np.argmax(spectrum) * RATE / out.size == pytest.approx(440, abs=2)


def test_the_same_rate_or_nothing_is_passed_through_untouched() -> None:
    samples = tone(0.1, RATE)
    assert resample(samples, RATE, RATE) is samples
    assert resample(np.zeros(0, dtype=np.int16), 16000, RATE).size == 0


def test_fades_silence_both_ends_and_leave_the_middle() -> None:
    samples = np.full(RATE, 10000, dtype=np.int16)
    faded = with_fades(samples, RATE)
    ramp = int(RATE * FADE_SECONDS)
    assert faded[0] == 0 and abs(int(faded[-1])) < 10000 / ramp + 1
    assert np.all(np.diff(faded[:ramp].astype(int)) >= 0), "fades in"
    assert np.array_equal(faded[ramp:-ramp], samples[ramp:-ramp])
    assert faded.dtype == np.int16 and faded.size == samples.size


def test_a_segment_shorter_than_two_fades_is_faded_over_its_halves() -> None:
    assert with_fades(np.full(4, 1000, dtype=np.int16), RATE).tolist() == [0, 500, 500, 0]
    assert with_fades(np.full(1, 1000, dtype=np.int16), RATE).tolist() == [1000]


def test_a_reply_starts_a_fade_before_its_first_sound_and_silence_alone_is_kept() -> None:
    quiet = np.zeros(RATE // 10, dtype=np.int16)
    samples = np.concatenate([quiet, tone(0.5, RATE)])
    start = from_first_sound(samples, RATE)
    assert start.size == pytest.approx(samples.size - quiet.size + RATE * FADE_SECONDS, abs=2)
    assert np.array_equal(start[-RATE // 4 :], samples[-RATE // 4 :])
    assert from_first_sound(quiet, RATE) is quiet


def timeline(*segments: tuple[float, float]) -> Timeline:
    """Segments as (seconds since the reply started when handed out, seconds of audio)."""
    return Timeline(segments=list(segments))


def test_the_lead_is_the_audio_still_queued_when_each_later_segment_arrives() -> None:
    # plays 0-2; the next comes at 1.5 (0.5 s ahead), plays 2-3; the last at 2.5 (0.5 s ahead)
    assert timeline((0.0, 2.0), (1.5, 1.0), (2.5, 1.0)).playback_leads() == pytest.approx([0.5, 0.5])
    assert timeline((0.0, 2.0), (1.5, 1.0), (2.5, 1.0)).gaps() == []


def test_a_segment_that_arrives_after_the_player_ran_dry_is_a_gap_of_that_length() -> None:
    # plays 0-1; the next arrives at 1.4: 0.4 s of silence, then plays 1.4-2.4; the last at 2.4 is on time
    line = timeline((0.0, 1.0), (1.4, 1.0), (2.4, 0.5))
    assert line.playback_leads() == pytest.approx([-0.4, 0.0])
    assert line.gaps() == pytest.approx([0.4])


def test_one_segment_or_none_has_no_lead() -> None:
    assert timeline((0.3, 2.0)).playback_leads() == [] and timeline().gaps() == []
