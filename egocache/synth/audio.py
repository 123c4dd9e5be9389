"""The synthetic videos' sound track: kitchen-like sounds that go with some actions and not others.

Each verb has a characteristic sound (VERB_SOUNDS): a band of noise (a narrow band is a tone) with an
envelope (SOUNDS), played during the verb's segment with a probability. The appearance verbs are loud
and distinct (cut: chopping bursts at 2-5 kHz; pour: a steady, trembling 0.5-1.5 kHz stream; wash: a
3-6.5 kHz hiss of running water), each played in 90 % of its segments. The motion pairs are quiet and
share one sound per pair, as in a kitchen, where opening and closing a door make the same thud: a
knob's click (turn-on/turn-off, 70 %), a soft low thud (open/close, 50 %) and a barely audible clunk
(take/put, 50 %). So the audio can tell a loud appearance verb from the rest, and a pair's sound from
another pair's, but never one verb of a pair from the other: that stays the frames' (and the IMU's) job.
Over everything lie a steady background (white noise and a 100 Hz hum) and unrelated events (one of
the loud sounds at a random time, UNRELATED_RATE_HZ on average, whatever the action), so a sound is
evidence, not proof. docs/synthetic.md gives the reasons and the test that checks the rule.

Every draw comes from a generator of its own (`audio_rng`: the dataset's seed with a spawn key no other
stream uses), so adding the track changed nothing else the generator writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

AUDIO_RATE_HZ = 24000            # EPIC-100's tracks are 48 kHz; 24 kHz halves the cost and still needs resampling
AUDIO_SPAWN_KEY = 0xA0D10        # spawn_key (AUDIO_SPAWN_KEY, video index): no other stream of `synthesize` has it
BACKGROUND_RMS = 0.004           # white noise
HUM = (100.0, 0.003)             # mains hum: frequency (Hz), amplitude
UNRELATED_RATE_HZ = 0.08         # unrelated loud events per second of video
UNRELATED_SECONDS = (0.5, 1.5)
BAND_JITTER = (0.9, 1.1)         # each event's band is scaled by a factor drawn from this range ...
LEVEL_JITTER = (0.7, 1.3)        # ... and its level by one from this


@dataclass(frozen=True)
class Sound:
    """A kind of sound: band of noise (Hz), level (peak amplitude of its envelope) and envelope.

    envelope: "steady" (fades in and out over 0.1 s, optional tremolo at `rate_hz`), "bursts" (one burst
    every 1/`rate_hz` s, each decaying with time constant `decay_s`) or "once" (one burst at a random
    time of the segment)."""

    band: tuple[float, float]
    level: float
    envelope: str
    rate_hz: float = 0.0
    decay_s: float = 0.05


SOUNDS: dict[str, Sound] = {
    "chop": Sound((2000.0, 5000.0), 0.30, "bursts", rate_hz=3.0, decay_s=0.04),
    "stream": Sound((500.0, 1500.0), 0.15, "steady", rate_hz=5.0),
    "water": Sound((3000.0, 6500.0), 0.12, "steady"),
    "click": Sound((2400.0, 2600.0), 0.08, "once", decay_s=0.03),
    "thud": Sound((80.0, 200.0), 0.05, "once", decay_s=0.12),
    "clunk": Sound((300.0, 600.0), 0.015, "once", decay_s=0.06),
}
VERB_SOUNDS: dict[str, tuple[str, float]] = {     # verb -> (its sound, probability it plays in a segment)
    "cut": ("chop", 0.9), "pour": ("stream", 0.9), "wash": ("water", 0.9),
    "turn-on": ("click", 0.7), "turn-off": ("click", 0.7),
    "open": ("thud", 0.5), "close": ("thud", 0.5),
    "take": ("clunk", 0.5), "put": ("clunk", 0.5),
}
LOUD_SOUNDS = ("chop", "stream", "water", "click")   # what unrelated events play


def audio_rng(seed: int, video_index: int) -> np.random.Generator:
    """The sound track's own generator for video `video_index` of a dataset made with `seed`."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(AUDIO_SPAWN_KEY, video_index)))


def _band_noise(rng: np.random.Generator, n: int, band: tuple[float, float], rate: int) -> np.ndarray:
    """`n` samples of white noise filtered to `band` (Hz) in the frequency domain, unit RMS (the FFT runs
    over the next power of two: fast whatever `n`)."""
    size = 1 << max(int(n - 1).bit_length(), 4)
    spec = np.fft.rfft(rng.standard_normal(size))
    freq = np.fft.rfftfreq(size, 1.0 / rate)
    spec[(freq < band[0]) | (freq > band[1])] = 0.0
    x = np.fft.irfft(spec, size)[:n]
    return x / max(float(np.sqrt(np.mean(x * x))), 1e-12)


