"""Several sessions, one generator: the joint latent model of ``cortexfit fit-group`` (lfads-torch's multi-session idea).

Each session (one activity file: the same task, other neurons) gets its own **read-in** (held-in units ->
``factors`` channels, initialised to the principal axes of that session's held-in activity, the idea of
lfads-torch's PCA-based read-ins) and its own **read-out** (factors -> that session's units).  Everything between
them is shared: the encoder, the generator (any RNN family) and the hidden -> factors projection.  A
:class:`JointModel` holds one :class:`~cortexfit.fit.latent.LatentModel` *view* per session; the views share
those modules, so training any view trains the shared system.

A view composes into a plain single-session model (:func:`compose_encoder` folds the read-in into the
encoder's GRU input weights), so each session's folder is an ordinary fit folder that ``fixed-points``,
``geometry``, ``dynamics`` and ``truth`` read unchanged.

Examples
--------
>>> import numpy as np, torch
>>> from cortexfit.core import convention
>>> from cortexfit.fit.config import load_config
>>> from cortexfit.fit.data import prepare
>>> rng = np.random.default_rng(0)
>>> cfg = load_config("smoke")
>>> datas = [prepare(convention.new_activity(rng.poisson(0.5, (12, 20, n)).astype("uint16"),
...          time=np.arange(20) * 0.01, bin_width_s=0.01), cfg, seed=0) for n in (6, 9)]
>>> joint = build_joint(datas, ["a", "b"], cfg, family="rate", seed=0)
>>> joint.views["a"].dynamics is joint.views["b"].dynamics
True
>>> view = joint.view("b").eval()                      # no dropout: the two encoders then agree
>>> enc = compose_encoder(view.encoder).eval()
>>> x = torch.randn(2, 16, int((~datas[1].heldout).sum()))
>>> bool(torch.allclose(enc(x)[0], view.encoder(x)[0], atol=1e-5))
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from cortexfit.core.errors import FitError
from cortexfit.fit.config import FitConfig
from cortexfit.fit.data import FitData
from cortexfit.fit.heads import FactorReadout
from cortexfit.fit.latent import Encoder, LatentModel, _losses, _Tensors, build_latent_model, predict_all
from cortexfit.fit.loop import BatchLoss
from cortexfit.fit.outputs import FitResult
from cortexfit.models.base import Dynamics

#: Learning-rate factor of the last stage of a warm-started joint fit (all sessions together, from the warm-up).
FINE_TUNE_LR = 0.1


class ReadInEncoder(nn.Module):
    """A session's read-in (``Linear``: held-in units -> width) before the shared :class:`Encoder`."""

    def __init__(self, read_in: nn.Linear, encoder: Encoder):
        super().__init__()
        self.read_in, self.encoder = read_in, encoder

    @property
    def state_size(self) -> int:
        return self.encoder.state_size

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.encoder(self.read_in(x))


def compose_encoder(enc: ReadInEncoder) -> Encoder:
    """One :class:`Encoder` reading the session's held-in units directly (read-in folded into the GRU).

    The GRU's input transform is affine, so ``W_ih (R x + r) + b_ih = (W_ih R) x + (W_ih r + b_ih)`` in both
    directions; in eval mode the two give the same outputs (dropout, training only, then acts on the units).
    """
    core, r = enc.encoder, enc.read_in
    out = Encoder(n_in=r.in_features, size=core.size, state_size=core.state_size, controller=core.controller,
                  dropout=core.dropout.p)
    state = {k: v.detach().clone() for k, v in core.state_dict().items()}
    with torch.no_grad():
        for suffix in ("l0", "l0_reverse"):
            w, b = state[f"gru.weight_ih_{suffix}"], state[f"gru.bias_ih_{suffix}"]
            state[f"gru.weight_ih_{suffix}"] = w @ r.weight
            state[f"gru.bias_ih_{suffix}"] = b + w @ r.bias
    out.load_state_dict(state)
    return out.to(r.weight.device)


def session_readout(shared: nn.Linear, *, n_units: int, dropout: float) -> FactorReadout:
    """A :class:`FactorReadout` whose hidden -> factors projection is the shared one (factors -> units is the
    session's own)."""
    head = FactorReadout(hidden_size=shared.in_features, factors=shared.out_features, n_units=n_units,
                         dropout=dropout)
    head.to_factors = shared
    return head


