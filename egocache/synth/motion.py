"""Head motion of the synthetic camera and the IMU that measures it.

The head's orientation is yaw/pitch/roll, each a C1 piecewise cubic (Hermite) track through knots the
segment planner sets, plus a small wobble (sum of sines); its position sways a few millimetres to
centimetres (sum of sines). Everything is analytic, so the gyroscope is the exact body angular velocity
of the rendered camera and the accelerometer its exact specific force (linear acceleration plus the
reaction to gravity, +1 g upwards at rest), both in the camera frame, before noise and bias are added.

Frames: world Z up. Camera (= IMU) axes x right, y down, z forward (along the optical axis).
R(t) = Rz(yaw) @ Ry(-pitch) @ Rx(roll) @ R0 maps camera to world; at zero angles the camera looks
along world +X. Positive pitch looks up, positive yaw turns left, positive roll tilts the right side down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRAVITY = 9.80665
R0 = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])   # columns: camera x, y, z in world


@dataclass(frozen=True)
class HermiteTrack:
    """A C1 curve through knots (time, value, derivative); cubic Hermite between knots, clamped outside."""

    t: np.ndarray
    v: np.ndarray
    d: np.ndarray

    def __call__(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Value and time derivative at times `ts`."""
        ts = np.clip(np.asarray(ts, dtype=np.float64), self.t[0], self.t[-1])
        i = np.clip(np.searchsorted(self.t, ts, side="right") - 1, 0, len(self.t) - 2)
        h = self.t[i + 1] - self.t[i]
        s = (ts - self.t[i]) / h
        v0, v1, d0, d1 = self.v[i], self.v[i + 1], self.d[i], self.d[i + 1]
        s2, s3 = s * s, s * s * s
        value = ((2 * s3 - 3 * s2 + 1) * v0 + (s3 - 2 * s2 + s) * h * d0
                 + (-2 * s3 + 3 * s2) * v1 + (s3 - s2) * h * d1)
        deriv = ((6 * s2 - 6 * s) / h * (v0 - v1) + (3 * s2 - 4 * s + 1) * d0 + (3 * s2 - 2 * s) * d1)
        return value, deriv


