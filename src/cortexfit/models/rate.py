"""The ``rate`` and ``vanilla`` families: (leaky) rate networks with Dale's law, low rank and STP options.

``rate`` Euler-steps ``tau dh/dt = -h + phi(W h + U u + b)`` with ``alpha = dt / tau``::

    h <- (1 - alpha) h + alpha phi(W h + U u + b) [+ sqrt(alpha) * noise_std * xi while training]

``vanilla`` is the same network with ``alpha = 1`` exactly (``h <- phi(W h + U u + b)``), e.g. a trained
``torch.nn.RNN`` loaded with :func:`from_torch_rnn`.  Parameters: ``weight_ih`` (U, (H, I)), ``bias`` (b, (H,))
and either ``weight_hh`` (W, or under Dale's law its raw magnitudes) or, with ``rank``, ``m`` and ``n``
(``W = g chi + m n^T / H`` with a fixed random ``chi``).  With Dale's law and ``rank`` together the E/I
construction of Mastrogiuseppe & Ostojic (2018) keeps both: ``W = |g chi| s + m+ (n+ s)^T / H`` where ``s`` are
the columns' signs (+ excitatory, - inhibitory) and ``m+ = |m|``, ``n+ = |n|``, so every column keeps its sign
and ``W`` minus its random part has rank ``rank`` with the outlier ``n_eff . m_eff / H``.
:meth:`RateDynamics.recurrent_weight` returns the effective W.  Without STP, :meth:`RateDynamics.forward` uses the
fast custom backward of
:mod:`cortexfit.models.fastrnn` (on CUDA with alpha = 1, tanh/relu and no noise: torch's fused RNN kernel);
with STP it iterates :meth:`RateDynamics.step` under autograd.

Examples
--------
>>> import torch
>>> from cortexfit.models import build_dynamics
>>> net = build_dynamics("rate", input_size=2, hidden_size=10, dale=True, stp=True, rank=2)
>>> net.state_size
30
>>> bool((net.recurrent_weight()[:, :8] >= 0).all() and (net.recurrent_weight()[:, 8:] <= 0).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from cortexfit.core.errors import ConfigError
from cortexfit.models.base import Dynamics, register
from cortexfit.models.fastrnn import leaky_rnn, phi_of
from cortexfit.models.stp import SYNAPSE_TYPES, stp_parameters, stp_update

Nonlinearity = Literal["tanh", "relu", "softplus"]
SynapseType = Literal["facilitating", "depressing"]


def _positive(family: str, **values: float) -> None:
    for k, v in values.items():
        if not v > 0 or not math.isfinite(v):
            raise ConfigError(f"model {family!r}: option {k} must be a positive finite number, got {v!r}")


@dataclass(frozen=True, kw_only=True)
class VanillaOptions:
    """Options of ``vanilla`` (and the shared part of ``rate``).

    nonlinearity : "tanh", "relu" or "softplus".
    noise_std : std of the process noise added while training (scaled by sqrt(alpha)); 0 = none.
    g : initial gain: spectral radius of W at init (and the gain of ``chi`` with ``rank``).
    dale : every presynaptic unit (column of W) excitatory or inhibitory, kept through training.
    frac_exc : fraction of excitatory units under Dale's law.
    rank : low-rank structure ``W = g chi + m n^T / H`` with learnable ``m``, ``n`` (H, rank); None = full W.
        With ``dale`` the low-rank part is sign-constrained so Dale's law and the rank both hold (module doc).
    fast_path : use the custom-backward kernel where the options allow (no STP).
    """

    nonlinearity: Nonlinearity = "tanh"
    noise_std: float = 0.0
    g: float = 0.9
    dale: bool = False
    frac_exc: float = 0.8
    rank: int | None = None
    fast_path: bool = True

    def __post_init__(self) -> None:
        fam = "vanilla" if type(self) is VanillaOptions else "rate"
        if self.noise_std < 0:
            raise ConfigError(f"model {fam!r}: option noise_std must be >= 0, got {self.noise_std}")
        _positive(fam, g=self.g)
        if not 0.0 < self.frac_exc < 1.0:
            raise ConfigError(f"model {fam!r}: option frac_exc must be in (0, 1), got {self.frac_exc}")
        if self.rank is not None and self.rank < 1:
            raise ConfigError(f"model {fam!r}: option rank must be a positive integer or null, got {self.rank}")


@dataclass(frozen=True, kw_only=True)
class RateOptions(VanillaOptions):
    """Options of ``rate``: those of :class:`VanillaOptions` plus time constants and STP.

    dt, tau : Euler step and membrane time constant in seconds (alpha = dt / tau, at most 1).
    stp : Tsodyks-Markram short-term plasticity on recurrent synapses (state = [h, u, x]).
    stp_type : synapse type of every unit without Dale's law ("facilitating" or "depressing").
    stp_exc, stp_inh : synapse types of E and I units under Dale's law.
    max_rate_hz : firing rate (Hz) of a unit at h = 1, driving the STP kinetics.
    """

    dt: float = 0.01
    tau: float = 0.1
    stp: bool = False
    stp_type: SynapseType = "facilitating"
    stp_exc: SynapseType = "facilitating"
    stp_inh: SynapseType = "depressing"
    max_rate_hz: float = 50.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("rate", dt=self.dt, tau=self.tau, max_rate_hz=self.max_rate_hz)
        if self.dt > self.tau:
            raise ConfigError(f"model 'rate': dt ({self.dt}) must not exceed tau ({self.tau}) (alpha = dt/tau <= 1)")
        for k in ("stp_type", "stp_exc", "stp_inh"):
            if getattr(self, k) not in SYNAPSE_TYPES:
                raise ConfigError(f"model 'rate': option {k} must be one of {sorted(SYNAPSE_TYPES)}")


def _spectral_radius(W: Tensor) -> float:
    return float(torch.linalg.eigvals(W.detach().double()).abs().max())


@register("rate")
class RateDynamics(Dynamics):
    """Leaky continuous-time rate network (see the module docstring).

    Examples
    --------
    >>> import torch
    >>> from cortexfit.models import build_dynamics
    >>> net = build_dynamics("rate", input_size=3, hidden_size=5, dt=0.01, tau=0.05)
    >>> round(net.alpha, 6)
    0.2
    >>> u = torch.randn(2, 7, 3)
    >>> torch.allclose(net(u), net.forward_reference(u), atol=1e-6)
    True
    """

    Options: ClassVar[type[VanillaOptions]] = RateOptions

    # buffers registered in __init__ when the options call for them (chi: rank; sign, col_scale: dale; stp_*: stp)
    chi: Tensor
    sign: Tensor
    col_scale: Tensor
    stp_U: Tensor
    stp_tau_F: Tensor
    stp_tau_D: Tensor

    def __init__(self, *, input_size: int, hidden_size: int, options: VanillaOptions | None = None) -> None:
        super().__init__(input_size=input_size, hidden_size=hidden_size, options=options)
        o, H, I = self.options, self.hidden_size, self.input_size
        self.weight_ih = nn.Parameter(torch.randn(H, I) / math.sqrt(I))
        self.bias = nn.Parameter(torch.zeros(H))
        if o.rank is None:
            init = torch.randn(H, H).abs() / math.sqrt(H) if o.dale else o.g * torch.randn(H, H) / math.sqrt(H)
            self.weight_hh = nn.Parameter(init)
        else:
            if o.rank > H:
                raise ConfigError(f"model {self.family!r}: rank ({o.rank}) exceeds hidden_size ({H})")
            self.register_buffer("chi", torch.randn(H, H) / math.sqrt(H))
            self.m = nn.Parameter(torch.randn(H, o.rank))
            self.n = nn.Parameter(torch.randn(H, o.rank))
        n_exc = min(H - 1, max(1, round(o.frac_exc * H))) if H > 1 else 1
        self.n_exc = n_exc if o.dale else H
        if o.dale:
            sign = torch.ones(H)
            sign[n_exc:] = -1.0
            balance = torch.ones(H)
            balance[n_exc:] = n_exc / max(1, H - n_exc)  # E and I inputs cancel on average (balanced)
            self.register_buffer("sign", sign)
            self.register_buffer("col_scale", sign * balance)
            with torch.no_grad():  # global scale: the random E/I part has spectral radius g at initialisation
                self.col_scale.mul_(o.g / max(_spectral_radius(self._dale_random_part()), 1e-12))
        if getattr(o, "stp", False):
            if o.dale:
                types = [o.stp_exc] * n_exc + [o.stp_inh] * (H - n_exc)
            else:
                types = [o.stp_type] * H
            for k, v in stp_parameters(types).items():
                self.register_buffer(f"stp_{k}", v)
            self.state_size = 3 * H

    # ------------------------------------------------------------------ properties
    @property
    def alpha(self) -> float:
        """Euler factor dt / tau (1 for ``vanilla``)."""
        return self.options.dt / self.options.tau

    @property
    def has_stp(self) -> bool:
        return bool(getattr(self.options, "stp", False))

    def _dale_random_part(self) -> Tensor:
        """Under Dale's law: the sign-constrained full-rank part ``|weight_hh| s`` or ``|g chi| s``."""
        o = self.options
        raw = self.weight_hh if o.rank is None else o.g * self.chi
        return raw.abs() * self.col_scale

    def low_rank_part(self) -> Tensor | None:
        """The rank-``rank`` structure ``m n^T / H`` of W (sign-constrained under Dale's law), or None."""
        o = self.options
        if o.rank is None:
            return None
        if o.dale:
            return self.m.abs() @ (self.n.abs() * self.sign[:, None]).t() / self.hidden_size
        return self.m @ self.n.t() / self.hidden_size

    def recurrent_weight(self) -> Tensor:
        """Effective (H, H) recurrent weight W (Dale signs and low rank applied), differentiable."""
        o = self.options
        low = self.low_rank_part()
        if o.dale:
            W = self._dale_random_part()
            return W if low is None else W + low
        return self.weight_hh if low is None else o.g * self.chi + low

    def initial_state(self, batch: int) -> Tensor:
        """Zeros for h; with STP u = U and x = 1 (synapses at rest)."""
        s = super().initial_state(batch)
        if self.has_stp:
            H = self.hidden_size
            s[:, H : 2 * H] = self.stp_U
            s[:, 2 * H :] = 1.0
        return s

    # ------------------------------------------------------------------ dynamics
    def _noise_like(self, h: Tensor) -> Tensor | None:
        if not (self.training and self.options.noise_std > 0):
            return None
        return torch.randn_like(h) * (self.options.noise_std * math.sqrt(self.alpha))

    def step(self, state: Tensor, u: Tensor) -> Tensor:
        """One Euler step: (B, S), (B, I) -> (B, S)."""
        H, W = self.hidden_size, self.recurrent_weight()
        h = state[:, :H]
        pre = h
        if self.has_stp:  # synapses see and transmit the non-negative rate
            us, xs = state[:, H : 2 * H], state[:, 2 * H :]
            pre = us * xs * h.clamp(min=0.0)
        p = phi_of(self.options.nonlinearity)(pre @ W.t() + u @ self.weight_ih.t() + self.bias)
        h_new = p if self.alpha == 1.0 else (1.0 - self.alpha) * h + self.alpha * p
        noise = self._noise_like(h_new)
        if noise is not None:
            h_new = h_new + noise
        if not self.has_stp:
            return h_new
        params = {"U": self.stp_U, "tau_F": self.stp_tau_F, "tau_D": self.stp_tau_D}
        rate_hz = self.options.max_rate_hz * h.clamp(min=0.0)
        us, xs = stp_update(us, xs, params, dt=self.options.dt, rate_hz=rate_hz)
        return torch.cat([h_new, us, xs], dim=-1)

    def forward(self, u: Tensor, state0: Tensor | None = None) -> Tensor:
        """(B, T, I) -> (B, T, S); the fast custom-backward path unless STP is on or ``fast_path`` is off."""
        self._check_input(u)
        if self.has_stp or not self.options.fast_path:
            return self.forward_reference(u, state0)
        B, T = u.shape[0], u.shape[1]
        h0 = self.initial_state(B) if state0 is None else state0
        if T == 0:
            return u.new_zeros(B, 0, self.state_size)
        noisy = self.training and self.options.noise_std > 0
        if u.is_cuda and self.alpha == 1.0 and self.options.nonlinearity != "softplus" and not noisy:
            return self.fused_rnn(u, h0)  # cuDNN: one kernel instead of a Python loop of small launches
        X = torch.addmm(self.bias, u.transpose(0, 1).reshape(T * B, -1), self.weight_ih.t()).view(T, B, -1)
        noise = None
        if noisy:
            noise = torch.randn_like(X) * (self.options.noise_std * math.sqrt(self.alpha))
        Hs = leaky_rnn(
            X, self.recurrent_weight(), h0, alpha=self.alpha, nonlinearity=self.options.nonlinearity, noise=noise
        )
        return Hs.transpose(0, 1)

    def fused_rnn(self, u: Tensor, h0: Tensor) -> Tensor:
        """alpha = 1 without noise through torch's fused ``rnn_tanh``/``rnn_relu`` (used on CUDA): (B, T, S)."""
        fn = torch.rnn_tanh if self.options.nonlinearity == "tanh" else torch.rnn_relu
        params = [self.weight_ih, self.recurrent_weight(), self.bias, torch.zeros_like(self.bias)]
        out, _ = fn(u, h0.unsqueeze(0).contiguous(), params, True, 1, 0.0, self.training, False, True)
        return out


