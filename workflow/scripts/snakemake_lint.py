"""`make lint`'s Snakemake step: run ``snakemake --lint`` and fail on every finding but one.

The one finding allowed is "Specify a conda environment or container for each rule": every rule runs the
``cortexfit`` command of the environment Snakemake itself runs in (``make install`` builds it; the rules put
that interpreter's ``bin/`` first on PATH), so a per-rule conda environment would only duplicate it.
Everything else Snakemake's linter reports (missing log/benchmark, absolute paths, mixed rules and
functions, ...) fails the lint.
"""

from __future__ import annotations

import re
import subprocess
import sys

ALLOWED = ("Specify a conda environment or container for each rule.",)


def findings(text: str) -> list[tuple[str, str]]:
    """(where, title) of every lint in ``snakemake --lint`` output."""
    out, where = [], "workflow"
    for line in text.splitlines():
        m = re.match(r"Lints for (.+?):$", line)
        if m:
            where = m.group(1)
            continue
        m = re.match(r"\s+\* (.+?):?$", line)
        if m:
            out.append((where, m.group(1).rstrip(":")))
    return out


def main() -> int:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--cores", "1", "-n"],
                          capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    if proc.returncode not in (0, 1) or "Error" in text and not findings(text):
        print(text)
        return proc.returncode or 1
    bad = [(w, t) for w, t in findings(text) if t not in ALLOWED]
    for where, title in bad:
        print(f"snakemake --lint: {where}: {title}")
    print(f"snakemake --lint: {len(bad)} finding(s) besides the per-rule conda environment")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
