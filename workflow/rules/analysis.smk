# Analyses of every fitted RNN family (registry.rnn_families(); baselines have no dynamics): fixed points,
# state-space geometry vs the data, dynamics diagnostics and, on simulated datasets, the comparison with the
# ground truth. Each reads only the fit files it declares.


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


rule truth:
    """Ground-truth recovery of a fitted RNN family on a simulated dataset (`cortexfit truth`): rate, state and
    cycle R2, fixed points matched to the teacher's, DSA to the true latents, rotation frequency."""
    input:
        unpack(truth_inputs),
        fit=f"{RESULTS}/{{dataset}}/fits/{{model}}/fit.nc",
    output:
        f"{RESULTS}/{{dataset}}/fits/{{model}}/truth.json",
    log:
        f"{LOGS}/{{dataset}}/truth_{{model}}.log",
    benchmark:
        f"{BENCH}/{{dataset}}/truth_{{model}}.tsv"
    wildcard_constraints:
        model=regex_of(RNN_FAMILIES),
        dataset=regex_of(TRUTH_DATASETS),
    threads: config["fit"]["threads"]
    params:
        fit_dir=lambda wc, input: os.path.dirname(input.fit),
        teacher=teacher_arg,
    shell:
        "cortexfit --threads {threads} truth {params.fit_dir} {input.truth} {output} --activity {input.activity} "
        "{params.teacher} > {log} 2>&1"
