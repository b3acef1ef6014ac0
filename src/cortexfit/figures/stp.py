"""Figure ``stp``: short-term synaptic plasticity and working memory held in facilitation.

1. Tsodyks-Markram synapses (the project's :mod:`cortexfit.models.stp`: ``du/dt = (U - u)/tau_F +
   U (1 - u) nu``, ``dx/dt = (1 - x)/tau_D - u x nu``; efficacy ``u x``) driven by a regular 20 Hz spike
   train (``nu = 1/dt`` in a spike's bin).  Facilitating synapses (small ``U``, long ``tau_F``) grow from
   spike to spike, paired-pulse ratio > 1; depressing ones (large ``U``, long ``tau_D``) shrink, ratio < 1.
2. Working memory in synaptic facilitation (Mongillo, Barak & Tsodyks 2008): the project's ``rate`` model
   with ``stp=True`` and ``dale=True`` (E units facilitating, I unit depressing), four excitatory
   populations and one inhibitory population.  A cue drives population 1; after it ends all activity stops,
   but the cued population's ``u`` decays only with ``tau_F = 1.5 s``.  One second later a non-specific
   readout pulse to every E population reactivates the cued population far more than the others.

Examples
--------
>>> import tempfile, pathlib
>>> make(pathlib.Path(tempfile.mkdtemp()), quick=True).passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from cortexfit.figures._common import FigureResult, numeric_check, render

if TYPE_CHECKING:
    from cortexfit.models.rate import RateDynamics

LAYOUT = (1, 3, 14.0, 4.0)
NAME = "stp"
TITLE = "Short-term plasticity: facilitation vs depression, and working memory in facilitation"
N_POP = 4  # excitatory populations (+ 1 inhibitory)


def synapse_train(types: list[str], *, rate_hz: float = 20.0, n_spikes: int = 8, recovery_s: float = 0.5,
                  dt: float = 5e-4) -> dict[str, np.ndarray]:
    """Efficacies ``u x`` at each spike of a regular train plus one recovery spike, and the traces.

    Examples
    --------
    >>> out = synapse_train(["facilitating", "depressing"])
    >>> out["amplitude"].shape
    (9, 2)
    """
    import torch

    from cortexfit.models.stp import stp_parameters, stp_update

    params = stp_parameters(types)
    spikes = [0.05 + k / rate_hz for k in range(n_spikes)]
    spikes.append(spikes[-1] + recovery_s)
    n_steps = round((spikes[-1] + 0.1) / dt)
    spike_steps = {round(s / dt) for s in spikes}
    u, x = params["U"].clone().double(), torch.ones(len(types), dtype=torch.float64)
    params = {k: v.double() for k, v in params.items()}
    us, xs, amps = [], [], []
    for step in range(n_steps):
        nu = torch.full_like(u, 1.0 / dt if step in spike_steps else 0.0)
        if step in spike_steps:
            amps.append((u * x).numpy())  # the efficacy the rate model uses: u x before the update
        u, x = stp_update(u, x, params, dt=dt, rate_hz=nu)
        us.append(u.numpy())
        xs.append(x.numpy())
    return {"t": np.arange(1, n_steps + 1) * dt, "u": np.array(us), "x": np.array(xs),
            "amplitude": np.array(amps), "spike_times": np.array(spikes)}


def working_memory(*, dt: float = 1e-3, delay_s: float = 1.0, cue_s: float = 0.25, readout_s: float = 0.05,
                   facilitation: bool = True):
    """Simulate the cue / delay / readout protocol on the project's rate model with STP.

    ``facilitation=False`` is the broken control: the E synapses' ``tau_F`` drops to 20 ms, so ``u``
    returns to ``U`` right after the cue and nothing is held through the delay.

    Returns
    -------
    dict
        ``t`` (T,), ``rate_hz`` (T, 5), ``u`` (T, 5), ``x`` (T, 5), windows ``cue``, ``delay``, ``readout``
        as (start, stop) seconds.

    Examples
    --------
    >>> out = working_memory(delay_s=0.5)
    >>> out["rate_hz"].shape[1]
    5
    """
    import torch

    from cortexfit.models import build_dynamics

    H = N_POP + 1
    net = cast("RateDynamics", build_dynamics("rate", input_size=N_POP, hidden_size=H, nonlinearity="relu", dale=True,
                                              frac_exc=N_POP / H, stp=True, dt=dt, tau=0.01, max_rate_hz=50.0))
    net = net.double().eval()
    J_self, J_cross, J_ei, J_ie = 3.4, 0.2, 1.0, 1.5  # E->same E, E->other E, I->E, E->I
    W = np.full((H, H), J_cross)
    np.fill_diagonal(W, J_self)
    W[:N_POP, N_POP] = J_ei
    W[N_POP, :N_POP] = J_ie
    W[N_POP, N_POP] = 0.0
    with torch.no_grad():
        net.weight_hh.copy_(torch.from_numpy(W))
        net.col_scale.copy_(net.sign)  # E columns +, I column -
        net.weight_ih.copy_(torch.cat([torch.eye(N_POP), torch.zeros(1, N_POP)]).double())
        net.bias.copy_(torch.tensor([-0.05] * N_POP + [-0.1], dtype=torch.float64))
        if not facilitation:
            net.stp_tau_F[:N_POP] = 0.02
    t_cue = (0.1, 0.1 + cue_s)
    t_read = (t_cue[1] + delay_s, t_cue[1] + delay_s + readout_s)
    t_end = t_read[1] + 0.25
    T = round(t_end / dt)
    t = np.arange(1, T + 1) * dt
    drive = np.zeros((T, N_POP))
    drive[(t > t_cue[0]) & (t <= t_cue[1]), 0] = 1.0
    drive[(t > t_read[0]) & (t <= t_read[1]), :] = 0.5
    with torch.no_grad():
        s = net(torch.from_numpy(drive)[None])[0].numpy()
    return {"t": t, "rate_hz": 50.0 * np.clip(s[:, :H], 0, None), "u": s[:, H : 2 * H], "x": s[:, 2 * H :],
            "cue": t_cue, "delay": (t_cue[1] + 0.1, t_read[0]), "readout": (t_read[0], t_read[1] + 0.1),
            "weights": W}


@dataclass
class StpResult:
    """The synapse-train traces and the working-memory simulation."""

    seed: int
    syn: dict
    wm: dict

    @property
    def ppr(self) -> np.ndarray:
        """Paired-pulse ratios A2/A1, (facilitating, depressing)."""
        return self.syn["amplitude"][1] / self.syn["amplitude"][0]

    def _window(self, key: str) -> np.ndarray:
        t = self.wm["t"]
        return (t >= self.wm[key][0]) & (t <= self.wm[key][1])

    @property
    def readout_peak(self) -> np.ndarray:
        return self.wm["rate_hz"][self._window("readout"), :N_POP].max(0)

    @property
    def reactivation_ratio(self) -> float:
        peak = self.readout_peak
        return float(peak[0] / max(peak[1:N_POP].max(), 1e-9))

    @property
    def delay_max_rate(self) -> float:
        return float(self.wm["rate_hz"][self._window("delay")].max())

    @property
    def u_at_readout(self) -> np.ndarray:
        return self.wm["u"][int(np.searchsorted(self.wm["t"], self.wm["readout"][0])), :N_POP]


def compute(*, quick: bool, seed: int = 0, facilitation: bool = True) -> StpResult:
    """Synapse train and working-memory protocol (deterministic; ``seed`` is recorded only).

    ``facilitation=False`` removes the mechanism (see :func:`working_memory`); its checks must fail.
    """
    return StpResult(seed=seed, syn=synapse_train(["facilitating", "depressing"]),
                     wm=working_memory(dt=2e-3 if quick else 1e-3, facilitation=facilitation))


def check(r: StpResult) -> list[dict]:
    """The numeric checks of the figure."""
    ppr, u_read = r.ppr, r.u_at_readout
    return [
        numeric_check("ppr_facilitating", ppr[0], lo=1.0,
                      description="paired-pulse ratio A2/A1 of the facilitating synapse"),
        numeric_check("ppr_depressing", ppr[1], hi=1.0,
                      description="paired-pulse ratio A2/A1 of the depressing synapse"),
        numeric_check("delay_max_rate_hz", r.delay_max_rate, hi=1.0, unit="Hz",
                      description="largest rate of any population during the delay (activity has stopped)"),
        numeric_check("u_cued_minus_u_other_at_readout", float(u_read[0] - u_read[1:].max()), lo=0.1,
                      description="facilitation u of the cued population above the others when the readout starts"),
        numeric_check("reactivation_ratio", r.reactivation_ratio, lo=1.5,
                      description="peak readout response of the cued population / largest peak of the other "
                                  "populations"),
    ]


def record(r: StpResult) -> FigureResult:
    """The JSON record (params, values and checks) of a result."""
    return FigureResult(
        name=NAME,
        title=TITLE,
        params={"synapse_types": {"facilitating": "U 0.15, tau_F 1.5 s, tau_D 0.2 s",
                                  "depressing": "U 0.45, tau_F 0.2 s, tau_D 1.5 s"},
                "spike_train": "8 spikes at 20 Hz + 1 after 0.5 s", "efficacy": "u x just before each spike",
                "network": "cortexfit.models rate: relu, tau 10 ms, dale (4 E facilitating + 1 I depressing), stp",
                "weights": r.wm["weights"], "cue": "input 1.0 to population 1 for 0.25 s",
                "readout": "input 0.5 to all E populations for 50 ms, 1 s after the cue", "seed": r.seed},
        values={"paired_pulse_ratio": {"facilitating": r.ppr[0], "depressing": r.ppr[1]},
                "efficacy_per_spike": r.syn["amplitude"], "readout_peak_rate_hz": r.readout_peak,
                "u_at_readout": r.u_at_readout, "delay_max_rate_hz": r.delay_max_rate},
        checks=check(r),
    )


def _plot_memory(ax, r: StpResult) -> None:
    """Population rates through cue, delay and readout, with the facilitation u on a twin axis."""
    wm = r.wm
    t, rate, u = wm["t"], wm["rate_hz"], wm["u"]
    for p in range(N_POP):
        ax.plot(t, rate[:, p], color=f"C{p}", lw=1.2, label="cued population" if p == 0 else f"population {p + 1}")
    ax.plot(t, rate[:, N_POP], color="0.4", lw=0.8, ls=":", label="inhibitory")
    for (a, b), lab in ((wm["cue"], "cue"), ((wm["readout"][0], wm["readout"][0] + 0.05), "readout")):
        ax.axvspan(a, b, color="0.85")
        ax.text(b + 0.01, 0.97, lab, transform=ax.get_xaxis_transform(), ha="left", va="top", fontsize=7)
    ax.set(xlabel="time (s)", ylabel="population rate (Hz)",
           title=f"memory in facilitation: ratio {r.reactivation_ratio:.1f}")
    tw = ax.twinx()
    tw.plot(t, u[:, 0], color="C0", ls="--", lw=1, label="u, cued")
    tw.plot(t, u[:, 1], color="C1", ls="--", lw=1, label="u, other")
    tw.set_ylabel("facilitation u (dashed)")
    tw.set_ylim(0, 1.05)
    tw.spines["right"].set_visible(True)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = tw.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=6, loc="center", ncol=2)


def plot(r: StpResult, fig, axes) -> None:
    """Tsodyks-Markram traces, efficacy per spike, and the working-memory protocol."""
    syn, ppr = r.syn, r.ppr
    amp = syn["amplitude"]
    ax = axes[0]
    for k, (name, c) in enumerate((("facilitating", "C1"), ("depressing", "C0"))):
        ax.plot(syn["t"] * 1e3, syn["u"][:, k], color=c, lw=1, label=f"{name}: u")
        ax.plot(syn["t"] * 1e3, syn["x"][:, k], color=c, lw=1, ls="--", label=f"{name}: x")
    ax.set(xlabel="time (ms)", ylabel="u (utilisation, solid), x (resources, dashed)", ylim=(0, 1.35),
           title="Tsodyks-Markram variables, 20 Hz train")
    ax.legend(fontsize=7, loc="upper center", ncol=2)
    ax = axes[1]
    spikes = np.arange(1, len(amp) + 1)
    ax.plot(spikes, amp[:, 0] / amp[0, 0], "o-", color="C1", label=f"facilitating (PPR {ppr[0]:.2f})")
    ax.plot(spikes, amp[:, 1] / amp[0, 1], "s-", color="C0", label=f"depressing (PPR {ppr[1]:.2f})")
    ax.axhline(1, color="0.6", lw=0.8)
    ax.set_xticks(spikes, [str(i) for i in spikes[:-1]] + ["+0.5 s"])
    ax.set(xlabel="spike number", ylabel="efficacy u x / first spike", title="responses to a regular train")
    ax.legend()
    _plot_memory(axes[2], r)


def make(out_dir: Path, *, quick: bool, seed: int = 0) -> FigureResult:
    """compute -> check -> plot; writes ``stp.png`` and ``stp.json`` and returns the record."""
    r = compute(quick=quick, seed=seed)
    return render(out_dir, record(r), lambda fig, axes: plot(r, fig, axes), layout=LAYOUT, quick=quick, seed=seed)