def _sines(params: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum of sines per channel, params (C, J, 3) = amplitude, frequency (Hz), phase: value, 1st and 2nd
    time derivatives, each (n, C)."""
    amp, freq, phase = (params[..., k][None] for k in range(3))
    w = 2 * np.pi * freq
    arg = w * ts[:, None, None] + phase
    value = (amp * np.sin(arg)).sum(-1)
    first = (amp * w * np.cos(arg)).sum(-1)
    second = (-amp * w * w * np.sin(arg)).sum(-1)
    return value, first, second


def random_sines(rng: np.random.Generator, amplitudes: tuple[float, ...], freq_hz: tuple[float, float],
                 terms: int = 3) -> np.ndarray:
    """Random (C, terms, 3) sine parameters with total amplitude `amplitudes[c]` per channel."""
    c = len(amplitudes)
    share = rng.dirichlet(np.ones(terms), size=c) * np.asarray(amplitudes)[:, None]
    freq = rng.uniform(*freq_hz, size=(c, terms))
    phase = rng.uniform(0.0, 2 * np.pi, size=(c, terms))
    return np.stack([share, freq, phase], axis=-1)


def _rot(axis: int, a: np.ndarray) -> np.ndarray:
    """Rotation matrices (n, 3, 3) about world axis 0/1/2 by angles `a` (right-handed)."""
    c, s = np.cos(a), np.sin(a)
    m = np.zeros(a.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m[:, axis, axis] = 1.0
    m[:, i, i] = c
    m[:, j, j] = c
    m[:, i, j] = -s
    m[:, j, i] = s
    return m


@dataclass(frozen=True)
class HeadMotion:
    """Camera pose over time: angle tracks (rad), angular wobble and positional sway (sine parameters)."""

    yaw: HermiteTrack
    pitch: HermiteTrack
    roll: HermiteTrack
    wobble: np.ndarray   # (3, J, 3) sines added to yaw, pitch, roll (rad)
    sway: np.ndarray     # (3, J, 3) sines of world position x, y, z (m)

    def angles(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Yaw, pitch, roll (n, 3) and their rates (n, 3) at times `ts`."""
        ts = np.asarray(ts, dtype=np.float64)
        tracks = [track(ts) for track in (self.yaw, self.pitch, self.roll)]
        wob, wob_rate, _ = _sines(self.wobble, ts)
        ang = np.stack([v for v, _ in tracks], axis=1) + wob
        rate = np.stack([d for _, d in tracks], axis=1) + wob_rate
        return ang, rate

    def rotation(self, ts: np.ndarray) -> np.ndarray:
        """Camera-to-world rotations (n, 3, 3) at times `ts`."""
        ang, _ = self.angles(ts)
        return _rot(2, ang[:, 0]) @ _rot(1, -ang[:, 1]) @ _rot(0, ang[:, 2]) @ R0

    def position(self, ts: np.ndarray) -> np.ndarray:
        """Camera position in the world (n, 3) metres at times `ts`."""
        return _sines(self.sway, np.asarray(ts, dtype=np.float64))[0]

    def gyro(self, ts: np.ndarray) -> np.ndarray:
        """Exact body angular velocity (n, 3) rad/s in camera axes (R^T dR/dt)."""
        ang, rate = self.angles(ts)
        zero = np.zeros(len(ang))
        cx_t = np.transpose(_rot(0, ang[:, 2]), (0, 2, 1))
        by_t = np.transpose(_rot(1, -ang[:, 1]), (0, 2, 1))
        yaw_part = np.stack([zero, zero, rate[:, 0]], axis=1)
        pitch_part = np.stack([zero, -rate[:, 1], zero], axis=1)
        roll_part = np.stack([rate[:, 2], zero, zero], axis=1)
        w = np.einsum("nij,njk,nk->ni", cx_t, by_t, yaw_part) + np.einsum("nij,nj->ni", cx_t, pitch_part)
        return (w + roll_part) @ R0

    def accel(self, ts: np.ndarray) -> np.ndarray:
        """Exact specific force (n, 3) m/s^2 in camera axes, R^T (p'' + g Z): (0, -g, 0) level and still."""
        ts = np.asarray(ts, dtype=np.float64)
        acc = _sines(self.sway, ts)[2]
        acc[:, 2] += GRAVITY
        return np.einsum("nji,nj->ni", self.rotation(ts), acc)


def imu_times(duration_s: float, rate_hz: float, rng: np.random.Generator, jitter: float = 0.06
              ) -> np.ndarray:
    """Sample times (s) of a sensor ticking at about `rate_hz` over [0, duration]: a nominal grid plus
    Gaussian jitter of `jitter` periods (clipped to +-0.3 periods, so times stay strictly increasing)."""
    period = 1.0 / rate_hz
    n = int(np.floor(duration_s * rate_hz)) + 1
    noise = np.clip(rng.normal(0.0, jitter, size=n), -0.3, 0.3) * period
    return np.clip(np.arange(n) * period + noise, 0.0, duration_s)


def drifting_bias(ts: np.ndarray, rng: np.random.Generator, start: float, step: float,
                  knot_s: float = 2.0) -> np.ndarray:
    """A slowly drifting sensor bias (n, 3): a random start in +-`start`, then a random walk of `step`
    per `knot_s` seconds, linearly interpolated."""
    knots = np.arange(0.0, ts[-1] + 2 * knot_s, knot_s)
    walk = rng.uniform(-start, start, size=(1, 3)) + np.cumsum(rng.normal(0.0, step, size=(len(knots), 3)), 0)
    return np.stack([np.interp(ts, knots, walk[:, k]) for k in range(3)], axis=1)


@dataclass(frozen=True)
class ImuNoise:
    """White noise (std) and bias (start range, random-walk step per 2 s) of one sensor, in its SI unit."""

    white: float
    bias_start: float
    bias_step: float


GYRO_NOISE = ImuNoise(white=0.006, bias_start=0.008, bias_step=0.0015)     # rad/s
ACCL_NOISE = ImuNoise(white=0.04, bias_start=0.08, bias_step=0.01)         # m/s^2


def measure(motion: HeadMotion, sensor: str, ts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Readings (n, 3) of the "gyro" (rad/s) or "accl" (m/s^2) at `ts`: truth + drifting bias + noise."""
    truth, noise = (motion.gyro(ts), GYRO_NOISE) if sensor == "gyro" else (motion.accel(ts), ACCL_NOISE)
    bias = drifting_bias(ts, rng, noise.bias_start, noise.bias_step)
    return truth + bias + rng.normal(0.0, noise.white, size=truth.shape)
