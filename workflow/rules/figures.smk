# The mechanism figures of RNN theory (`snakemake --cores all figures_all`, or `make figures`): one PNG and one
# JSON of numeric checks per figure, and an index page embedding them all. Not part of the default target.
from cortexfit.figures import names as figure_names

FIGURES_DIR = f"{RESULTS}/figures"


rule figures:
    output:
        index=report(
            f"{FIGURES_DIR}/index.html",
            caption="../report/figures.rst",
            category="Mechanism figures",
        ),
        checks=expand(f"{FIGURES_DIR}/{{name}}.json", name=figure_names()),
        pngs=expand(f"{FIGURES_DIR}/{{name}}.png", name=figure_names()),
    log:
        f"{LOGS}/figures.log",
    benchmark:
        f"{BENCH}/figures.tsv"
    threads: config["fit"]["threads"]
    params:
        out_dir=lambda wc, output: os.path.dirname(output.index),
    shell:
        "cortexfit --threads {threads} figures {params.out_dir} > {log} 2>&1"


rule figures_all:
    """Target of the mechanism figures."""
    input:
        rules.figures.output.index,
    default_target: False
