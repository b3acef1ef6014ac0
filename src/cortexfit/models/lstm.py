"""The ``lstm`` family: :class:`torch.nn.LSTM` with the state ``[h, c]`` exposed (state_size 2H).

:meth:`LSTMDynamics.forward` runs the fused ``nn.LSTM`` kernel for ``h_1 .. h_T``, then recovers the cell
states ``c_t`` from the gates (one batched matmul over all steps plus an elementwise recurrence);
:meth:`LSTMDynamics.step` applies the ``nn.LSTMCell`` equations with the same weights.

Examples
--------
>>> import torch
>>> from cortexfit.models import build_dynamics
>>> net = build_dynamics("lstm", input_size=3, hidden_size=4)
>>> s = net(torch.randn(2, 5, 3))
>>> s.shape, net.hidden(s).shape
(torch.Size([2, 5, 8]), torch.Size([2, 5, 4]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from cortexfit.models.base import Dynamics, register


@dataclass(frozen=True, kw_only=True)
class LSTMOptions:
    """Options of ``lstm``.

    forget_bias : added to the forget-gate bias at initialisation (1.0 helps long memories).
    """

    forget_bias: float = 1.0


@register("lstm")
class LSTMDynamics(Dynamics):
    """One-layer LSTM; state ``[h, c]`` (B, 2H), read out through ``h``.

    Examples
    --------
    >>> import torch
    >>> from cortexfit.models import build_dynamics
    >>> net = build_dynamics("lstm", input_size=2, hidden_size=3)
    >>> net.step(net.initial_state(4), torch.zeros(4, 2)).shape
    torch.Size([4, 6])
    """

    Options = LSTMOptions

    def __init__(self, *, input_size: int, hidden_size: int, options: LSTMOptions | None = None) -> None:
        super().__init__(input_size=input_size, hidden_size=hidden_size, options=options)
        H = self.hidden_size
        self.lstm = nn.LSTM(self.input_size, H, batch_first=True)
        with torch.no_grad():
            bias_ih = cast(Tensor, self.lstm.bias_ih_l0)  # nn.LSTM sets its parameters by name: Tensor | Module
            bias_ih[H : 2 * H] += self.options.forget_bias
        self.state_size = 2 * H

    def recurrent_weight(self) -> None:
        """None: the LSTM has no single state-to-state matrix; analyses use :meth:`step` and its Jacobian."""
        return

    def _gates(self, u: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        lstm = self.lstm  # its parameters, set by name, are typed Tensor | Module
        w_ih, w_hh, b_ih, b_hh = cast(tuple[Tensor, Tensor, Tensor, Tensor],
                                      (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0))
        z = u @ w_ih.t() + h @ w_hh.t() + b_ih + b_hh
        i, f, g, o = z.chunk(4, dim=-1)
        return torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)

    def step(self, state: Tensor, u: Tensor) -> Tensor:
        """``nn.LSTMCell`` update: (B, 2H), (B, I) -> (B, 2H)."""
        H = self.hidden_size
        h, c = state[:, :H], state[:, H:]
        i, f, g, o = self._gates(u, h)
        c_new = f * c + i * g
        return torch.cat([o * torch.tanh(c_new), c_new], dim=-1)

    def forward(self, u: Tensor, state0: Tensor | None = None) -> Tensor:
        """(B, T, I) -> (B, T, 2H) with the fused kernel for h and a cheap elementwise pass for c."""
        self._check_input(u)
        B, T, H = u.shape[0], u.shape[1], self.hidden_size
        s0 = self.initial_state(B) if state0 is None else state0
        if T == 0:
            return u.new_zeros(B, 0, self.state_size)
        h0, c0 = s0[:, :H], s0[:, H:]
        hs, _ = self.lstm(u, (h0.unsqueeze(0).contiguous(), c0.unsqueeze(0).contiguous()))
        h_prev = torch.cat([h0.unsqueeze(1), hs[:, :-1]], dim=1)
        i, f, g, _ = self._gates(u, h_prev)
        ig = i * g
        cs = []
        c = c0
        for t in range(T):
            c = torch.addcmul(ig[:, t], f[:, t], c)
            cs.append(c)
        return torch.cat([hs, torch.stack(cs, dim=1)], dim=-1)
