# NWB -> binned trial x time x unit activity (xarray / netCDF, validated by cortexfit.core.convention).


rule ingest:
    input:
        nwb_path,
    output:
        f"{RESULTS}/{{dataset}}/activity.nc",
    log:
        f"{LOGS}/{{dataset}}/ingest.log",
    benchmark:
        f"{BENCH}/{{dataset}}/ingest.tsv"
    params:
        args=ingest_args,
    shell:
        "cortexfit ingest {input} {output} {params.args} > {log} 2>&1"
