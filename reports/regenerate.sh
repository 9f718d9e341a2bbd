#!/usr/bin/env bash
# Regenerate reports/ for the reference executors and Airflow's own executors on the newest Airflow 2
# and 3 -- contract tier and e2e tier (a real scheduler; Airflow 2 needs Debian's PostgreSQL server
# binaries for a parallel executor) -- then the merged matrix. Run through `tox -e reports`.
set -euo pipefail
cd "$(dirname "$0")/.."
tox -e airflow2,airflow3 --notest
for env in airflow2 airflow3; do
  bin=".tox/$env/bin"
  version=$("$bin/python" -c "from importlib.metadata import version; print(version('apache-airflow'))")
  targets="reference_executors.LocalExecutor reference_executors.SequentialExecutor airflow.executors.local_executor.LocalExecutor"
  if [ "$env" = airflow2 ]; then targets="$targets airflow.executors.sequential_executor.SequentialExecutor"; fi
  for target in $targets; do
    extra=()
    case "$target" in
      reference_executors.*) name="reference-${target##*.}"
                             extra=(--backend-driver reference_executors.faults.StateDirectoryOutage);;
      *) name="airflow-${target##*.}";;
    esac
    "$bin/executor-conformance" certify "$target" --e2e "${extra[@]}" --report "reports/airflow-$version/$name" \
      -- -q -p no:randomly || true
  done
done
.tox/airflow3/bin/executor-conformance matrix reports/airflow-*/* --output reports/MATRIX.md > /dev/null
echo "reports written under reports/ (matrix: reports/MATRIX.md)"
