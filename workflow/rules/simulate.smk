# Simulated recordings with known ground truth (the embedded default data; no download needed).
# `cortexfit simulate TASK OUT.nwb` writes OUT.nwb and OUT.truth.nc; flip-flop also saves its teacher network
# as OUT.teacher/model.pt, so that task has its own rule declaring the teacher as an output.

TEACHER_TASKS = ("flipflop",)  # tasks whose simulation saves a teacher network


rule simulate:
    """Simulated tasks without a teacher network (reach)."""
    output:
        nwb="data/simulated/{task}.nwb",
        truth="data/simulated/{task}.truth.nc",
    log:
        f"{LOGS}/simulate/{{task}}.log",
    benchmark:
        f"{BENCH}/simulate/{{task}}.tsv"
    wildcard_constraints:
        task="reach",
    params:
        args=simulate_args,
    shell:
        "cortexfit simulate {wildcards.task} {output.nwb} {params.args} > {log} 2>&1"


rule simulate_with_teacher:
    """Simulated tasks driven by a trained teacher network (flipflop), saved as a third output."""
    output:
        nwb="data/simulated/{task}.nwb",
        truth="data/simulated/{task}.truth.nc",
        teacher="data/simulated/{task}.teacher/model.pt",
    log:
        f"{LOGS}/simulate/{{task}}.log",
    benchmark:
        f"{BENCH}/simulate/{{task}}.tsv"
    wildcard_constraints:
        task="|".join(TEACHER_TASKS),
    params:
        args=simulate_args,
    shell:
        "cortexfit simulate {wildcards.task} {output.nwb} {params.args} > {log} 2>&1"


rule teacher_fixed_points:
    """Fixed points of the flip-flop teacher network (ground truth: 8 stable points), saved by `simulate`
    beside the NWB file as `<name>.teacher/model.pt`."""
    input:
        teacher=lambda wc: f"{teacher_dir(dataset_row(wc)['nwb'])}/model.pt",
    output:
        f"{RESULTS}/{{dataset}}/teacher_fixed_points.nc",
    log:
        f"{LOGS}/{{dataset}}/teacher_fixed_points.log",
    benchmark:
        f"{BENCH}/{{dataset}}/teacher_fixed_points.tsv"
    params:
        teacher=lambda wc, input: str(Path(input.teacher).parent),
    shell:
        "cortexfit fixed-points {params.teacher} {output} > {log} 2>&1"
