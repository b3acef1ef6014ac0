"""workflow/profiles/slurm: sizes every rule it names, asks for GPUs only through the rules' `gpu` resource, and
the executor plugin turns that resource into `--gpus` (the real cluster run is `make slurm-test`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"


def _rules() -> set[str]:
    names = set()
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        names |= set(re.findall(r"^rule (\w+):", smk.read_text(), re.M))
        names |= set(re.findall(r"^use rule \w+ as (\w+)", smk.read_text(), re.M))
    return names


def test_profile_sizes_known_rules_and_never_asks_for_gpus_itself():
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm"
    sized = profile["set-resources"]
    assert set(sized) <= _rules(), set(sized) - _rules()
    assert {"simulate", "ingest", "fit", "fixed_points", "geometry", "dynamics", "report"} <= set(sized)
    # every rule with a fixed name that runs as a job is sized (figures_all only collects, dandi_download is a
    # local rule); the per-group fit rules size themselves (test below)
    jobs = _rules() - {"figures_all", "dandi_download"}
    assert jobs <= set(sized), jobs - set(sized)
    for rule, res in sized.items():
        assert res["runtime"] > 0 and res["mem_mb"] > 0, rule
        assert not {"gpu", "gres", "gpu_model"} & set(res), f"{rule}: GPUs come from the rule's gpu resource"
    text = PROFILE.read_text()
    assert re.search(r"^\s*# slurm_partition: .*edit 1", text, re.M)
    assert re.search(r"^\s*# slurm_account: .*edit 2", text, re.M)


def test_per_group_fit_rules_carry_their_own_sizes():
    text = (ROOT / "workflow" / "rules" / "groups.smk").read_text()
    blocks = re.split(r"^    rule:\n", text, flags=re.M)[1:]  # the rules generated in the loop over groups
    assert len(blocks) == 2
    for block in blocks:
        res = re.search(r"resources:\n((?:\s+#.*\n|\s+\w+=.*\n)+)", block)
        assert res, block[:80]
        sizes = dict(re.findall(r"(\w+)=(\d+)", res.group(1)))
        assert int(sizes["runtime"]) > 0 and int(sizes["mem_mb"]) > 0


def test_only_gpu_families_ask_for_a_gpu():
    pytest.importorskip("snakemake_executor_plugin_slurm")  # the cluster extra
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--workflow-profile", str(PROFILE.parent),
                          "--config", "models=[rate,esn,smoothing]", "fit={device: auto}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    jobs = re.findall(r"^rule (\w+):\n(.*?)^$", out.stdout, re.M | re.S)
    gpu = {}
    for rule, body in jobs:
        wc = re.search(r"wildcards: (.*)", body)
        res = re.search(r"resources: (.*)", body)
        if wc and res:
            gpu[(rule, wc.group(1))] = "gpu=1" in res.group(1)
    assert gpu[("fit", "dataset=sim_reach, model=rate")]
    assert gpu[("fixed_points", "dataset=sim_reach, model=rate")]
    assert not gpu[("fit", "dataset=sim_reach, model=esn")]
    assert not gpu[("fit", "dataset=sim_reach, model=smoothing")]
    assert not any(v for (rule, _), v in gpu.items() if rule not in ("fit", "fixed_points"))


def test_plugin_turns_the_gpu_resource_into_gpus():
    utils = pytest.importorskip("snakemake_executor_plugin_slurm.utils")

    class Resources(dict):
        __getattr__ = dict.__getitem__

    class Job:
        def __init__(self, **res):
            self.resources = Resources(res)

    assert utils.set_gres_string(Job(gpu=1)).strip() == "--gpus=1"
    assert utils.set_gres_string(Job(gpu=0)).strip() == ""
