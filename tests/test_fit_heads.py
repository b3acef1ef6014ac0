"""Tests of cortexfit.fit.heads: readout, link and masked loss shared by the latent and forecast modes."""

from __future__ import annotations

import torch

from cortexfit.fit.heads import MAX_LOG_RATE, FactorReadout, apply_link, init_unit_bias, masked_loss


def test_masked_loss_poisson_and_gaussian():
    y = torch.tensor([[[2.0, 0.0], [1.0, 3.0]]])
    log_r = torch.tensor([[[0.5, -1.0], [0.0, 1.0]]])
    mask = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])
    want = ((log_r.exp() - y * log_r) * mask).sum() / 3
    assert torch.isclose(masked_loss(log_r.exp(), log_r, y, mask, poisson=True), want)
    pred = torch.zeros_like(y)
    g = masked_loss(pred, pred, y, mask, poisson=False, scale=torch.tensor([1.0, 2.0]))
    assert torch.isclose(g, torch.tensor((0.5 * 4 + 0.0 + 0.5 * (3 / 2) ** 2) / 3))


def test_link_clamps_only_the_exponential():
    log_r = torch.tensor([-1.0, 0.0, 50.0])
    rates, clamped = apply_link(log_r, exp_link=True)
    assert clamped.tolist() == [-1.0, 0.0, MAX_LOG_RATE]
    assert torch.allclose(rates, torch.exp(torch.tensor([-1.0, 0.0, MAX_LOG_RATE])))
    same, _ = apply_link(log_r, exp_link=False)
    assert torch.equal(same, log_r)


def test_unit_bias_starts_at_the_mean():
    r = FactorReadout(hidden_size=4, factors=2, n_units=3)
    torch.nn.init.zeros_(r.to_factors.weight)
    mean = torch.tensor([0.5, 2.0, 0.0])
    init_unit_bias(r, mean, exp_link=True)
    rates, _ = apply_link(r(torch.randn(5, 4))[1], exp_link=True)
    assert torch.allclose(rates[0], mean.clamp_min(1e-3))
    init_unit_bias(r, mean, exp_link=False)
    assert torch.allclose(r(torch.randn(5, 4))[1][0], mean)
