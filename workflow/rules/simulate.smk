# Simulated recordings with known ground truth (the embedded default data; no download needed).
# `cortexfit simulate TASK OUT.nwb` writes OUT.nwb and OUT.truth.nc; flip-flop also saves its teacher network
# as OUT.teacher/model.pt, so that task has its own rule declaring the teacher as an output. The *_session rules
# write several sessions of one system (see below).

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


# Sessions: `data/simulated/{task}_session{session}_units{units}.nwb` is session {session} (>= 1) of the system
# of the config's seed -- the same flip-flop teacher, or the same reach dynamics and preparatory states -- with
# {units} units of its own, its own trials and spikes (`cortexfit simulate ... --session K --n-units N`). Truths
# of one seed's sessions share the latent space, so joint fits across them can be scored against one system.
# (The single-recording rules above never match these names: their task is exactly a task name.)
SESSION_CONSTRAINTS = {"session": "[1-9][0-9]*", "units": "[1-9][0-9]*"}


rule simulate_session:
    """Session {session} of a simulated task without a teacher network (reach), with {units} units."""
    output:
        nwb="data/simulated/{task}_session{session}_units{units}.nwb",
        truth="data/simulated/{task}_session{session}_units{units}.truth.nc",
    log:
        f"{LOGS}/simulate/{{task}}_session{{session}}_units{{units}}.log",
    benchmark:
        f"{BENCH}/simulate/{{task}}_session{{session}}_units{{units}}.tsv"
    wildcard_constraints:
        task="reach",
        **SESSION_CONSTRAINTS,
    params:
        args=simulate_args,
    shell:
        "cortexfit simulate {wildcards.task} {output.nwb} {params.args} --session {wildcards.session} "
        "--n-units {wildcards.units} > {log} 2>&1"


rule simulate_session_with_teacher:
    """Session {session} of a task driven by a teacher network (flipflop; the same teacher in every session of a
    seed, saved again beside each session's NWB file), with {units} units."""
    output:
        nwb="data/simulated/{task}_session{session}_units{units}.nwb",
        truth="data/simulated/{task}_session{session}_units{units}.truth.nc",
        teacher="data/simulated/{task}_session{session}_units{units}.teacher/model.pt",
    log:
        f"{LOGS}/simulate/{{task}}_session{{session}}_units{{units}}.log",
    benchmark:
        f"{BENCH}/simulate/{{task}}_session{{session}}_units{{units}}.tsv"
    wildcard_constraints:
        task="|".join(TEACHER_TASKS),
        **SESSION_CONSTRAINTS,
    params:
        args=simulate_args,
    shell:
        "cortexfit simulate {wildcards.task} {output.nwb} {params.args} --session {wildcards.session} "
        "--n-units {wildcards.units} > {log} 2>&1"


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