def pca_read_in(read_in: nn.Linear, x: np.ndarray) -> int:
    """Set ``read_in`` to the projection onto the top principal axes of ``x`` (rows: samples, columns: units).

    The rows are the orthonormal principal axes and the bias centres the data, so the read-in keeps the
    activity's scale (no whitening: it would blow the noise-only trailing components up to unit variance).
    Returns the number of axes set; rows beyond it (fewer units or samples than the width) keep their random
    initialisation.

    Examples
    --------
    >>> lin = nn.Linear(5, 2)
    >>> x = np.random.default_rng(0).normal(size=(500, 5)) * [3, 2, 1, 1, 1]
    >>> pca_read_in(lin, x)
    2
    >>> z = lin(torch.as_tensor(x, dtype=torch.float32)).detach().numpy()
    >>> np.round(z.std(0)).tolist(), abs(round(float(z.mean()), 3))
    ([3.0, 2.0], 0.0)
    """
    from sklearn.decomposition import PCA

    flat = np.asarray(x, float).reshape(-1, x.shape[-1])
    k = min(read_in.out_features, flat.shape[1], flat.shape[0] - 1)
    if k < 1:
        return 0
    pca = PCA(n_components=k, svd_solver="full").fit(flat)
    with torch.no_grad():
        read_in.weight[:k] = torch.as_tensor(pca.components_, dtype=read_in.weight.dtype)
        read_in.bias[:k] = torch.as_tensor(-pca.components_ @ pca.mean_, dtype=read_in.bias.dtype)
    return int(k)


class JointModel(nn.Module):
    """One :class:`LatentModel` view per session sharing the encoder, generator and factor projection.

    ``views[name]`` is that session's model; ``shared_parameters()`` are the parameters every session uses,
    ``head_parameters(name)`` a session's own (read-in, read-out)."""

    def __init__(self, views: dict[str, LatentModel]):
        super().__init__()
        self.views = nn.ModuleDict(views)
        first = next(iter(views.values()))
        enc = cast(ReadInEncoder, first.encoder)
        self.dynamics: Dynamics = first.dynamics
        self.encoder: Encoder = enc.encoder
        self.to_factors: nn.Linear = first.readout.to_factors

    def view(self, name: str) -> LatentModel:
        """Session ``name``'s :class:`LatentModel`."""
        return cast(LatentModel, self.views[name])

    @property
    def names(self) -> list[str]:
        return list(self.views.keys())

    def shared_parameters(self) -> dict[str, nn.Parameter]:
        """Named parameters of the encoder, the generator and the hidden -> factors projection."""
        out: dict[str, nn.Parameter] = {}
        for prefix, mod in (("dynamics", self.dynamics), ("encoder", self.encoder), ("to_factors", self.to_factors)):
            out.update({f"{prefix}.{k}": p for k, p in mod.named_parameters()})
        return out

    def head_parameters(self, name: str) -> list[nn.Parameter]:
        """The session's read-in and read-out (factors -> units) parameters."""
        view = self.view(name)
        return [*cast(ReadInEncoder, view.encoder).read_in.parameters(), *view.readout.to_units.parameters()]

    def train_only(self, names: Sequence[str], *, shared: bool = True) -> None:
        """Gradients for the heads of ``names`` and (``shared``) the shared modules; everything else is frozen."""
        for n in self.names:
            for p in self.head_parameters(n):
                p.requires_grad_(n in names)
        for p in self.shared_parameters().values():
            p.requires_grad_(shared)


def check_compatible(datas: Sequence[FitData], names: Sequence[str], *, align_events: Sequence[str]) -> None:
    """Sessions fitted together must share bin width, alignment event, signal and task inputs (FitError naming
    the sessions that differ)."""
    ref = names[0]
    for d, n, ev in zip(datas[1:], names[1:], align_events[1:]):
        if not math.isclose(d.bin_width_s, datas[0].bin_width_s, rel_tol=1e-6):
            raise FitError(f"sessions {ref} and {n} have different bin widths ({datas[0].bin_width_s * 1e3:g} ms vs "
                           f"{d.bin_width_s * 1e3:g} ms): re-ingest them with the same bin_ms")
        if ev != align_events[0]:
            raise FitError(f"sessions {ref} and {n} are aligned to different events ({align_events[0]} vs {ev})")
        if d.signal != datas[0].signal:
            raise FitError(f"sessions {ref} and {n} hold different signals ({datas[0].signal} vs {d.signal})")
        if list(d.input_names) != list(datas[0].input_names):
            raise FitError(f"sessions {ref} and {n} have different task inputs ({datas[0].input_names} vs "
                           f"{d.input_names}): one generator needs the same input channels")


