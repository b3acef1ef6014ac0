"""The "ground truth" section of a dataset report: each fit's ``truth.json`` (``cortexfit truth``) as one table.

Only simulated datasets have a ground truth; the section is added to a report when at least one fit folder
holds a ``truth.json``.

Examples
--------
>>> from cortexfit.report import html
>>> sec = html.Section("Ground truth")
>>> ground_truth(load_dataset("results/sim_flipflop"), sec)  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortexfit.core.errors import ReportError
from cortexfit.report import caveats as C
from cortexfit.report import html as H

if TYPE_CHECKING:
    from cortexfit.report import DatasetResults

#: Columns of the table: (header, truth.json key, decimals).
COLUMNS = (("rate R²", "rate_r2", 3), ("state R²", "state_r2", 3), ("cycle R²", "cycle_r2", 3),
           ("fixed points matched", "fixed_points_matched", 0), ("DSA to teacher", "dsa_to_teacher", 3),
           ("rotation (Hz)", "rotation_freq_hz", 2), ("true rotation (Hz)", "rotation_freq_hz_true", 2))


def read_truth(folder: Path) -> dict[str, Any] | None:
    """``folder/truth.json`` as a dict; None when absent.

    Raises
    ------
    ReportError
        The file exists but is not a JSON object.

    Examples
    --------
    >>> import tempfile
    >>> read_truth(Path(tempfile.mkdtemp())) is None
    True
    """
    path = folder / "truth.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: unreadable ({exc}); re-run `cortexfit truth` for this fit") from None
    if not isinstance(value, dict):
        raise ReportError(f"{path}: not a JSON object; re-run `cortexfit truth` for this fit")
    return value


def _matched(t: dict[str, Any]) -> str:
    if t.get("fixed_points_matched") is None:
        return H.MISSING
    return f"{t['fixed_points_matched']} of {t.get('fixed_points_true')} ({t.get('fixed_points_model')} stable in model)"


def ground_truth(data: DatasetResults, sec: H.Section) -> None:
    """8. Recovery of the simulated ground truth by each fit (``truth.json``), best state R² first."""
    fits = sorted((f for f in data.fits if f.truth is not None),
                  key=lambda f: -((f.truth or {}).get("state_r2") or float("-inf")))
    rows = []
    for f in fits:
        t = f.truth or {}
        cells = [_matched(t) if key == "fixed_points_matched" else H.fmt(t.get(key), d) for _, key, d in COLUMNS]
        rows.append([f.name + C.label(data.caveats, f.name), *cells])
    sec.add(H.table(["model", *[c for c, _, _ in COLUMNS]], rows, bold_rows=[0] if rows else [],
                    numeric=range(1, len(COLUMNS) + 1),
                    caption="The fitted networks against the simulation's ground truth (cortexfit truth). rate R²: "
                            "predicted vs true rates on test trials (mean over units). state R²: true latents "
                            "predicted linearly from model states, cross-validated over trials; cycle R²: model "
                            "states predicted from true latents (low when the model invents dimensions). Fixed "
                            "points: stable teacher points matched one-to-one by a stable model point mapped into "
                            "the teacher's space, within a quarter of the smallest distance between teacher points. "
                            "DSA: dynamical similarity distance between model states and true latents (radians, 0 = "
                            "same dynamics). Rotation: fastest rotation of condition-averaged model states vs the "
                            "truth's. Bold: best state R²; –: not applicable."))
    for f in fits:
        for text in (f.truth or {}).get("notes") or []:
            sec.add(H.note(f"{f.name}: {text}"))
    without = [f.name for f in data.fits if f.truth is None]
    if without:
        sec.add(H.note(f"No truth.json for {', '.join(without)} (baselines, or `cortexfit truth` not run)."))
