"""Request traces: an arrival rate over time, and the Poisson arrivals it draws.

A trace is a rate held constant over bins of one second (finer steps are not needed: the autoscalers under test
act on windows of seconds to minutes). Arrivals within a bin are a Poisson process at that bin's rate, which is
the exact non-homogeneous Poisson process for a piecewise-constant rate. The same trace and seed give the same
arrivals whatever autoscaler runs, so every autoscaler of a benchmark faces the very same requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Trace:
    """Requests per second for each bin of ``bin_seconds``, from time 0."""

    rates: FloatArray
    bin_seconds: float = 1.0

    @property
    def duration(self) -> float:
        return len(self.rates) * self.bin_seconds

    def arrivals(self, seed: int) -> FloatArray:
        """Sorted arrival times in seconds: a Poisson count per bin, spread uniformly within it."""
        rng = np.random.default_rng(seed)
        counts = rng.poisson(self.rates * self.bin_seconds)
        starts = np.repeat(np.arange(len(self.rates)) * self.bin_seconds, counts)
        return np.sort(starts + rng.random(int(counts.sum())) * self.bin_seconds)

    def window_peaks(self, window: float) -> FloatArray:
        """The highest rate within each window of ``window`` seconds (the last window may be partial)."""
        per_window = max(1, round(window / self.bin_seconds))
        padded = np.concatenate([self.rates, np.zeros((-len(self.rates)) % per_window)])
        peaks: FloatArray = padded.reshape(-1, per_window).max(axis=1)
        return peaks


def constant(rate: float, duration: float) -> Trace:
    return Trace(np.full(math.ceil(duration), float(rate)))


def step(low: float, high: float, at: float, duration: float) -> Trace:
    """``low`` req/s until ``at`` seconds, then ``high``: the load step of B4."""
    seconds = np.arange(math.ceil(duration))
    return Trace(np.where(seconds < at, float(low), float(high)))


@dataclass(frozen=True)
class Burst:
    start: float
    seconds: float
    factor: float


def bursty(
    seed: int,
    duration: float = 1800.0,
    base: float = 150.0,
    swing: float = 0.6,
    bursts_per_minute: float = 1 / 3,
    factor: tuple[float, float] = (3.0, 5.0),
    burst_seconds: tuple[float, float] = (20.0, 180.0),
) -> tuple[Trace, list[Burst]]:
    """The B5 trace: a diurnal-ish base compressed into ``duration`` (one sine period, from ``base * (1 - swing)``
    up to ``base * (1 + swing)`` and back), times sudden bursts.

    Bursts start as a Poisson process (``bursts_per_minute``), never overlap, multiply the base by a factor drawn
    uniformly from ``factor`` and last a log-uniform time within ``burst_seconds`` (many short bursts, a few
    long ones). Onsets and ends are steps: the hardest case for a reactive autoscaler, and the common one (a
    batch job or a client retry storm starts at once).
    """
    rng = np.random.default_rng(seed)
    seconds = np.arange(math.ceil(duration), dtype=np.float64)
    rates = base * (1 - swing * np.cos(2 * np.pi * seconds / duration))
    bursts: list[Burst] = []
    at = rng.exponential(60 / bursts_per_minute)
    while at < duration:
        length = float(np.exp(rng.uniform(*np.log(burst_seconds))))
        burst = Burst(round(at), round(length), float(rng.uniform(*factor)))
        rates[burst.start : burst.start + int(burst.seconds)] *= burst.factor
        bursts.append(burst)
        at = burst.start + burst.seconds + rng.exponential(60 / bursts_per_minute)
    return Trace(rates), bursts
