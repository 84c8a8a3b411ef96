#!/bin/bash
# Usage: scripts/slurm/submit.sh SHARDS [lesser options...]
# Submits an array job of SHARDS tasks, each running `lesser run --shard auto` with the
# options given, and a report job that runs `lesser report` with the same options once every
# task has succeeded. The options must be ones both commands take (--specs, --data, --out,
# --only, --set, --pairs, --epochs, --repeats, --max-grid). LESSER names the binary
# (default: lesser on PATH); --out must be on a file system every node shares.
set -euo pipefail
shards=${1:?usage: submit.sh SHARDS [lesser options...]}
shift
here=$(dirname "$0")
array=$(sbatch --parsable --array=0-$((shards - 1)) "$here/sweep.sbatch" "$@")
report=$(sbatch --parsable --dependency=afterok:"${array%%;*}" "$here/report.sbatch" "$@")
echo "sweep: array job $array ($shards shards); report: job $report"
