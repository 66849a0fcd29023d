#!/usr/bin/env bash
# Submit at most one refresh per schedule window, and wait for it.
#
#   export RAY_ADDRESS=http://127.0.0.1:8265 RAY_AUTH_MODE=token   # token in ~/.ray/auth_token or RAY_AUTH_TOKEN
#   REFRESH_INPUT=s3://corpus-bucket/events/ REFRESH_STORE=s3://models-bucket/word2vec/ \
#     infra/submit.sh --model word2vec --workers 16 --json
#
# Arguments are passed on to `python -m jobs.refresh`. The submission id is `refresh-<name>-<window start>`,
# e.g. refresh-word2vec-20260501T0000Z, so a scheduler that fires twice in a window (a retry, an overlap, a
# manual run) finds the window's job already there and exits 0 without starting another. Ray rejects a
# duplicate id atomically, so two racing calls cannot both submit.
#
# Environment:
#   RAY_ADDRESS           the cluster's dashboard address (required)
#   RAY_AUTH_MODE=token   required, with the token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token
#   REFRESH_INPUT         partitions to consume, passed as --input (required)
#   REFRESH_STORE         model store, passed as --store (required)
#   REFRESH_NAME          name in the submission id (default: the store's last path segment)
#   REFRESH_WINDOW        daily (default) or hourly
#   REFRESH_AT            a UTC time inside the window to run for (default: now), e.g. 2026-05-01T13:45:00Z
#
# Exit status: the job's own (jobs/errors.py), so a scheduler can tell "retry" from "do not retry":
#   0    the job SUCCEEDED (published, or nothing new), or the window's job already exists
#   3    the data, the quality gate or the store's content said no: a rerun fails the same way until someone acts
#   75   the infrastructure failed (a node, memory, the store, no room for the trainer, the job could not be
#        submitted or its driver started): a rerun is safe
#   143  the job was stopped (`ray job stop`, an eviction): a rerun is safe
#   2    a usage error (a flag; this script's own configuration; a token Ray refuses)
#   1    an unexpected error (a bug)
# `ray job submit` itself exits 1 on any failure, so the status is read afterwards from Ray's record of the
# job (`ray job status`: the driver's exit code, or STOPPED); docs/operating.md has the details.
set -euo pipefail

die() {
  echo "submit.sh: $*" >&2
  exit 2
}

[[ -n "${RAY_ADDRESS:-}" ]] || die "set RAY_ADDRESS to the cluster, e.g. http://127.0.0.1:8265 (through 'ray dashboard')"
[[ -n "${REFRESH_INPUT:-}" ]] || die "set REFRESH_INPUT to the partitions, e.g. s3://corpus-bucket/events/"
[[ -n "${REFRESH_STORE:-}" ]] || die "set REFRESH_STORE to the model store, e.g. s3://models-bucket/word2vec/"

# The cluster runs with token auth; an unauthenticated client only gets a confusing rejection later.
if [[ "${RAY_AUTH_MODE:-}" != "token" ]]; then
  die "RAY_AUTH_MODE=token is required (got '${RAY_AUTH_MODE:-unset}'); export it and provide the cluster's token"
fi
token_file="${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}"
if [[ -z "${RAY_AUTH_TOKEN:-}" && ! -s "$token_file" ]]; then
  die "no Ray auth token: set RAY_AUTH_TOKEN, or put the token in $token_file (or point RAY_AUTH_TOKEN_PATH at it)"
fi

case "${REFRESH_WINDOW:-daily}" in
  daily) window_format='%Y%m%dT0000Z' ;;
  hourly) window_format='%Y%m%dT%H00Z' ;;
  *) die "REFRESH_WINDOW must be daily or hourly, not '${REFRESH_WINDOW}'" ;;
esac
window_start=$(date -u -d "${REFRESH_AT:-now}" "+$window_format") || die "REFRESH_AT is not a time: '${REFRESH_AT}'"

# Name: the store's last path segment (s3://models-bucket/word2vec/ -> word2vec), in id-safe characters.
name="${REFRESH_NAME:-$(basename "${REFRESH_STORE%/}")}"
name=$(printf '%s' "$name" | tr -c 'A-Za-z0-9_-' '-')
submission_id="refresh-${name}-${window_start}"

