# cortexfit: the two quick-start commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= all
STAMP  := $(VENV)/.installed

.PHONY: install demo figures test lint bench clean-results slurm-test

install: $(STAMP)

# Re-install only when the package metadata changes. torch is pinned by constraints.txt so a fresh
# install takes the 2.13.0 wheel; nlb-tools is installed without its (old, pinned) dependencies and is
# only used by tests and benchmarks as a reference implementation.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,cluster]"
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps "nlb-tools==0.0.4" || echo "nlb-tools not installed: reference checks will be skipped"
	touch $(STAMP)

# The GPU families' jobs declare `gpu=1`: one at a time per CUDA device here; a machine without one puts no
# limit on that resource, so those fits (then on the CPU) run side by side like every other job.
GPU_LIMIT = $(shell $(BIN)/python -c "import torch; n = torch.cuda.device_count(); print(f'--resources gpu={n}' if n else '')")

demo: install
	$(BIN)/snakemake --cores $(CORES) --workflow-profile workflow/profiles/default $(GPU_LIMIT)

figures: install
	$(BIN)/snakemake --cores $(CORES) --workflow-profile workflow/profiles/default $(GPU_LIMIT) figures_all

test: install
	$(BIN)/python -m pytest -q

# ruff (style and bugs, whole tree), mypy (the whole library, src/cortexfit), snakemake --lint (the workflow).
lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python workflow/scripts/snakemake_lint.py

# A real single-node SLURM cluster on this machine (needs root; installs slurm-wlm and munge with apt-get when
# missing) runs the .test workflow through snakemake-executor-plugin-slurm; not part of `make test`.
slurm-test: install
	bash workflow/scripts/slurm_test.sh

bench: install
	$(BIN)/python benchmarks/bench_ingest.py

clean-results:
	rm -rf results data/simulated .snakemake
