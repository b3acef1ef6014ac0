# Fit each model family in config `models:` to each dataset (cortexfit fit). GPU-capable families ask for
# `gpu=1` so a run with `--resources gpu=1` puts one at a time on the card; the code falls back to the CPU.


rule fit:
    input:
        activity=f"{RESULTS}/{{dataset}}/activity.nc",
    output:
        fit=f"{RESULTS}/{{dataset}}/fits/{{model}}/fit.nc",
        model=f"{RESULTS}/{{dataset}}/fits/{{model}}/model.pt",
        history=f"{RESULTS}/{{dataset}}/fits/{{model}}/history.csv",
        metrics=report(
            f"{RESULTS}/{{dataset}}/fits/{{model}}/metrics.json",
            caption="../report/fit.rst",
            category="Fits",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "model": "{model}"},
        ),
    log:
        f"{LOGS}/{{dataset}}/fit_{{model}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/fit_{{model}}.tsv"
    wildcard_constraints:
        model="|".join(MODELS) if MODELS else "NONE",
    threads: config["fit"]["threads"]
    resources:
        gpu=lambda wc: 1 if wc.model in RNN_FAMILIES else 0,
    params:
        out_dir=lambda wc: fit_dir(wc.dataset, wc.model),
        args=fit_args,
    shell:
        "{CORTEXFIT} fit {input.activity} {params.out_dir} --model {wildcards.model} {params.args} > {log} 2>&1"
