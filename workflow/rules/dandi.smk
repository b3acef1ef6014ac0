# Public recordings by DANDI id: a datasets-sheet row whose `nwb` is `dandi:<dandiset>[@<version>]/<asset path>`
# reads data/dandi/<dandiset>/<asset path>, which this rule downloads once (`cortexfit fetch-dandi`: resolved
# through the DANDI REST API, resumed after an interruption, verified against the archive's SHA-256, renamed
# into place only then). The API base URL comes from $CORTEXFIT_DANDI_API (default the public archive).
# On a cluster it runs where Snakemake runs (compute nodes often have no internet).

localrules:
    dandi_download,


rule dandi_download:
    output:
        "data/dandi/{dandiset}/{asset}",
    log:
        f"{LOGS}/dandi/{{dandiset}}/{{asset}}.log",
    benchmark:
        f"{BENCH}/dandi/{{dandiset}}/{{asset}}.tsv"
    wildcard_constraints:
        dandiset=r"\d{6}",
        asset=regex_of(sorted({p.split("/", 3)[3] for p in DANDI_ASSETS})),
    params:
        spec=dandi_spec,
    shell:
        "cortexfit fetch-dandi {params.spec:q} {output:q} > {log:q} 2>&1"