# `--working-dir .` uploads the repository root, wherever this script is called from.
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "submit.sh: submitting $submission_id to $RAY_ADDRESS" >&2
status=0
ray job submit --submission-id "$submission_id" --address "$RAY_ADDRESS" \
  --working-dir . --runtime-env infra/runtime_env.yaml \
  -- python -m jobs.refresh --input "$REFRESH_INPUT" --store "$REFRESH_STORE" "$@" \
  2>&1 | tee "$log" || status=${PIPESTATUS[0]}

# Ray's exact wording, with the id, so that a job log that happens to say "already exists" is not mistaken
# for it.
if ((status != 0)) && grep -qF "Job with submission_id $submission_id already exists" "$log"; then
  echo "submit.sh: $submission_id already ran in this window; not submitting again" \
    "(its outcome: ray job status $submission_id)" >&2
  exit 0
fi

if ! grep -qF "Job '$submission_id' submitted successfully" "$log"; then
  # Never submitted: a token Ray refuses is configuration; anything else (the dashboard unreachable or
  # failing) is for a retry, which cannot run the window twice.
  code=75
  grep -qE "Unauthorized|Forbidden" "$log" && code=2
  echo "submit.sh: $submission_id could not be submitted; exit $code" >&2
  exit "$code"
fi

# The job's own status, as the Ray CLI reported it last in the text on stdin: "<STATE> [<driver exit code>]".
# `ray job submit` ends with that report, after the job's logs; only the CLI's own lines count (they start with
# its message or its "cli.py:<line> -- " prefix, colours aside), so a job's log line cannot pass for one. The
# driver's exit code is on the first "Status message" line after a failure (the log tail it quotes follows).
last_status() {
  awk -v job="Job '$submission_id' " -v query="Status for job '$submission_id': " '
    BEGIN { cli = "^([^ ]+ [^ ]+[ \t]+[A-Z]+ cli\\.py:[0-9]+ -- )?" }
    { gsub(/\033\[[0-9;]*m/, "") }
    $0 ~ (cli job "succeeded$") { state = "SUCCEEDED"; code = ""; fresh = 0 }
    $0 ~ (cli job "was stopped$") { state = "STOPPED"; code = ""; fresh = 0 }
    $0 ~ (cli job "failed$") { state = "FAILED"; code = ""; fresh = 1; next }
    $0 ~ (cli query "[A-Z]+$") { state = $NF; code = ""; fresh = 0 }
    fresh && $0 ~ (cli "Status message: ") {
      if (match($0, /Status message: Job entrypoint command failed with exit code -?[0-9]+/)) {
        code = substr($0, RSTART, RLENGTH); sub(/.* /, "", code)
      }
      fresh = 0
    }
    END { print state, code }
  '
}

# `ray job submit` exits 0 for a STOPPED job and 1 for any FAILED one, so the status is read from its report.
read -r state driver < <(last_status <"$log") || true
tries=0
while [[ "${state:-}" != @(SUCCEEDED|FAILED|STOPPED) ]]; do
  # No final report: the client lost the dashboard while tailing the logs. Ask Ray until the job ends.
  sleep "${REFRESH_STATUS_POLL:-15}"
  if answer=$(ray job status --address "$RAY_ADDRESS" "$submission_id" 2>&1); then
    tries=0
    read -r state driver < <(last_status <<<"$answer") || true
  elif ((++tries >= 20)); then
    echo "submit.sh: cannot read the status of $submission_id from $RAY_ADDRESS; exit 75" >&2
    exit 75
  fi
done

case "$state" in
  SUCCEEDED) code=0 ;;
  STOPPED) code=143 ;;
  *)
    case "${driver:-}" in
      1 | 2 | 3 | 75 | 143) code=$driver ;;
      -15) code=143 ;;     # SIGTERM ended the driver before its own handler was installed
      -* | 137) code=75 ;; # killed (the kernel's OOM killer, its node lost): nothing half-published, retry
      "") code=75 ;;       # Ray could not start the driver (its runtime env, the job supervisor)
      *) code=1 ;;
    esac
    ;;
esac
echo "submit.sh: $submission_id ended $state${driver:+ (driver exit code $driver)}: exit $code" >&2
exit "$code"
