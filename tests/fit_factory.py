"""Small synthetic activity datasets for the fit tests (``convention.new_activity`` + known Poisson rates).

``oscillator_activity`` has low-dimensional latent dynamics (a rotation whose phase differs per trial), so
held-out units are predictable from held-in ones; ``random_walk_activity`` has a latent random walk, so
predictions degrade when a model must run without observations.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from cortexfit.core import convention


def _dataset(counts: np.ndarray, bin_width_s: float, conditions: np.ndarray | None, rates: np.ndarray) -> xr.Dataset:
    n_trial, n_time, _ = counts.shape
    time = (np.arange(n_time) + 0.5) * bin_width_s
    ds = convention.new_activity(counts.astype("uint16"), time=time, bin_width_s=bin_width_s, align_event="start_time")
    start = np.arange(n_trial) * (n_time * bin_width_s + 0.5)
    ds = ds.assign_coords(start_time=("trial", start), stop_time=("trial", start + n_time * bin_width_s))
    if conditions is not None:
        ds = ds.assign_coords(condition=("trial", conditions.astype(str)))
    return ds


def oscillator_activity(*, n_trials: int = 40, n_time: int = 40, n_units: int = 16, seed: int = 0,
                        bin_width_s: float = 0.01, base_rate: float = 0.3) -> tuple[xr.Dataset, np.ndarray]:
    """Poisson counts from a 2-D rotation with a random phase per trial; returns (dataset, true rates)."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, n_trials)
    t = np.arange(n_time)
    omega = 2 * np.pi / 25.0
    z = np.stack([np.cos(omega * t[None] + phase[:, None]), np.sin(omega * t[None] + phase[:, None])], -1)
    c = rng.normal(0, 0.9, (2, n_units))
    rates = base_rate * np.exp(z @ c - 0.4)
    counts = rng.poisson(rates)
    cond = np.where(phase < np.pi, "a", "b")
    return _dataset(counts, bin_width_s, cond, rates), rates


def random_walk_activity(*, n_trials: int = 40, n_time: int = 50, n_units: int = 16, seed: int = 0,
                         bin_width_s: float = 0.01) -> tuple[xr.Dataset, np.ndarray]:
    """Poisson counts driven by a 2-D latent random walk (unpredictable without observations)."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 0.3, (n_trials, n_time, 2))
    z = np.cumsum(steps, axis=1) + rng.normal(0, 1.0, (n_trials, 1, 2))
    c = rng.normal(0, 0.8, (2, n_units))
    rates = np.exp(np.clip(z @ c, -4, 2.5))
    counts = rng.poisson(rates)
    return _dataset(counts, bin_width_s, None, rates), rates


def condition_activity(*, n_trials: int = 40, n_time: int = 40, n_units: int = 12, seed: int = 4,
                       bin_width_s: float = 0.01) -> tuple[xr.Dataset, np.ndarray]:
    """Rates set by the trial's condition (4 reach-like time courses) with hand velocity read out of the latents."""
    rng = np.random.default_rng(seed)
    cond = np.arange(n_trials) % 4
    t = np.linspace(0, 1, n_time)
    z = np.stack([np.sin(np.pi * t[None] * (1 + cond[:, None])), np.cos(np.pi * t[None] * (1 + cond[:, None]))], -1)
    rates = 0.4 * np.exp(z @ rng.normal(0, 0.8, (2, n_units)))
    ds = _dataset(rng.poisson(rates), bin_width_s, cond, rates)
    vel = np.gradient(z, axis=1) * 10
    ds["behavior"] = (("trial", "time", "behavior_channel"), vel.astype("float32"))
    ds = ds.assign_coords(behavior_channel=["hand_vel_x", "hand_vel_y"],
                          behavior_kind=("behavior_channel", ["velocity", "velocity"]))
    return ds, rates