@register("vanilla")
class VanillaDynamics(RateDynamics):
    """Discrete-time RNN ``h <- phi(W h + U u + b)`` (``rate`` with alpha = 1, no STP).

    Examples
    --------
    >>> from cortexfit.models import build_dynamics
    >>> build_dynamics("vanilla", input_size=1, hidden_size=2).alpha
    1.0
    """

    Options = VanillaOptions

    @property
    def alpha(self) -> float:
        return 1.0

    @classmethod
    def from_torch_rnn(cls, state_dict: Mapping[str, Tensor], *, nonlinearity: str = "tanh") -> VanillaDynamics:
        """Build from a ``torch.nn.RNN`` (single layer, batch_first) state dict; see :func:`from_torch_rnn`."""
        return from_torch_rnn(state_dict, nonlinearity=nonlinearity)


def from_torch_rnn(state_dict: Mapping[str, Tensor], *, nonlinearity: str = "tanh") -> VanillaDynamics:
    """A ``vanilla`` Dynamics reproducing a one-layer ``torch.nn.RNN`` with ``h0 = 0``.

    Parameters
    ----------
    state_dict
        The RNN's state dict: keys ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, possibly
        under a prefix (``rnn.weight_ih_l0``), or a checkpoint dict holding it under ``"state_dict"``.
    nonlinearity
        The RNN's nonlinearity (a state dict does not record it).

    Returns
    -------
    VanillaDynamics
        ``weight_hh = W_hh``, ``weight_ih = W_ih``, ``bias = b_ih + b_hh``.

    Examples
    --------
    >>> import torch
    >>> rnn = torch.nn.RNN(3, 5, batch_first=True)
    >>> net = from_torch_rnn(rnn.state_dict())
    >>> u = torch.randn(2, 4, 3)
    >>> torch.allclose(net(u), rnn(u)[0], atol=1e-6)
    True
    """
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    keys = [k for k in state_dict if k.endswith("weight_ih_l0")]
    if len(keys) != 1:
        raise ConfigError(f"from_torch_rnn: expected one '*weight_ih_l0' key, found {len(keys)}")
    prefix = keys[0][: -len("weight_ih_l0")]
    try:
        w_ih, w_hh = state_dict[prefix + "weight_ih_l0"], state_dict[prefix + "weight_hh_l0"]
    except KeyError as exc:
        raise ConfigError(f"from_torch_rnn: missing key {exc}") from exc
    if any(k.startswith(prefix + "weight_ih_l1") for k in state_dict):
        raise ConfigError("from_torch_rnn: only single-layer RNNs are supported")
    H, I = w_ih.shape
    b = torch.zeros(H, dtype=w_ih.dtype)
    for k in ("bias_ih_l0", "bias_hh_l0"):
        if prefix + k in state_dict:
            b = b + state_dict[prefix + k]
    opts = VanillaOptions(nonlinearity=nonlinearity)  # type: ignore[arg-type]
    net = VanillaDynamics(input_size=int(I), hidden_size=int(H), options=opts)
    with torch.no_grad():
        net.weight_ih.copy_(w_ih)
        net.weight_hh.copy_(w_hh)
        net.bias.copy_(b)
    return net
