"""A numpy-in/numpy-out echo-state estimator for one long time series (benchmark helper, not the pipeline).

``benchmarks/bench_models.py`` uses it to compare the reservoir + ridge machinery of :mod:`cortexfit.models.esn`
with reservoirpy on Mackey-Glass; the workflow's ``esn`` family runs :func:`cortexfit.fit.esn.fit_esn`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor

from cortexfit.core.errors import ConfigError, FitError
from cortexfit.core.runtime import limit_threads
from cortexfit.models.esn import ESNOptions, make_reservoir, measure_washout, run_reservoir, run_reservoir_parallel
from cortexfit.models.readouts import RidgeReadout, fit_readout


class EchoStateNetwork:
    """Echo-state network estimator for one long time series: ``fit(X, y)`` then ``predict(X)``.

    Parameters
    ----------
    units, spectral_radius, leak_rate, input_scaling, bias_scaling, sparsity, seed
        Reservoir hyperparameters (see :class:`ESNOptions`).
    ridge
        Ridge value; None = chosen by 5-fold CV over contiguous blocks.
    warmup
        Initial steps of ``fit`` left out of the regression (reservoir transient).
    chunk_length
        None: run the reservoir step by step (exact).  An int L: split the series into chunks of L steps run in
        parallel as one batch, each started ``chunk_washout`` steps early from a zero state (the echo-state
        property makes the states agree with the sequential run to ~``contraction**chunk_washout``).
    chunk_washout
        Overlap of parallel chunks; default: measured on the reservoir and the first inputs
        (:func:`cortexfit.models.esn.measure_washout`: steps until runs from different states agree to 1e-7).
        A spectral radius below 1 does not bound it: one step contracts by at most the largest singular value.
    device, dtype
        Where and in which precision the reservoir runs (``"cuda"`` when available is fine).
    loop_threads
        Parallelism of the reservoir loop on CPU (None: ``torch.get_num_threads()``).  Parallel chunks are split
        over that many Python worker threads with one torch thread each; the exact sequential run uses
        ``loop_threads`` torch threads (default 1: one sparse product per step is too small to share).
    reservoir
        Optional ``(W, W_in, b)`` arrays to use instead of drawing them (e.g. another library's reservoir).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(3000)
    >>> s = np.sin(0.05 * t)
    >>> esn = EchoStateNetwork(units=100, ridge=1e-6, warmup=50).fit(s[:-1, None], s[1:])
    >>> pred = esn.predict(s[:-1, None])
    >>> float(np.sqrt(np.mean((pred[100:, 0] - s[101:]) ** 2))) < 1e-2
    True
    """

    def __init__(
        self, *, units: int = 1000, spectral_radius: float = 0.9, leak_rate: float = 0.3, input_scaling: float = 1.0,
        bias_scaling: float = 0.0, sparsity: float = 0.9, seed: int = 0, ridge: float | None = 1e-6,
        warmup: int = 100, chunk_length: int | None = None, chunk_washout: int | None = None,
        device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
        reservoir: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, loop_threads: int | None = None,
    ) -> None:
        self.options = ESNOptions(spectral_radius=spectral_radius, leak_rate=leak_rate, input_scaling=input_scaling,
                                  bias_scaling=bias_scaling, sparsity=sparsity, seed=seed, ridge=ridge)
        if units < 1 or warmup < 0 or (chunk_length is not None and chunk_length < 1):
            raise ConfigError("EchoStateNetwork: units and chunk_length must be positive and warmup >= 0")
        self.units, self.warmup, self.chunk_length = int(units), int(warmup), chunk_length
        self.chunk_washout = None if chunk_washout is None else int(chunk_washout)
        self.device, self.dtype = torch.device(device), dtype
        self.reservoir, self.loop_threads = reservoir, loop_threads
        self.readout_: RidgeReadout | None = None
        self.state_: Tensor | None = None

    def _build(self, n_in: int) -> None:
        if self.reservoir is None:
            W, W_in, b = make_reservoir(self.units, n_in, self.options)
        else:
            W, W_in, b = (np.asarray(a.toarray() if hasattr(a, "toarray") else a, dtype=float) for a in self.reservoir)
            b = np.array(np.broadcast_to(b.reshape(-1), (W.shape[0],)))
            if W.shape != (self.units, self.units) or W_in.shape != (self.units, n_in):
                raise ConfigError(f"EchoStateNetwork: reservoir shapes {W.shape}, {W_in.shape} do not fit "
                                  f"{self.units} units and {n_in} inputs")
        kw = {"device": self.device, "dtype": self.dtype}
        self.W_in_, self.b_ = torch.as_tensor(W_in, **kw), torch.as_tensor(b, **kw)
        self.W_ = torch.as_tensor(W, **kw)
        if self.device.type == "cpu" and np.count_nonzero(W) <= 0.2 * W.size:  # CSR matmul is faster on CPU
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                self.W_ = self.W_.to_sparse_csr()
        self.n_in_ = n_in

    def states(self, X: np.ndarray | Tensor, x0: Tensor | None = None) -> Tensor:
        """Reservoir states (T, units) for inputs X (T, I), starting from ``x0`` (zeros if None)."""
        U = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X, dtype=self.dtype, device=self.device)
        if U.dim() == 1:
            U = U[:, None]
        if getattr(self, "n_in_", None) != U.shape[1]:
            self._build(U.shape[1])
        T = U.shape[0]
        drive = torch.addmm(self.b_, U, self.W_in_.t())  # (T, N)
        x0 = torch.zeros(1, self.units, dtype=self.dtype, device=self.device) if x0 is None else x0
        L = self.chunk_length
        if L is not None and self.chunk_washout is None:
            probe = U[: min(T, 20 * L)]
            dense = self.W_.to_dense() if self.W_.is_sparse_csr else self.W_
            w_meas = measure_washout(dense.double().cpu(), self.W_in_.double().cpu(), self.b_.double().cpu(),
                                     self.options.leak_rate, probe.double().cpu())
            if w_meas is None:
                raise ConfigError(f"EchoStateNetwork: the reservoir does not forget its start within {len(probe)} "
                                  "steps; set chunk_washout or chunk_length=None")
            self.chunk_washout = 2 * w_meas  # margin over the measured washout
        w = int(self.chunk_washout or 0)
        if L is None or T <= 2 * (L + w):
            with limit_threads(self.loop_threads or 1):  # one small product per step: not worth sharing
                return run_reservoir(drive[:, None], self.W_, x0, self.options.leak_rate)[:, 0]
        head = L + w  # chunk 0 runs exactly from x0; chunks c >= 1 start w steps early from zeros
        n_chunks = 1 + math.ceil((T - head) / L)
        pad = torch.zeros(max(0, head + (n_chunks - 1) * L - T), self.units, dtype=self.dtype, device=self.device)
        padded = torch.cat([drive, pad])
        starts = [0] + [head + (c - 1) * L - w for c in range(1, n_chunks)]
        batch = torch.stack([padded[s : s + head] for s in starts], dim=1)  # (L + w, n_chunks, N)
        init = torch.zeros(n_chunks, self.units, dtype=self.dtype, device=self.device)
        init[0] = x0[0]
        out = run_reservoir_parallel(batch, self.W_, init, self.options.leak_rate, self.loop_threads)
        pieces = [out[:, 0]] + [out[w:, c] for c in range(1, n_chunks)]
        return torch.cat(pieces)[:T]

    def fit(self, X: np.ndarray, y: np.ndarray) -> EchoStateNetwork:
        """Run the reservoir over X (T, I) from zeros and fit the ridge readout to y (T,) or (T, O)."""
        X = np.asarray(X, dtype=float)
        X = X[:, None] if X.ndim == 1 else X
        y = np.asarray(y, dtype=float)
        if y.shape[0] != X.shape[0] or X.shape[0] <= self.warmup + 1:
            raise FitError(f"EchoStateNetwork.fit: X {X.shape} and y {y.shape} need equal length > warmup + 1")
        self._build(X.shape[1])
        S = self.states(X)
        Y = torch.as_tensor(y.reshape(len(y), -1), dtype=self.dtype, device=self.device)
        alphas = None if self.options.ridge is None else [self.options.ridge]
        self.readout_ = fit_readout(S[self.warmup :], Y[self.warmup :], alphas)
        self.state_ = S[-1:].clone()
        return self

    def predict(self, X: np.ndarray, *, reset: bool = False) -> np.ndarray:
        """Outputs (T, O) for inputs X (T, I), continuing from the last state of fit/predict (zeros if reset)."""
        if self.readout_ is None:
            raise FitError("EchoStateNetwork.predict: call fit first")
        S = self.states(X, None if reset else self.state_)
        self.state_ = S[-1:].clone()
        with torch.no_grad():
            return self.readout_(S).cpu().numpy()
