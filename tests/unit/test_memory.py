"""The trainer's memory figures: each phase's own peak resident set, reset between phases."""

from __future__ import annotations

import numpy as np

from jobs.training.memory import PhasePeaks, peak_bytes

MiB = 1 << 20


def test_each_phase_reports_its_own_peak() -> None:
    peaks = PhasePeaks()
    with peaks.phase("big"):
        block = np.ones(200 * MiB // 8)  # touched: resident
        del block
    with peaks.phase("small"):
        block = np.ones(MiB // 8)
        del block
    assert peaks.megabytes["big"] - peaks.megabytes["small"] > 150  # the second did not inherit the first's peak
    small = peaks.peaks["small"]
    with peaks.phase("small"):  # a phase entered again keeps its larger peak
        block = np.ones(100 * MiB // 8)
        del block
    assert peaks.peaks["small"] - small > 50 * MiB


def test_merged_phases_add_time_and_keep_the_larger_peak() -> None:
    ours, theirs = PhasePeaks({"load": 1.0}, {"load": 10}), PhasePeaks({"load": 2.0, "evaluate": 1.0}, {"load": 30})
    ours.merge(theirs)
    assert ours.seconds == {"load": 3.0, "evaluate": 1.0} and ours.peaks == {"load": 30}
    assert peak_bytes() is not None