def _envelope(rng: np.random.Generator, sound: Sound, n: int, rate: int) -> np.ndarray:
    """The sound's amplitude over its `n` samples (peak 1)."""
    t = np.arange(n) / rate
    if sound.envelope == "steady":
        env = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.1)
        if sound.rate_hz:
            env = env * (0.75 + 0.25 * np.sin(2 * np.pi * sound.rate_hz * t + rng.uniform(0, 2 * np.pi)))
        return env
    if sound.envelope == "bursts":
        period = 1.0 / sound.rate_hz
        onsets = np.arange(rng.uniform(0, period), t[-1], period)
        onsets = onsets + rng.uniform(-0.03, 0.03, onsets.shape)       # a hand does not keep time
        since = t[:, None] - onsets[None, :]
        return np.where(since >= 0, np.exp(-np.maximum(since, 0) / sound.decay_s), 0.0).max(axis=1) \
            if len(onsets) else np.zeros(n)
    onset = rng.uniform(0.0, max(t[-1] - 5 * sound.decay_s, 0.0))
    return np.where(t >= onset, np.exp(-np.maximum(t - onset, 0) / sound.decay_s), 0.0)


def _add_event(track: np.ndarray, rng: np.random.Generator, name: str, t0: float, t1: float, rate: int,
               gain: float = 1.0) -> None:
    """Add one event of sound `name` over [t0, t1) s to `track`, its band and level jittered."""
    sound = SOUNDS[name]
    a, b = max(0, int(round(t0 * rate))), min(len(track), int(round(t1 * rate)))
    if b - a < 16:
        return
    scale = rng.uniform(*BAND_JITTER)
    band = (sound.band[0] * scale, min(sound.band[1] * scale, 0.95 * rate / 2))
    level = sound.level * rng.uniform(*LEVEL_JITTER) * gain
    track[a:b] += level * _envelope(rng, sound, b - a, rate) * _band_noise(rng, b - a, band, rate) / 3.0


def sound_track(rng: np.random.Generator, segments: list[tuple[float, float, str]], duration_s: float,
                rate: int = AUDIO_RATE_HZ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(mono float32 samples in [-1, 1] at `rate`, the events played) for a video of `duration_s` whose
    segments are (start s, stop s, verb). Events: {"t0", "t1", "sound", "segment": index or None}."""
    n = int(round(duration_s * rate))
    t = np.arange(n, dtype=np.float32) / np.float32(rate)
    track = (BACKGROUND_RMS * rng.standard_normal(n, dtype=np.float32)
             + HUM[1] * np.sin(2 * np.pi * HUM[0] * t, dtype=np.float32))
    events: list[dict[str, Any]] = []
    for k, (start, stop, verb) in enumerate(segments):
        name, p = VERB_SOUNDS[verb]
        if rng.random() < p:
            _add_event(track, rng, name, start, stop, rate)
            events.append({"t0": start, "t1": stop, "sound": name, "segment": k})
    for _ in range(int(rng.poisson(UNRELATED_RATE_HZ * duration_s))):
        name = str(rng.choice(LOUD_SOUNDS))
        length = rng.uniform(*UNRELATED_SECONDS)
        t0 = round(float(rng.uniform(0.0, max(duration_s - length, 0.0))), 3)
        _add_event(track, rng, name, t0, t0 + length, rate, gain=rng.uniform(0.3, 1.0))
        events.append({"t0": t0, "t1": round(t0 + length, 3), "sound": name, "segment": None})
    return np.clip(track, -1.0, 1.0).astype(np.float32), events


def audio_meta() -> dict[str, Any]:
    """synth.json's "audio" section: the rule the sound track follows."""
    return {"rate_hz": AUDIO_RATE_HZ, "codec": "aac", "channels": 1,
            "sounds": {k: {"band_hz": list(s.band), "level": s.level, "envelope": s.envelope}
                       for k, s in SOUNDS.items()},
            "verb_sounds": {v: {"sound": s, "probability": p} for v, (s, p) in VERB_SOUNDS.items()},
            "background": {"white_noise_rms": BACKGROUND_RMS, "hum_hz": HUM[0], "hum_amplitude": HUM[1]},
            "unrelated_events_per_s": UNRELATED_RATE_HZ, "unrelated_sounds": list(LOUD_SOUNDS)}
