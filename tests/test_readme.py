"""Every command README.md shows runs as written.

Commands are taken from the README's code blocks (```bash blocks, and `$ `-prompted lines of plain blocks,
whose following lines are the expected output) and from inline code that starts with `snakemake ` or
`cortexfit `.  Snakemake commands are dry-run (`-n`) in a copy of the workflow; `make` targets are checked with
`make -n` and the Snakemake command each prints is dry-run too; `cortexfit` commands with shown output are run
on the inputs they name (created as broken files) and must print exactly that; command synopses must only use
options their `--help` lists; the Python example runs on a tiny activity file.  Commands that need results
(`snakemake --report`) are run by ``tests/test_workflow.py::test_dot_test_config_end_to_end``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = os.path.dirname(sys.executable)
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MPLBACKEND": "Agg"}
WORKFLOW_FILES = ("Snakefile", "workflow", "config")


@dataclass(frozen=True)
class Command:
    text: str  # the command as written (prompt and trailing comment removed)
    expected: str | None = None  # output shown below a `$ ` prompt
    inline: bool = False

    @property
    def program(self) -> str:
        return self.text.split()[0]

    @property
    def needs_results(self) -> bool:
        """Commands that read a finished run (Snakemake's report)."""
        return self.program == "snakemake" and "--report" in self.text


def _code_blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1).strip().lower(), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)]


def _strip_comment(line: str) -> str:
    """`cmd   # comment` -> `cmd` (a `#` after whitespace, outside quotes)."""
    return re.split(r"\s+#", line, maxsplit=1)[0].strip()


def readme_commands(text: str | None = None) -> list[Command]:
    text = README.read_text() if text is None else text
    out: list[Command] = []
    for lang, body in _code_blocks(text):
        if lang in ("bash", "sh", "shell", "console"):
            for line in body.splitlines():
                line = _strip_comment(line.removeprefix("$ "))
                if line:
                    out.append(Command(line))
        elif lang == "":
            lines = body.splitlines()
            for i, line in enumerate(lines):
                if line.startswith("$ "):
                    rest = []
                    for nxt in lines[i + 1:]:
                        if nxt.startswith("$ "):
                            break
                        rest.append(nxt)
                    out.append(Command(_strip_comment(line[2:]), "\n".join(rest).strip() or None))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    for m in re.finditer(r"`([^`]+)`", prose):
        span = " ".join(m.group(1).split())
        if span.startswith(("snakemake ", "cortexfit ")):
            out.append(Command(span, inline=True))
    return out


def _python_blocks() -> list[str]:
    return [body for lang, body in _code_blocks(README.read_text()) if lang == "python"]


COMMANDS = readme_commands()


def _ids(cmds: list[Command]) -> list[str]:
    return [c.text[:60] for c in cmds]


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory) -> Path:
    """A copy of the workflow (no results), beside a link to ../shared like the checkout's."""
    base = tmp_path_factory.mktemp("readme")
    copy = base / "repo"
    copy.mkdir()
    for name in WORKFLOW_FILES:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, copy / name)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    if (ROOT.parent / "shared").is_dir():
        (base / "shared").symlink_to(ROOT.parent / "shared")
    return copy


def _sh(cmd: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def _dry_run(cmd: str, cwd: Path) -> None:
    out = _sh(f"{cmd} -n", cwd)
    assert out.returncode == 0, f"`{cmd}` fails:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"


def test_readme_has_commands():
    programs = {c.program for c in COMMANDS}
    assert {"make", "snakemake", "cortexfit"} <= programs, programs
    assert programs <= {"make", "snakemake", "cortexfit", "source"}, f"no check for {programs}"
    assert any(c.expected for c in COMMANDS)


def test_parser_handles_prompts_comments_and_wrapped_inline_code():
    text = ("```bash\nmake demo   # install\n\n```\n```\n$ cortexfit x a.nwb\nerror: a\n$ ls\n```\n"
            "For a quick run: `snakemake --cores all --config \"models=[]\"\nreport=false`. Or `make figures`.\n")
    cmds = readme_commands(text)
    assert cmds == [Command("make demo"), Command("cortexfit x a.nwb", "error: a"), Command("ls"),
                    Command('snakemake --cores all --config "models=[]" report=false', inline=True)]


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.program == "snakemake" and not c.needs_results],
                         ids=_ids([c for c in COMMANDS if c.program == "snakemake" and not c.needs_results]))
