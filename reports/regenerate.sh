#!/usr/bin/env bash
# Regenerate reports/: the reference executors and Airflow's own executors on every Airflow of the tox
# matrix -- the contract tier everywhere, the e2e tier too (a real scheduler; Airflow 2 needs Debian's
# PostgreSQL server binaries for a parallel executor) on the environments in E2E_ENVS (default: the
# newest Airflow 2 and 3) -- then the merged matrix. `tox -e reports` runs it; so does
# `bash reports/regenerate.sh [ENV ...]` (default: every version).
#
# The tox environments are created in parallel (`tox -p`); certifications run JOBS at a time (default:
# half the cores, at least 1) -- budgets scale from each run's own calibration, so a loaded machine
# slows the reports down but does not change their verdicts.
set -euo pipefail
cd "$(dirname "$0")/.."
envs=("$@")
if [ ${#envs[@]} -eq 0 ]; then
  envs=(airflow27 airflow29 airflow210 airflow2 airflow30 airflow31 airflow32 airflow3)
fi
e2e_envs=" ${E2E_ENVS:-airflow2 airflow3} "
jobs=${JOBS:-$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))}
tox -p auto -e "$(IFS=,; echo "${envs[*]}")" --notest

certify_env() {
  local env=$1 bin=".tox/$1/bin" version targets target name extra tier=()
  if [[ "$e2e_envs" == *" $env "* ]]; then tier=(--e2e); fi
  version=$("$bin/python" -c "from importlib.metadata import version; print(version('apache-airflow'))")
  targets="reference_executors.LocalExecutor reference_executors.SequentialExecutor airflow.executors.local_executor.LocalExecutor"
  if [ "${version%%.*}" = 2 ]; then targets="$targets airflow.executors.sequential_executor.SequentialExecutor"; fi
  for target in $targets; do
    extra=()
    case "$target" in
      reference_executors.*) name="reference-${target##*.}"
                             extra=(--backend-driver reference_executors.faults.StateDirectoryOutage --coverage);;
      *) name="airflow-${target##*.}";;
    esac
    "$bin/executor-conformance" certify "$target" "${tier[@]}" "${extra[@]}" --report "reports/airflow-$version/$name" \
      -- -q -p no:randomly -n 0 > "reports/airflow-$version.$name.log" 2>&1 || true
    if [ -f "reports/airflow-$version/$name/report.json" ]; then rm -f "reports/airflow-$version.$name.log"; fi
    echo "$env: $target -> reports/airflow-$version/$name ($(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['verdict'])" "reports/airflow-$version/$name/report.json" 2>/dev/null || echo 'no report'))"
  done
}

running=0
for env in "${envs[@]}"; do
  certify_env "$env" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait
.tox/airflow3/bin/executor-conformance matrix reports/airflow-*/*/ --output reports/MATRIX.md > /dev/null
echo "reports written under reports/ (matrix: reports/MATRIX.md)"
