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
