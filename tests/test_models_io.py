"""Tests of ``save_model`` / ``load_model`` (the ``model.pt`` format) and device/dtype moves."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cortexfit.core.errors import ConfigError
from cortexfit.models import (
    FORMAT,
    ModelFileError,
    RidgeReadout,
    build_dynamics,
    load_model,
    save_model,
)

CASES = [
    ("rate", {"dale": True, "stp": True, "rank": 2, "nonlinearity": "softplus", "dt": 0.005, "tau": 0.02}),
    ("rate", {"noise_std": 0.1}),
    ("vanilla", {"nonlinearity": "relu"}),
    ("lstm", {"forget_bias": 0.5}),
    ("esn", {"spectral_radius": 0.8, "seed": 7, "ridge": 0.01}),
]


@pytest.mark.parametrize(("family", "options"), CASES, ids=[c[0] + str(i) for i, c in enumerate(CASES)])
def test_roundtrip(tmp_path, family, options):
    torch.manual_seed(0)
    net = build_dynamics(family, input_size=3, hidden_size=9, **options).eval()
    encoder = nn.Linear(4, 3)
    readout = RidgeReadout(9, 2, alpha=0.5)
    path = save_model(tmp_path / "model.pt", net, modules={"encoder": encoder, "readout": readout},
                      module_specs={"encoder": {"type": "Linear", "in_features": 4, "out_features": 3}},
                      meta={"dt_s": 0.01, "mode": "fit", "heldout": [1, 2], "note": None})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temp file left behind
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["spec"] == net.spec()
    assert raw["module_specs"]["readout"] == {"class": "RidgeReadout", "in_features": 9, "out_features": 2, "alpha": 0.5}

    loaded, rest = load_model(tmp_path)  # a folder holding model.pt works too
    assert type(loaded) is type(net) and not loaded.training
    assert rest["meta"] == {"dt_s": 0.01, "mode": "fit", "heldout": [1, 2], "note": None}
    u = torch.randn(2, 12, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(u), net(u))
    enc = nn.Linear(4, 3)
    enc.load_state_dict(rest["modules"]["encoder"])
    torch.testing.assert_close(enc.weight, encoder.weight)
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_overwrite_is_atomic_and_bad_meta_rejected(tmp_path):
    net = build_dynamics("vanilla", input_size=1, hidden_size=2)
    path = save_model(tmp_path / "model.pt", net, meta={"epoch": 1})
    with pytest.raises(ConfigError, match="meta.obj"):
        save_model(path, net, meta={"obj": object()})
    assert load_model(path)[1]["meta"] == {"epoch": 1}  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_load_errors(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a cortexfit-model/1 file"):
        load_model(tmp_path / "other.pt")
    net = build_dynamics("rate", input_size=2, hidden_size=3)
    save_model(tmp_path / "model.pt", net)
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    payload["spec"]["options"]["bogus"] = 1
    torch.save(payload, tmp_path / "model.pt")
    with pytest.raises(ModelFileError, match="bogus"):
        load_model(tmp_path)


@pytest.mark.parametrize("family", ["rate", "vanilla", "lstm", "esn"])
def test_move_dtype_and_device(family):
    """`.to()` moves every tensor (buffers included); CUDA is used when present, never required."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    opts = {"dale": True, "stp": True} if family == "rate" else {}
    net = build_dynamics(family, input_size=2, hidden_size=5, **opts).to(device=device, dtype=torch.float64)
    u = torch.randn(3, 4, 2, dtype=torch.float64, device=device)
    out = net(u)
    assert out.dtype == torch.float64 and out.device.type == device
    assert net.initial_state(3).dtype == torch.float64
    assert net.step(net.initial_state(3), u[:, 0]).shape == (3, net.state_size)


def test_baseline_files_load_through_the_same_function(tmp_path):
    import numpy as np

    from cortexfit.models import BaselineModel, save_baseline

    save_baseline(tmp_path / "model.pt", "smoothing", {"w": np.arange(6.0).reshape(2, 3), "b": np.zeros(3)},
                  options={"sigma_ms": 40.0}, meta={"dt_s": 0.005})
    model, rest = load_model(tmp_path)
    assert isinstance(model, BaselineModel) and not model.has_dynamics and model.family == "smoothing"
    assert model.params["w"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] and model.options == {"sigma_ms": 40.0}
    assert rest["meta"] == {"baseline": True, "dt_s": 0.005}
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    del payload["modules"]["baseline"]
    torch.save(payload, tmp_path / "model.pt")
    with pytest.raises(ModelFileError, match="incomplete baseline model file"):
        load_model(tmp_path)
