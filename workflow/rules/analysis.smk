# Analyses of every fitted RNN family (registry.rnn_families(); baselines have no dynamics): fixed points,
# state-space geometry vs the data, dynamics diagnostics. Each reads only the fit files it declares.


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
    wildcard_constraints:
        model=regex_of(RNN_FAMILIES),
    threads: config["fit"]["threads"]
    resources:
        gpu=gpu_request,
    params:
        fit_dir=lambda wc, input: os.path.dirname(input.model),
        device=config["fit"]["device"],
    shell:
        "cortexfit --threads {threads} fixed-points {params.fit_dir} {output} --device {params.device} > {log} 2>&1"


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
    wildcard_constraints:
        model=regex_of(RNN_FAMILIES),
    threads: config["fit"]["threads"]
    params:
        fit_dir=lambda wc, input: os.path.dirname(input.fit),
    shell:
        "cortexfit --threads {threads} geometry {input.activity} {params.fit_dir} {output} > {log} 2>&1"


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
    wildcard_constraints:
        model=regex_of(RNN_FAMILIES),
    threads: config["fit"]["threads"]
    params:
        fit_dir=lambda wc, input: os.path.dirname(input.model),
    shell:
        "cortexfit --threads {threads} dynamics {params.fit_dir} {output} > {log} 2>&1"