def test_snakemake_commands_plan(cmd, workflow_copy):
    for arg in shlex.split(cmd.text):
        m = re.match(r"datasets=(.+)", arg)
        if m:
            rows = [line.split("\t") for line in (workflow_copy / m.group(1)).read_text().splitlines()
                    if line.strip() and not line.startswith("#")]
            col = {name: i for i, name in enumerate(rows[0])}
            for row in rows[1:]:
                simulated = "simulate" in col and len(row) > col["simulate"] and row[col["simulate"]].strip()
                nwb = row[col["nwb"]]
                if not simulated and not (workflow_copy / nwb).exists():  # simulated files: made by the workflow
                    pytest.skip(f"{nwb} not present (real recordings live in ../shared/data)")
    _dry_run(cmd.text, workflow_copy)


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.program == "make"],
                         ids=_ids([c for c in COMMANDS if c.program == "make"]))
def test_make_targets_exist_and_their_snakemake_commands_plan(cmd, workflow_copy):
    out = _sh(cmd.text.replace("make", "make -n", 1), ROOT)
    assert out.returncode == 0, out.stderr
    for line in out.stdout.splitlines():
        if re.search(r"(^|/)snakemake\s", line) and "--lint" not in line:
            _dry_run(line.strip(), workflow_copy)


def test_source_lines_name_existing_files():
    """`source .venv/bin/activate`: the file `make install` (the step before) creates."""
    for cmd in COMMANDS:
        if cmd.program in ("source", "."):
            assert (ROOT / cmd.text.split()[1]).is_file(), cmd.text


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.program == "cortexfit"],
                         ids=_ids([c for c in COMMANDS if c.program == "cortexfit"]))
def test_cortexfit_commands(cmd, tmp_path):
    words = shlex.split(cmd.text)
    if cmd.expected is not None:
        # Run as written on the files it names (NWB inputs as broken files) and compare with the shown output.
        for w in words[2:]:
            if w.endswith(".nwb") and not (tmp_path / w).exists():
                (tmp_path / w).write_bytes(b"this is not an HDF5 file\n")
        out = _sh(cmd.text, tmp_path)
        shown = cmd.expected.splitlines()
        got = (out.stdout + out.stderr).strip().splitlines()
        assert got == shown, f"`{cmd.text}` prints {got}, README shows {shown}"
        expect_error = any(": error:" in s for s in shown)
        assert (out.returncode != 0) == expect_error, out.returncode
        return
    # A synopsis (placeholders in capitals, options in brackets): the subcommand exists and knows each option.
    sub = [w for w in words[1:2] if re.fullmatch(r"[a-z][a-z-]*", w)]
    out = _sh(shlex.join(["cortexfit", *sub, "--help"]), tmp_path)
    assert out.returncode == 0, f"`{cmd.text}`: {out.stderr}"
    for opt in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", cmd.text):
        assert opt in out.stdout, f"`{cmd.text}`: cortexfit {' '.join(sub)} has no option {opt}"


@pytest.mark.parametrize("code", _python_blocks())
def test_python_examples_run(code, tmp_path):
    from cortexfit.core import convention

    counts = np.random.default_rng(0).poisson(1.0, (4, 6, 3)).astype("uint16")
    ds = convention.new_activity(counts, time=np.arange(6) * 0.005 + 0.0025, bin_width_s=0.005)
    for path in set(re.findall(r"results/[\w.-]+/activity\.nc", code)):
        convention.write_dataset(ds, tmp_path / path)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