def build_joint(datas: Sequence[FitData], names: Sequence[str], cfg: FitConfig, *, family: str,
                seed: int) -> JointModel:
    """A :class:`JointModel` for ``datas`` (read-in width = ``cfg.model.factors``, PCA-initialised)."""
    torch.manual_seed(seed)
    m = cfg.model
    width = m.factors
    core = build_latent_model(datas[0], cfg, family=family, seed=seed)  # generator sized by the shared inputs
    shared_enc = Encoder(n_in=width, size=m.encoder_size, state_size=core.encoder.state_size,
                         controller=m.controller, dropout=m.dropout)
    views: dict[str, LatentModel] = {}
    for d, n in zip(datas, names):
        hi = int((~d.heldout).sum())
        view = LatentModel(core.dynamics, n_heldin=width, n_units=d.n_units, n_inputs=d.n_inputs, factors=width,
                           encoder_size=m.encoder_size, controller=m.controller, dropout=m.dropout,
                           exp_link=d.spikes)
        read_in = nn.Linear(hi, width)
        pca_read_in(read_in, d.encoder_input()[d.trials("train")])
        view.encoder = ReadInEncoder(read_in, shared_enc)  # type: ignore[assignment]
        view.readout = session_readout(core.readout.to_factors, n_units=d.n_units, dropout=m.dropout)
        views[n] = view
    return JointModel(views)


def session_losses(model: JointModel, datas: Sequence[FitData], names: Sequence[str], cfg: FitConfig,
                   device: str) -> tuple[list[_Tensors], list[BatchLoss], list[Callable[[nn.Module], float]]]:
    """Per session: its tensors, ``batch_loss(view, train positions, epoch)`` and ``valid_loss(view)``."""
    tensors, batch, valid = [], [], []
    for d in datas:
        t = _Tensors.of(d, device)
        b, v = _losses(d, cfg, t, device)
        tensors.append(t)
        batch.append(b)
        valid.append(v)
    for t, n in zip(tensors, names):
        view = model.view(n)
        view.init_bias((t.Y[t.train] * t.W[t.train]).sum((0, 1)) / t.W[t.train].sum((0, 1)).clamp_min(1.0))
    return tensors, batch, valid


def mixed_batch_loss(model: JointModel, parts: Sequence[tuple[str, BatchLoss, Tensor]]) -> BatchLoss:
    """A batch loss over several sessions' training trials at once.

    ``parts``: (session name, its batch loss, positions of its training trials that this pool uses).  The
    pool is their concatenation; a batch of pool positions is split by session and the losses averaged with
    weights proportional to each session's share of the batch.
    """
    sizes = torch.tensor([len(p[2]) for p in parts])
    ends = torch.cumsum(sizes, 0)

    def loss(_: nn.Module, b: Tensor, epoch: int) -> Tensor:
        total: Tensor | None = None
        for (name, fn, pos), end, size in zip(parts, ends.tolist(), sizes.tolist()):
            sel = b[(b >= end - size) & (b < end)] - (end - size)
            if len(sel) == 0:
                continue
            part = fn(model.view(name), pos.to(b.device)[sel], epoch) * (len(sel) / len(b))
            total = part if total is None else total + part
        assert total is not None
        return total

    return loss


