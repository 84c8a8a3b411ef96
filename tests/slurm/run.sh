#!/usr/bin/env bash
# A sweep on a real one-node Slurm cluster, against the same sweep run locally.
#
# Starts munge and Slurm (slurmctld, slurmd) from a temporary directory, with a temporary
# configuration and a generated munge key, runs `sbatch --wait --array=0-2` of
# scripts/slurm/sweep.sbatch over two tiny variants, then `lesser report` as a Slurm job,
# and compares the merged reports byte for byte with a local `lesser run` (timing.csv aside).
# The daemons it started are stopped by their pids.
#
# Needs Debian's slurm-wlm and munge; as root it installs them when missing, and otherwise
# skips with the reason, unless LESSER_REQUIRE_SLURM=1 (as .ci/run sets it), which makes a
# skip a failure. Run by .ci/run after the tests; by hand:
#   cargo build --release && bash tests/slurm/run.sh
set -uo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
lesser="$repo/target/release/lesser"

skip() {
  if [ "${LESSER_REQUIRE_SLURM:-}" = 1 ]; then
    echo "slurm test failed: $1 (LESSER_REQUIRE_SLURM=1)"
    echo "slurm: 0 passed, 1 failed"
    exit 1
  fi
  echo "slurm test skipped: $1"
  exit 0
}

if ! command -v sbatch >/dev/null || ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || skip "slurm-wlm and munge are not installed (and this is not root with apt-get)"
  echo "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1; } \
    || skip "apt-get could not install slurm-wlm and munge"
fi
[ -x "$lesser" ] || { echo "slurm test: $lesser is missing (cargo build --release)"; exit 1; }

t=$(mktemp -d /tmp/lesser-slurm.XXXXXX)
pids=()
cleanup() {
  for f in "$t/slurmd.pid" "$t/slurmctld.pid" "$t/munged.pid"; do
    [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
  done
  sleep 1
  [ -n "${KEEP:-}" ] || rm -rf "$t"
}
trap cleanup EXIT
fail() {
  echo "slurm test failed: $1"
  for log in "$t"/log/*.log; do echo "--- $log"; tail -n 20 "$log"; done
  echo "slurm: 0 passed, 1 failed"
  exit 1
}

mkdir -p "$t/state" "$t/spool" "$t/log" "$t/work/specs"
dd if=/dev/urandom of="$t/munge.key" bs=1 count=1024 2>/dev/null
chmod 400 "$t/munge.key"
munged -f --socket="$t/munge.sock" --key-file="$t/munge.key" --log-file="$t/log/munged.log" \
  --pid-file="$t/munged.pid" --seed-file="$t/munged.seed" || skip "munged would not start"

host=$(hostname -s)
port=$((20000 + $$ % 20000))
cat >"$t/slurm.conf" <<EOF
ClusterName=lesser-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$t/munge.sock
CredType=cred/munge
StateSaveLocation=$t/state
SlurmdSpoolDir=$t/spool
SlurmctldPidFile=$t/slurmctld.pid
SlurmdPidFile=$t/slurmd.pid
SlurmctldLogFile=$t/log/slurmctld.log
SlurmdLogFile=$t/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$t/slurm.conf"
slurmctld || fail "slurmctld would not start"
slurmd || fail "slurmd would not start"
for _ in $(seq 60); do
  [ "$(sinfo -h -o %t 2>/dev/null)" = idle ] && break
  sleep 0.5
done
[ "$(sinfo -h -o %t 2>/dev/null)" = idle ] || fail "the node did not come up"

# Two tiny variants: a few seconds of training in all.
cd "$t/work"
for v in alpha beta; do
  aux=1.0; [ $v = beta ] && aux=0.0
  cat >"specs/$v.toml" <<EOF
[model]
weight_sharing = true
aux_loss = $aux
digit = [
  { layer = "conv2d", out = 2, kernel = 3, stride = 2 },
  { layer = "relu" },
  { layer = "flatten" },
  { layer = "linear", in = 72, out = 10 },
]
head = [{ layer = "linear", in = 20, out = 2 }]
[train]
epochs = 2
batch_size = 50
repeats = 3
EOF
done
args=(--specs specs --data "$repo/data/mnist" --pairs 200)

"$lesser" run "${args[@]}" --out local --quiet || fail "the local run failed"
export LESSER="$lesser"
timeout 300 sbatch --wait --quiet --array=0-2 --cpus-per-task=1 \
  "$repo/scripts/slurm/sweep.sbatch" "${args[@]}" --out cluster || fail "the array job failed"
[ ! -e cluster/results.csv ] || fail "a shard wrote reports"
timeout 120 sbatch --wait --quiet "$repo/scripts/slurm/report.sbatch" "${args[@]}" --out cluster \
  || fail "the report job failed"
grep -q "6 rounds reported from the store, 0 missing" lesser-report-*.out \
  || fail "the report job did not find every round: $(cat lesser-report-*.out)"
for f in REPORT.md results.csv curves.csv figures/summary.svg figures/alpha.svg figures/beta.svg; do
  cmp -s "local/$f" "cluster/$f" || fail "cluster/$f differs from the local run's"
done
bash -n "$repo/scripts/slurm/submit.sh" || fail "submit.sh does not parse"
echo "slurm: 1 passed, 0 failed"
