"""Data-derived defaults of each family's options (one place for them).

A fit passes the user's ``model.family_options`` through :func:`family_defaults`, which fills what the data
decides: the ``rate`` family integrates with ``dt`` = the bin width and ``tau`` = 4 bins (at least ``dt``); the
``esn`` reservoir is drawn with the fit's seed.  Values the user set are never replaced.

Examples
--------
>>> family_defaults("rate", {}, bin_width_s=0.005, seed=0)
{'dt': 0.005, 'tau': 0.02}
>>> family_defaults("esn", {"spectral_radius": 0.8}, bin_width_s=0.005, seed=3)
{'spectral_radius': 0.8, 'seed': 3}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Time constant of the ``rate`` family, in bins, when not set.
RATE_TAU_BINS = 4.0


def family_defaults(family: str, options: Mapping[str, Any], *, bin_width_s: float, seed: int) -> dict[str, Any]:
    """Options for :func:`cortexfit.models.build_dynamics`: ``options`` plus the data-derived defaults."""
    opts = dict(options)
    if family == "rate":
        opts.setdefault("dt", float(bin_width_s))
        opts.setdefault("tau", max(float(opts["dt"]), RATE_TAU_BINS * float(bin_width_s)))
    if family == "esn":
        opts.setdefault("seed", int(seed))
    return opts
