# Analyses of every fitted RNN family: fixed points, state-space geometry vs the data, dynamics diagnostics.


rule fixed_points:
    input:
        model=f"{RESULTS}/{{dataset}}/fits/{{model}}/model.pt",
        fit=f"{RESULTS}/{{dataset}}/fits/{{model}}/fit.nc",
    output:
        f"{RESULTS}/{{dataset}}/fits/{{model}}/fixed_points.nc",
    log:
        f"{LOGS}/{{dataset}}/fixed_points_{{model}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/fixed_points_{{model}}.tsv"
    resources:
        gpu=1,
    params:
        fit_dir=lambda wc: fit_dir(wc.dataset, wc.model),
    shell:
        "{CORTEXFIT} fixed-points {params.fit_dir} {output} > {log} 2>&1"


rule geometry:
    input:
        activity=f"{RESULTS}/{{dataset}}/activity.nc",
        fit=f"{RESULTS}/{{dataset}}/fits/{{model}}/fit.nc",
    output:
        f"{RESULTS}/{{dataset}}/fits/{{model}}/geometry.nc",
    log:
        f"{LOGS}/{{dataset}}/geometry_{{model}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/geometry_{{model}}.tsv"
    params:
        fit_dir=lambda wc: fit_dir(wc.dataset, wc.model),
    shell:
        "{CORTEXFIT} geometry {input.activity} {params.fit_dir} {output} > {log} 2>&1"


rule dynamics:
    input:
        model=f"{RESULTS}/{{dataset}}/fits/{{model}}/model.pt",
        fit=f"{RESULTS}/{{dataset}}/fits/{{model}}/fit.nc",
    output:
        f"{RESULTS}/{{dataset}}/fits/{{model}}/dynamics.nc",
    log:
        f"{LOGS}/{{dataset}}/dynamics_{{model}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/dynamics_{{model}}.tsv"
    params:
        fit_dir=lambda wc: fit_dir(wc.dataset, wc.model),
    shell:
        "{CORTEXFIT} dynamics {params.fit_dir} {output} > {log} 2>&1"
