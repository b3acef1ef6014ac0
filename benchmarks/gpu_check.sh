#!/usr/bin/env bash
# GPU check: one fit per RNN family on CUDA with steps/s, fixed points on CUDA, and the model benchmarks on CUDA.
#
# Run on a machine with an NVIDIA GPU from the repository root. Inputs: an activity file made here with
#   cortexfit ingest ../shared/data/sub-Jenkins_ses-small_desc-test_ecephys.nwb .gpu/mc_maze_small.nc \
#       --align move_onset_time --window-ms -250 450 --bin-ms 5 --areas unit-id:1xxx=PMd,2xxx=M1
# and, where the GPU machine lacks h5netcdf, its wheel in .whl/ (see the device notes in the closing note).
# Prints one JSON line per fit and a final JSON summary line.
set -u
cd "$(dirname "$0")/.."
OUTDIR=${OUT:-/tmp/cortexfit_gpu}
mkdir -p "$OUTDIR"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="$PWD/src:/tmp/site"
else
  export PYTHONPATH="$PWD/src"
fi
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
ACT=${ACTIVITY:-.gpu/mc_maze_small.nc}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

for m in rate vanilla lstm esn; do
  python3 -m cortexfit -q fit "$ACT" "$OUTDIR/fit_$m" --model "$m" --device cuda --seed 0 \
      --config benchmarks/gpu_fit.yaml || echo "{\"model\": \"$m\", \"error\": true}"
  python3 - "$OUTDIR/fit_$m" <<'PY'
import json, math, sys, csv
from pathlib import Path
import xarray as xr
d = Path(sys.argv[1])
if not (d / "metrics.json").exists():
    sys.exit(0)
m = json.loads((d / "metrics.json").read_text())
with xr.open_dataset(d / "fit.nc", engine="h5netcdf") as f:
    n_train = int((f["split"].values == "train").sum())
batch = 16
steps = m["epochs"] * math.ceil(n_train / batch) if m["model"] != "esn" else None
sps = steps / m["train_seconds"] if steps and m["train_seconds"] else None
print(json.dumps({"model": m["model"], "device": m["device"], "epochs": m["epochs"], "train_seconds": m["train_seconds"],
                  "train_steps_per_s": sps, "co_bps": m["co_bps"]}))
PY
done
python3 -m cortexfit -q fixed-points "$OUTDIR/fit_lstm" "$OUTDIR/fp_lstm.nc" --device cuda --n-init 1024 \
  && python3 -c "import xarray as xr; d=xr.open_dataset('$OUTDIR/fp_lstm.nc', engine='h5netcdf'); import collections; print('lstm fixed points on cuda:', dict(collections.Counter(map(str, d['label'].values))))"
timeout 150 python3 benchmarks/bench_models.py --device cuda --esn-device cuda --seconds 1 --repeats 1 2>&1 | tail -3
