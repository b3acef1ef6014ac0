# cortexfit workflow: NWB recordings -> binned activity -> fitted RNN models -> analyses -> HTML reports.
# `snakemake --cores all` runs everything for the datasets in config/datasets.tsv (by default two simulated
# recordings with known ground truth, generated on first run). Rules live in workflow/rules/*.smk.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True


rule figures_all:
    """`snakemake --cores all figures_all` (or `make figures`): the mechanism figures of RNN theory."""
    input:
        rules.figures.output.index,
