"""What the latent and forecast models share around their generator: the factor readout, the link and the loss.

Both modes read a family's hidden units out through low-dimensional factors to the rates of every unit
(:class:`FactorReadout`), map log-rates to rates through an exponential link for spike counts or the identity
for imaging traces (:func:`apply_link`), start each unit at its mean (:func:`init_unit_bias`), and score with a
masked Poisson or Gaussian negative log-likelihood (:func:`masked_loss`).

Examples
--------
>>> import torch
>>> r = FactorReadout(hidden_size=8, factors=3, n_units=5)
>>> f, log_r = r(torch.zeros(2, 4, 8))
>>> f.shape, apply_link(log_r, exp_link=True)[0].shape
(torch.Size([2, 4, 3]), torch.Size([2, 4, 5]))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: Log-rates are clamped here before ``exp`` (e^12 ~ 1.6e5 spikes per bin: never reached by a sane fit).
MAX_LOG_RATE = 12.0


class FactorReadout(nn.Module):
    """Hidden units -> factors (linear, no bias) -> log-rates of every unit (linear).

    Examples
    --------
    >>> r = FactorReadout(hidden_size=8, factors=3, n_units=5)
    >>> r.spec()["class"]
    'FactorReadout'
    """

    def __init__(self, *, hidden_size: int, factors: int, n_units: int, dropout: float = 0.0):
        super().__init__()
        self.hidden_size, self.factors, self.n_units = hidden_size, factors, n_units
        self.dropout = nn.Dropout(dropout)
        self.to_factors = nn.Linear(hidden_size, factors, bias=False)
        self.to_units = nn.Linear(factors, n_units)

    def forward(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        factors = self.to_factors(self.dropout(hidden))
        return factors, self.to_units(factors)

    def spec(self) -> dict:
        """Plain dict to rebuild the module."""
        return {"class": "FactorReadout", "hidden_size": self.hidden_size, "factors": self.factors,
                "n_units": self.n_units}


def apply_link(log_rates: Tensor, *, exp_link: bool) -> tuple[Tensor, Tensor]:
    """``(rates, log_rates)``: ``exp`` of the clamped log-rates (spikes) or the values themselves (traces).

    Examples
    --------
    >>> apply_link(torch.tensor([0.0, 20.0]), exp_link=True)[1].tolist()
    [0.0, 12.0]
    """
    if exp_link:
        log_rates = log_rates.clamp(max=MAX_LOG_RATE)
        return torch.exp(log_rates), log_rates
    return log_rates, log_rates


def init_unit_bias(readout: FactorReadout, mean: Tensor, *, exp_link: bool) -> None:
    """Start each unit's prediction at its mean count (log link) or mean trace (identity link)."""
    with torch.no_grad():
        b = torch.log(mean.clamp_min(1e-3)) if exp_link else mean
        readout.to_units.bias.copy_(b)


def masked_loss(out_rates: Tensor, out_log: Tensor, target: Tensor, mask: Tensor, *, poisson: bool,
                scale: Tensor | None = None) -> Tensor:
    """Mean Poisson NLL (up to the constant ``log y!``) or Gaussian NLL over ``mask`` entries.

    For the Gaussian case ``out_rates`` are predicted traces and ``scale`` the per-unit std.

    Examples
    --------
    >>> y = torch.tensor([[[1.0, 0.0]]]); m = torch.ones_like(y)
    >>> float(masked_loss(torch.ones_like(y), torch.zeros_like(y), y, m, poisson=True))
    1.0
    """
    if poisson:
        per = out_rates - target * out_log
    else:
        s = scale if scale is not None else torch.ones_like(target[0, 0])
        per = 0.5 * ((target - out_rates) / s) ** 2
    return (per * mask).sum() / mask.sum().clamp_min(1.0)
