# Per-dataset HTML report (self-contained) and an index page across datasets; the mechanism figures target.


rule report:
    input:
        dataset_outputs,
    output:
        report(
            f"{RESULTS}/{{dataset}}/report.html",
            caption="../report/dataset.rst",
            category="Datasets",
            labels={"dataset": "{dataset}"},
        ),
    log:
        f"{LOGS}/{{dataset}}/report.log",
    benchmark:
        f"{BENCH}/{{dataset}}/report.tsv"
    params:
        results=lambda wc: f"{RESULTS}/{wc.dataset}",
    shell:
        "{CORTEXFIT} report {params.results} {output} > {log} 2>&1"


rule report_index:
    input:
        expand(f"{RESULTS}/{{dataset}}/report.html", dataset=DATASETS.index),
    output:
        report(f"{RESULTS}/index.html", caption="../report/index.rst", category="Datasets"),
    log:
        f"{LOGS}/report_index.log",
    benchmark:
        f"{BENCH}/report_index.tsv"
    params:
        results=RESULTS,
    shell:
        "{CORTEXFIT} report {params.results} {output} > {log} 2>&1"


rule figures:
    output:
        index=report(
            f"{RESULTS}/figures/index.html",
            caption="../report/figures.rst",
            category="Mechanism figures",
        ),
    log:
        f"{LOGS}/figures.log",
    benchmark:
        f"{BENCH}/figures.tsv"
    params:
        out_dir=f"{RESULTS}/figures",
    shell:
        "{CORTEXFIT} figures {params.out_dir} > {log} 2>&1"
