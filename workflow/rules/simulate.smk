# Simulated recordings with known ground truth (the embedded default data; no download needed).


rule simulate:
    output:
        nwb="data/simulated/{task}.nwb",
        truth="data/simulated/{task}.truth.nc",
    log:
        f"{LOGS}/simulate/{{task}}.log",
    benchmark:
        f"{BENCH}/simulate/{{task}}.tsv"
    params:
        seed=config["simulate"]["seed"],
    shell:
        "{CORTEXFIT} simulate {wildcards.task} {output.nwb} --seed {params.seed} > {log} 2>&1"


rule teacher_fixed_points:
    """Fixed points of the flip-flop teacher network (ground truth: 8 stable points), saved by `simulate`
    beside the NWB file as `<name>.teacher/model.pt`."""
    input:
        nwb=lambda wc: dataset_row(wc)["nwb"],
    output:
        f"{RESULTS}/{{dataset}}/teacher_fixed_points.nc",
    log:
        f"{LOGS}/{{dataset}}/teacher_fixed_points.log",
    benchmark:
        f"{BENCH}/{{dataset}}/teacher_fixed_points.tsv"
    params:
        teacher=lambda wc: str(Path(dataset_row(wc)["nwb"]).with_suffix(".teacher")),
    shell:
        "{CORTEXFIT} fixed-points {params.teacher} {output} > {log} 2>&1"
