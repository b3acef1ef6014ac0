# Sessions of one task (datasets sharing a `group` in the sheet) fitted by one generator with `cortexfit fit-group`
# (per-session read-in/read-out): jointly, and one after another with each continual method of config
# `fit: continual: method:` (none = plain fine-tuning, ewc, replay). Outputs go to
# results/groups/<group>/<strategy>/<model>/, each session's view as an ordinary fit folder under sessions/<id>/,
# which the group analysis rules below analyse like any fit; results/groups/<group>/report.html shows them all.

GROUP_FIT = f"{RESULTS}/groups/{{group}}/{{strategy}}/{{model}}/sessions/{{session}}"


wildcard_constraints:
    group=regex_of(GROUPS),
    session=regex_of(DATASETS.index),
    strategy="joint|continual-(none|ewc|replay)",


for _group, _members in GROUPS.items():
    _key = re.sub(r"\W", "_", _group)

    rule:
        """Joint fit of a group's sessions (`cortexfit fit-group`, strategy joint)."""
        name:
            f"fit_group_joint_{_key}"
        input:
            activity=[activity_path(d) for d in _members],
            truth=group_truth_files(_group),
            options=fit_options_file(),
        output:
            metrics=report(
                f"{RESULTS}/groups/{_group}/joint/{{model}}/metrics.json",
                caption="../report/group_fit.rst",
                category="Groups",
                subcategory=_group,
                labels={"group": _group, "strategy": "joint", "model": "{model}"},
            ),
            history=f"{RESULTS}/groups/{_group}/joint/{{model}}/history.csv",
            sessions=group_fit_session_files(_group, "joint"),
        log:
            f"{LOGS}/groups/{_group}/fit_joint_{{model}}.log",
        benchmark:
            f"{BENCH}/groups/{_group}/fit_joint_{{model}}.tsv"
        wildcard_constraints:
            model=regex_of(GROUP_MODELS),
        threads: config["fit"]["threads"]
        resources:
            gpu=gpu_request,
            # one rule per group, so the SLURM profile cannot name it: sized here (a group fit trains every
            # session, so twice a single fit's request; local runs ignore runtime)
            runtime=960,
            mem_mb=16000,
        params:
            out_dir=lambda wc, output: os.path.dirname(output.metrics),
            names=" ".join(_members),
            truth=lambda wc, input: f"--truth {' '.join(input.truth)}" if input.truth else "",
            args=group_fit_args,
        shell:
            "cortexfit --threads {threads} fit-group {input.activity} --out {params.out_dir} --model {wildcards.model}"
            " --names {params.names} {params.truth} {params.args} > {log} 2>&1"

    rule:
        """Continual fit of a group's sessions in sheet order (`cortexfit fit-group --strategy continual`)."""
        name:
            f"fit_group_continual_{_key}"
        input:
            activity=[activity_path(d) for d in _members],
            truth=group_truth_files(_group),
            options=fit_options_file(),
        output:
            metrics=report(
                f"{RESULTS}/groups/{_group}/continual-{{method}}/{{model}}/metrics.json",
                caption="../report/group_fit.rst",
                category="Groups",
                subcategory=_group,
                labels={"group": _group, "strategy": "continual-{method}", "model": "{model}"},
            ),
            forgetting=f"{RESULTS}/groups/{_group}/continual-{{method}}/{{model}}/forgetting.json",
            history=f"{RESULTS}/groups/{_group}/continual-{{method}}/{{model}}/history.csv",
            sessions=group_fit_session_files(_group, "continual-{method}"),
        log:
            f"{LOGS}/groups/{_group}/fit_continual-{{method}}_{{model}}.log",
        benchmark:
            f"{BENCH}/groups/{_group}/fit_continual-{{method}}_{{model}}.tsv"
        wildcard_constraints:
            model=regex_of(GROUP_MODELS),
            method="none|ewc|replay",
        threads: config["fit"]["threads"]
        resources:
            gpu=gpu_request,
            # one rule per group, so the SLURM profile cannot name it: sized here (a group fit trains every
            # session, so twice a single fit's request; local runs ignore runtime)
            runtime=960,
            mem_mb=16000,
        params:
            out_dir=lambda wc, output: os.path.dirname(output.metrics),
            names=" ".join(_members),
            truth=lambda wc, input: f"--truth {' '.join(input.truth)}" if input.truth else "",
            args=group_fit_args,
        shell:
            "cortexfit --threads {threads} fit-group {input.activity} --out {params.out_dir} --model {wildcards.model}"
            " --names {params.names} {params.truth} {params.args} > {log} 2>&1"


use rule fixed_points as group_fixed_points with:
    input:
        model=f"{GROUP_FIT}/model.pt",
        fit=f"{GROUP_FIT}/fit.nc",
    output:
        f"{GROUP_FIT}/fixed_points.nc",
    log:
        f"{LOGS}/groups/{{group}}/{{strategy}}/fixed_points_{{model}}_{{session}}.log",
    benchmark:
        f"{BENCH}/groups/{{group}}/{{strategy}}/fixed_points_{{model}}_{{session}}.tsv"
    wildcard_constraints:
        model=regex_of(GROUP_MODELS),


use rule geometry as group_geometry with:
    input:
        activity=lambda wc: activity_path(wc.session),
        fit=f"{GROUP_FIT}/fit.nc",
    output:
        f"{GROUP_FIT}/geometry.nc",
    log:
        f"{LOGS}/groups/{{group}}/{{strategy}}/geometry_{{model}}_{{session}}.log",
    benchmark:
        f"{BENCH}/groups/{{group}}/{{strategy}}/geometry_{{model}}_{{session}}.tsv"
    wildcard_constraints:
        model=regex_of(GROUP_MODELS),


use rule dynamics as group_dynamics with:
    input:
        model=f"{GROUP_FIT}/model.pt",
        fit=f"{GROUP_FIT}/fit.nc",
    output:
        f"{GROUP_FIT}/dynamics.nc",
    log:
        f"{LOGS}/groups/{{group}}/{{strategy}}/dynamics_{{model}}_{{session}}.log",
    benchmark:
        f"{BENCH}/groups/{{group}}/{{strategy}}/dynamics_{{model}}_{{session}}.tsv"
    wildcard_constraints:
        model=regex_of(GROUP_MODELS),


use rule truth as group_truth with:
    input:
        unpack(group_session_truth_inputs),
        fit=f"{GROUP_FIT}/fit.nc",
    output:
        f"{GROUP_FIT}/truth.json",
    log:
        f"{LOGS}/groups/{{group}}/{{strategy}}/truth_{{model}}_{{session}}.log",
    benchmark:
        f"{BENCH}/groups/{{group}}/{{strategy}}/truth_{{model}}_{{session}}.tsv"
    wildcard_constraints:
        model=regex_of(GROUP_MODELS),


rule group_report:
    """One page per group: per-session scores of each strategy, joint vs single-session fits, forgetting."""
    input:
        lambda wc: group_outputs(wc.group),
    output:
        report(
            f"{RESULTS}/groups/{{group}}/report.html",
            caption="../report/group.rst",
            category="Groups",
            labels={"group": "{group}"},
        ),
    log:
        f"{LOGS}/groups/{{group}}/report.log",
    benchmark:
        f"{BENCH}/groups/{{group}}/report.tsv"
    params:
        group_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "cortexfit report-group {params.group_dir} {output} > {log} 2>&1"
