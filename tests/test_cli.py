"""The cortexfit command: subcommands exist, errors are one line, imports stay light."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cortexfit import cli


def test_every_subcommand_has_help(capsys):
    names = list(cli._COMMANDS)
    assert {"simulate", "ingest", "fit", "fit-group", "fixed-points", "truth", "report", "report-group"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as exc:
            cli.main([name, "--help"])
        assert exc.value.code == 0
        assert name in capsys.readouterr().out


def test_unknown_subcommand_exits_nonzero(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2


def test_cortexfit_error_is_one_line(tmp_path, capsys):
    missing = tmp_path / "absent.nwb"
    code = cli.main(["ingest", str(missing), str(tmp_path / "out.nc")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("cortexfit ingest: error:")
    assert "absent.nwb" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out.nc").exists()


def test_python_m_cortexfit_version():
    out = subprocess.run([sys.executable, "-m", "cortexfit", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.startswith("cortexfit ")


def test_cli_and_schema_do_not_import_torch():
    code = "import cortexfit.cli, cortexfit.core.convention, sys; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