def fit_joint(model: JointModel, names: Sequence[str], batch: Sequence[BatchLoss],
              valid: Sequence[Callable[[nn.Module], float]], n_train: Sequence[int], n_valid: Sequence[int], *,
              train: Callable[..., Any], seed: int, warm_start: bool = True) -> dict[str, Any]:
    """Fit all sessions with one generator; warm-started in three stages when there are several (see
    :func:`cortexfit.fit.group.run`): the first session alone, then the other sessions' heads with the shared
    modules frozen, then everything at :data:`FINE_TUNE_LR` times the learning rate.

    ``train(model, batch_loss, valid_loss, n_train=..., seed=..., desc=..., groups=..., lr_factor=...)`` runs one
    stage (:func:`cortexfit.fit.loop.train` with the fit's options); each stage's validation loss is the
    valid-trial-weighted mean over its sessions.  Returns ``rows`` ((stage label, history row) per epoch), the
    total ``epochs`` and ``seconds``, and ``info`` (last stage's best epoch and loss, the stage labels).
    """
    parts = [(n, batch[j], torch.arange(n_train[j])) for j, n in enumerate(names)]
    stages = [("all", list(names), True)]
    if warm_start and len(names) > 1:
        stages = [(f"warm-up:{names[0]}", list(names[:1]), True), ("heads", list(names[1:]), False), *stages]
    rows: list[tuple[str, dict[str, float]]] = []
    epochs, seconds, res = 0, 0.0, None
    for k, (label, members, shared) in enumerate(stages):
        idx = [names.index(n) for n in members]
        model.train_only(members, shared=shared)

        def valid_loss(_m: nn.Module, idx: list[int] = idx) -> float:
            return float(np.average([valid[j](model.view(names[j])) for j in idx], weights=[n_valid[j] for j in idx]))

        stage = "" if len(stages) == 1 else f", stage {k + 1}/{len(stages)}: {label}"
        res = train(model, mixed_batch_loss(model, [parts[j] for j in idx]), valid_loss,
                    n_train=sum(n_train[j] for j in idx), seed=seed + 7919 * k, groups=[n_train[j] for j in idx],
                    desc=f"jointly ({len(names)} sessions{stage})",
                    lr_factor=FINE_TUNE_LR if len(stages) > 1 and label == "all" else 1.0)
        rows += [(label, h) for h in res.history]
        epochs, seconds = epochs + res.epochs, seconds + res.seconds
    model.train_only(names)
    assert res is not None
    return {"rows": rows, "epochs": epochs, "seconds": seconds,
            "info": {"best_epoch": res.best_epoch, "best_valid_loss": res.best_valid, "stages": [s[0] for s in stages]}}


def session_result(model: JointModel, name: str, data: FitData, t: _Tensors, *, epochs: int, seconds: float,
                   history: list[dict[str, float]], info: dict) -> FitResult:
    """Predictions of one session's view and a ``save_model`` writing it as a single-session latent model."""
    from cortexfit import models
    from cortexfit.fit.latent import INPUTS_ALIGNMENT

    view = model.view(name)
    view.eval()
    pred = predict_all(view, data, t)
    m_ctrl = view.controller
    gen_inputs = list(data.input_names) + [f"controller:{i}" for i in range(m_ctrl)] or ["zero"]

    def save(path: Path) -> None:
        enc = compose_encoder(cast(ReadInEncoder, view.encoder))
        models.save_model(path, view.dynamics, modules={"encoder": enc, "readout": view.readout},
                          meta={"dt_s": data.bin_width_s, "mode": "latent", "exp_link": data.spikes,
                                "input_names": list(data.input_names), "controller": m_ctrl,
                                "generator_inputs": gen_inputs, "n_enc_bins": data.n_enc,
                                "joint_session": name, "joint_sessions": model.names})

    n_params = sum(p.numel() for p in view.parameters())
    return FitResult(rates=pred["rates"], states=pred["states"], factors=pred["factors"], n_params=n_params,
                     epochs=epochs, seconds=seconds, save_model=save, history=history, info=info,
                     inputs=pred["inputs"], input_names=gen_inputs, inputs_alignment=INPUTS_ALIGNMENT)


def split_units(ds: xr.Dataset, n_parts: int, *, seed: int = 0) -> list[xr.Dataset]:
    """One activity dataset -> ``n_parts`` pseudo-sessions with disjoint random subsets of its units.

    Every part keeps all trials and bins (and the file's attrs); only the units differ.  A way to test joint fits
    on a real recording: the same dynamical system, recorded through different neurons.

    Examples
    --------
    >>> from cortexfit.core import convention
    >>> y = np.zeros((6, 10, 7), "uint16")
    >>> a, b = split_units(convention.new_activity(y, time=np.arange(10.0), bin_width_s=1.0), 2)
    >>> a.sizes["unit"] + b.sizes["unit"], set(a["unit"].values) & set(b["unit"].values)
    (7, set())
    """
    from cortexfit.core import convention

    nd = convention.neuron_dim(ds)
    n = ds.sizes[nd]
    if not 1 <= n_parts <= n:
        raise FitError(f"cannot split {n} units into {n_parts} sessions")
    order = np.random.default_rng(seed).permutation(n)
    return [ds.isel({nd: np.sort(part)}) for part in np.array_split(order, n_parts)]
