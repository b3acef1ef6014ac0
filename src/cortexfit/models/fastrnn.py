"""Fast forward/backward of the leaky rate recurrence (a custom :class:`torch.autograd.Function`).

The recurrence, time-major, with the input drive ``X[t] = U u_t + b`` computed beforehand in one matmul::

    z_t = W h_{t-1} + X[t]
    h_t = (1 - alpha) h_{t-1} + alpha * phi(z_t) + E[t]        (E: optional process noise, no gradient)

Autograd on a Python loop records ~5 graph nodes per step and accumulates ``dW`` one step at a time.  Here
the forward stores only ``phi(z_t)`` and the backward runs the recurrence backward in time computing just
the per-step (B, H) gradients ``delta_t = dL/dz_t``; the weight gradient is then ONE matmul over all steps,
``dW = sum_t delta_t^T h_{t-1}``, and ``dX = delta`` (so ``dU`` and ``db`` are one matmul/sum in autograd).

Examples
--------
>>> import torch
>>> X = torch.randn(5, 2, 3)
>>> W = 0.5 * torch.randn(3, 3)
>>> H = leaky_rnn(X, W, torch.zeros(2, 3), alpha=0.2, nonlinearity="tanh")
>>> H.shape
torch.Size([5, 2, 3])
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

NONLINEARITIES = ("tanh", "relu", "softplus")


def phi_of(name: str):
    """The elementwise nonlinearity ``name`` as a torch function.

    Examples
    --------
    >>> phi_of("relu")(torch.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """
    return {"tanh": torch.tanh, "relu": torch.relu, "softplus": torch.nn.functional.softplus}[name]


def dphi_from_phi(phi: Tensor, name: str) -> Tensor:
    """phi'(z) expressed through phi(z) (tanh: 1 - phi^2; relu: phi > 0; softplus: 1 - exp(-phi)).

    Examples
    --------
    >>> dphi_from_phi(torch.tensor([0.0]), "tanh").tolist()
    [1.0]
    """
    if name == "tanh":
        return 1.0 - phi * phi
    if name == "relu":
        return (phi > 0).to(phi.dtype)
    return -torch.expm1(-phi)


def _forward_rows(X: Tensor, Wt: Tensor, h0: Tensor, alpha: float, name: str, E: Tensor | None, H: Tensor,
                  Phi: Tensor) -> None:
    """Run the recurrence, writing the states into ``H`` and phi(z_t) into ``Phi`` (both (T, B, N))."""
    h = h0
    act = phi_of(name)
    for t in range(X.shape[0]):
        p = torch.addmm(X[t], h, Wt, out=Phi[t])
        if name == "tanh":
            p.tanh_()
        elif name == "relu":
            p.relu_()
        else:
            p.copy_(act(p))
        if alpha == 1.0:
            h = H[t].copy_(p) if E is None else torch.add(p, E[t], out=H[t])
        else:
            h = torch.lerp(h, p, alpha, out=H[t])  # (1 - alpha) h + alpha p
            if E is not None:
                h.add_(E[t])


def _backward_rows(G: Tensor, A: Tensor, W: Tensor, alpha: float) -> Tensor:
    """Backward in time: overwrites ``A`` (alpha phi'(z_t)) with dL/dz_t step by step; returns dL/dh0."""
    carry = None
    for t in range(G.shape[0] - 1, -1, -1):
        g = G[t] if carry is None else G[t] + carry
        d = A[t].mul_(g)
        carry = torch.addmm(g, d, W, beta=1.0 - alpha) if alpha != 1.0 else torch.mm(d, W)
    return carry if carry is not None else torch.zeros_like(G[0])


class _LeakyRNN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X: Tensor, W: Tensor, h0: Tensor, alpha: float, name: str, E: Tensor | None):
        X = X.contiguous()
        Wt = W.t().contiguous()
        H, Phi = torch.empty_like(X), torch.empty_like(X)

        _forward_rows(X, Wt, h0, alpha, name, E, H, Phi)
        ctx.save_for_backward(W, h0, H, Phi)
        ctx.alpha, ctx.name = alpha, name
        return H

    @staticmethod
    @once_differentiable
    def backward(ctx, G: Tensor):
        W, h0, H, Phi = ctx.saved_tensors
        alpha = ctx.alpha
        Delta = dphi_from_phi(Phi, ctx.name)  # alpha phi'(z), overwritten step by step with dL/dz_t
        if alpha != 1.0:
            Delta.mul_(alpha)
        G = G.contiguous()
        carry = _backward_rows(G, Delta, W, alpha)
        dW = dh0 = None
        if ctx.needs_input_grad[1]:  # ONE matmul over all steps: sum_t delta_t^T h_{t-1}
            N = H.shape[-1]
            dW = Delta[1:].reshape(-1, N).t() @ H[:-1].reshape(-1, N)
            dW.addmm_(Delta[0].t(), h0)
        if ctx.needs_input_grad[2]:
            dh0 = carry
        return Delta, dW, dh0, None, None, None


def leaky_rnn(
    X: Tensor, W: Tensor, h0: Tensor, *, alpha: float, nonlinearity: str, noise: Tensor | None = None
) -> Tensor:
    """Leaky rate recurrence with the fast custom backward.

    Parameters
    ----------
    X
        (T, B, N) input drive ``U u_t + b``, time-major.
    W
        (N, N) effective recurrent weight.
    h0
        (B, N) initial state.
    alpha
        ``dt / tau`` in (0, 1]; 1 gives the vanilla RNN ``h_t = phi(z_t)``.
    nonlinearity
        ``"tanh"``, ``"relu"`` or ``"softplus"``.
    noise
        Optional (T, B, N) additive process noise (no gradient).

    Returns
    -------
    Tensor
        (T, B, N) states ``h_1 .. h_T``.

    Examples
    --------
    >>> X = torch.randn(4, 1, 2, dtype=torch.float64, requires_grad=True)
    >>> W = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    >>> h0 = torch.zeros(1, 2, dtype=torch.float64)
    >>> torch.autograd.gradcheck(lambda X, W: leaky_rnn(X, W, h0, alpha=0.5, nonlinearity="tanh"), (X, W))
    True
    """
    if noise is not None:
        noise = noise.detach().contiguous()
    return _LeakyRNN.apply(X, W, h0, float(alpha), nonlinearity, noise)


def leaky_rnn_reference(
    X: Tensor, W: Tensor, h0: Tensor, *, alpha: float, nonlinearity: str, noise: Tensor | None = None
) -> Tensor:
    """The same recurrence as :func:`leaky_rnn` with plain autograd (the reference for tests).

    Examples
    --------
    >>> X = torch.randn(3, 1, 2)
    >>> W = torch.randn(2, 2)
    >>> h0 = torch.zeros(1, 2)
    >>> a = leaky_rnn(X, W, h0, alpha=0.3, nonlinearity="relu")
    >>> torch.allclose(a, leaky_rnn_reference(X, W, h0, alpha=0.3, nonlinearity="relu"))
    True
    """
    act = phi_of(nonlinearity)
    h, out = h0, []
    for t in range(X.shape[0]):
        p = act(X[t] + h @ W.t())
        h = p if alpha == 1.0 else (1.0 - alpha) * h + alpha * p
        if noise is not None:
            h = h + noise[t]
        out.append(h)
    return torch.stack(out)
