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
# Exit status: 0 when the job SUCCEEDED or the window's job already exists, the status of `ray job submit`
# otherwise (non-zero when the job FAILED), 2 for a configuration error.
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
exit "$status"
