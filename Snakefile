# cortexfit workflow: NWB recordings -> binned activity -> fitted RNN models -> analyses -> HTML reports.
# `snakemake --cores all` runs everything for the datasets in config/datasets.tsv (by default two simulated
# recordings with known ground truth, generated on first run); `snakemake --cores all figures_all` writes the
# mechanism figures. Rules live in workflow/rules/*.smk, helpers in workflow/rules/common.smk.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset=regex_of(DATASETS.index),
    task="reach|flipflop",
    model=regex_of(registry.names()),


include: "workflow/rules/simulate.smk"
include: "workflow/rules/dandi.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/groups.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        all_targets(),
    default_target: True
