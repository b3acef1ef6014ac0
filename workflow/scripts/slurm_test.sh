#!/usr/bin/env bash
# `make slurm-test`: the workflow through a real single-node SLURM cluster started on this machine.
#
# Installs Debian's slurm-wlm and munge when missing (apt-get; needs root), writes a slurm.conf for one node
# with this machine's CPUs and memory (no accounting database: job states come from `squeue --states=all`,
# kept for MinJobAge = 1 h), starts munged, slurmctld and slurmd as root, runs simulate + ingest + one fit +
# its fixed points of the .test config through `snakemake --executor slurm` (the workflow profile
# workflow/profiles/slurm, as a lab would), prints one line per SLURM job with its final state, stops the
# daemons it started and exits non-zero unless every job COMPLETED.
#
# Everything it writes stays in one temporary folder (kept with KEEP=1; printed at the end). Not part of
# `make test`: it needs root and takes about two minutes.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
TARGET=${TARGET:-results/sim_reach/fits/rate/fixed_points.nc}  # pulls simulate, ingest, fit
EXPECTED_JOBS=${EXPECTED_JOBS:-4}

say() { printf 'slurm-test: %s\n' "$*"; }
die() { say "error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (it starts munged, slurmctld and slurmd)"
[ -x "$PY" ] || die "$PY not found: run 'make install' first"
"$PY" -c "import snakemake_executor_plugin_slurm" 2>/dev/null \
  || die "snakemake-executor-plugin-slurm is not installed: pip install -e '.[cluster]'"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q slurm-wlm munge >/dev/null
fi

WORK=$(mktemp -d /tmp/cortexfit-slurm.XXXXXX)
chmod 700 "$WORK"
mkdir -p "$WORK"/{munge,state,spool,run,logs}
PIDS=()
cleanup() {
  local rc=$?
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill "${PIDS[i]}" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  [ ${#PIDS[@]} -gt 0 ] && say "stopped the daemons it started (pids ${PIDS[*]})"
  if [ "${OWN_CONF:-0}" = 1 ]; then cp /etc/slurm/slurm.conf "$WORK/slurm.conf" 2>/dev/null || true; rm -f /etc/slurm/slurm.conf; fi
  if [ "${KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then say "files kept in $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------- munge
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$WORK/munge/munge.key"
SOCKET=$WORK/munge/munge.socket
munged --foreground --force --key-file="$WORK/munge/munge.key" --socket="$SOCKET" \
  --pid-file="$WORK/munge/munged.pid" --seed-file="$WORK/munge/munged.seed" \
  --log-file="$WORK/munge/munged.log" >>"$WORK/munge/munged.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [ -S "$SOCKET" ] && break; sleep 0.1; done
[ -S "$SOCKET" ] || die "munged did not start: $(tail -3 "$WORK/munge/munged.log" 2>/dev/null)"
munge --socket="$SOCKET" -n | unmunge --socket="$SOCKET" >/dev/null || die "munge round trip failed"

# ---------------------------------------------------------------------------------------------- slurm
NODE=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))  # leave 1 GiB to the system
# The config must sit where SLURM looks by default: the job-step plugin clears SLURM_* variables (SLURM_CONF
# too) before its `srun`, so an srun inside a job finds only /etc/slurm/slurm.conf. A machine that already has
# one is a real SLURM installation, which this test leaves alone.
export SLURM_CONF=/etc/slurm/slurm.conf
MARK="# written by cortexfit's workflow/scripts/slurm_test.sh; removed when it ends"
if [ -e "$SLURM_CONF" ] && ! head -1 "$SLURM_CONF" | grep -qF "$MARK"; then
  die "$SLURM_CONF exists: this machine has a SLURM installation of its own; run the test elsewhere"
fi
mkdir -p /etc/slurm
OWN_CONF=1
cat > "$SLURM_CONF" <<EOF
$MARK
ClusterName=cortexfit-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/logs/slurmctld.log
SlurmdLogFile=$WORK/logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MinJobAge=3600
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -c -f "$SLURM_CONF" >>"$WORK/logs/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" -N "$NODE" >>"$WORK/logs/slurmd.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 60); do
  state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
  [ "$state" = idle ] && break
  sleep 1
done
[ "$state" = idle ] || die "the node did not come up (state '$state'); see $WORK/logs"
say "cluster up: node $NODE, $CPUS CPUs, $MEM_MB MB, partition debug ($(sinfo -V))"
# A batch job that starts a job step, as the plugin's jobs do (sbatch -> srun), before the workflow.
if ! sbatch --wait --comment smoke_test -o "$WORK/logs/smoke.out" --wrap 'env -u SLURM_CONF srun true' >/dev/null; then
  cat "$WORK/logs/smoke.out" >&2
  die "a batch job could not start a job step"
fi
say "sbatch + srun smoke job: ok"

# ------------------------------------------------------------------------------------- the workflow
RUN=$WORK/run
cp -r "$REPO/.test/config" "$RUN/"
say "snakemake --executor slurm: $TARGET of the .test config"
set +e
(
  cd "$RUN"
  "$PY" -m snakemake -s "$REPO/Snakefile" --workflow-profile "$REPO/workflow/profiles/slurm" \
    --slurm-no-account --slurm-status-command squeue --slurm-init-seconds-before-status-checks 5 \
    --slurm-logdir "$WORK/slurm-logs" --slurm-keep-successful-logs --jobs 4 "$TARGET"
) > "$WORK/snakemake.log" 2>&1
SM_RC=$?
set -e
tail -5 "$WORK/snakemake.log" | sed 's/^/  snakemake| /'

# One line per job: id, rule and wildcards (the plugin's --comment), final state, exit code, and what it
# asked for (CPUs, memory, time limit, GRES) -- the profile's per-rule resources.
squeue --states=all -h -o '%i|%k|%T|%C|%m|%l|%b' | sort -n > "$WORK/jobs.txt" || true
N=0; BAD=0
while IFS='|' read -r id comment state cpus mem limit gres; do
  [ "$comment" = smoke_test ] && continue
  N=$((N + 1))
  code=$(scontrol show job "$id" 2>/dev/null | sed -n 's/.* ExitCode=\([^ ]*\).*/\1/p' | head -1)
  printf 'job %-3s %-44s %-10s exit %-4s cpus %s mem %s time %s gres %s\n' "$id" "$comment" "$state" \
    "${code:-?}" "$cpus" "$mem" "$limit" "$gres"
  [ "$state" = COMPLETED ] || BAD=$((BAD + 1))
done < "$WORK/jobs.txt"
[ -s "$RUN/$TARGET" ] || { say "$TARGET was not written"; BAD=$((BAD + 1)); }
[ "$N" -eq "$EXPECTED_JOBS" ] || { say "expected $EXPECTED_JOBS jobs, SLURM ran $N"; BAD=$((BAD + 1)); }
[ "$SM_RC" -eq 0 ] || { say "snakemake exited $SM_RC (log: $WORK/snakemake.log)"; BAD=$((BAD + 1)); }
if [ "$BAD" -eq 0 ]; then
  say "PASSED: all $N jobs COMPLETED"
else
  say "FAILED: $BAD problem(s)"
  exit 1
fi
