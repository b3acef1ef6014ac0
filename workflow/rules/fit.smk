# Fit each model in config `models:` to each dataset (`cortexfit fit`). Models the registry marks as GPU users
# ask for `gpu=1`, so a run with `--resources gpu=1` puts one at a time on the card (the code falls back to
# the CPU); the ESN and the baselines never ask for one. A killed run resumes each fit from its checkpoint.


rule fit:
    input:
        activity=f"{RESULTS}/{{dataset}}/activity.nc",
        options=fit_options_file(),
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
        model=regex_of(MODELS),
    threads: config["fit"]["threads"]
    priority: fit_priority
    resources:
        gpu=gpu_request,
    params:
        out_dir=lambda wc, output: os.path.dirname(output.metrics),
        args=fit_args,
    shell:
        "cortexfit --threads {threads} fit {input.activity} {params.out_dir} --model {wildcards.model}"
        " {params.args} > {log} 2>&1"
