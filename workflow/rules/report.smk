# Per-dataset HTML report (self-contained) and an index page across datasets. Both read only the models in
# config `models:` (`--models`), so fit folders left over from an earlier config are not shown.


rule report:
    input:
        dataset_outputs,
        # a simulated flip-flop's truth file: its unit readout draws the teacher's fixed points in the data's axes
        truth=lambda wc: [truth_file(wc.dataset)] if teacher_outputs(wc.dataset) else [],
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
        results=lambda wc, output: os.path.dirname(output[0]),
        models=report_models_arg,
    shell:
        "cortexfit report {params.results} {output} {params.models} > {log} 2>&1"


rule report_index:
    input:
        reports=expand(f"{RESULTS}/{{dataset}}/report.html", dataset=DATASETS.index),
        activity=expand(f"{RESULTS}/{{dataset}}/activity.nc", dataset=DATASETS.index),
        metrics=expand(f"{RESULTS}/{{dataset}}/fits/{{model}}/metrics.json", dataset=DATASETS.index, model=MODELS),
        groups=[f"{RESULTS}/groups/{g}/report.html" for g in GROUPS if GROUP_MODELS],
    output:
        report(f"{RESULTS}/index.html", caption="../report/index.rst", category="Datasets"),
    log:
        f"{LOGS}/report_index.log",
    benchmark:
        f"{BENCH}/report_index.tsv"
    params:
        results=lambda wc, output: os.path.dirname(output[0]) or ".",
        models=report_models_arg,
    shell:
        "cortexfit report {params.results} {output} {params.models} > {log} 2>&1"
