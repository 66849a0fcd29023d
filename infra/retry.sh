#!/usr/bin/env bash
# Run a refresh, and run it again when it failed in a way a rerun fixes: at most ATTEMPTS runs in all.
#
#   infra/retry.sh 3 python -m jobs.refresh --input ... --store ...
#
# The RayJob and RayCronJob entrypoints (infra/k8s/) go through it, because KubeRay cannot retry by exit status:
# its backoffLimit reruns every failed job, so those manifests set it to 0 and retry here instead, on the same
# cluster (the autoscaler replaces a lost node meanwhile).
#
# Reruns on exit 75 (the infrastructure failed: a node, the store, a concurrent refresh) and 143 (SIGTERM that
# reached the refresh but not this wrapper), after RETRY_DELAY_S seconds (default 60). Never reruns 0, 2 (a
# usage error), 3 (the data or the gate said no: a rerun fails the same way), 1 (a bug) or anything else; the
# ledger and the conditional pointer make each rerun safe. A SIGTERM or SIGINT to this wrapper (`ray job stop`,
# a RayJob's activeDeadlineSeconds: Ray signals the whole process tree) is a stop, not a failure: the current
# run is left to clean up and exit, and nothing is rerun.
#
# Exit status: the last run's.
set -uo pipefail

usage() {
  echo "usage: retry.sh ATTEMPTS COMMAND [ARG...]   (ATTEMPTS >= 1: runs in all)" >&2
  exit 2
}
(($# >= 2)) || usage
[[ "$1" =~ ^[1-9][0-9]*$ ]] || usage
attempts=$1
shift
delay="${RETRY_DELAY_S:-60}"
[[ "$delay" =~ ^[0-9]+$ ]] || { echo "retry.sh: RETRY_DELAY_S must be whole seconds, not '$delay'" >&2; exit 2; }

stopped=0
child=
# Ray also signals the refresh itself; forwarding covers a signal sent to this wrapper alone.
on_signal() {
  stopped=1
  if [[ -n "$child" ]]; then kill -TERM "$child" 2>/dev/null; fi
}
trap on_signal TERM INT

# Run "$@" in the background and wait for it; its status in $status. A stop that arrived before $child was
# set is passed on as soon as it is. `wait` returns early when a trapped signal arrives: wait until the
# process has exited, then take its status (bash keeps it for every later `wait` on that id).
run() {
  "$@" &
  child=$!
  if ((stopped)); then kill -TERM "$child" 2>/dev/null; fi
  wait "$child"
  while kill -0 "$child" 2>/dev/null; do wait "$child"; done
  wait "$child"
  status=$?
  child=
}

status=0
for ((attempt = 1; attempt <= attempts; attempt++)); do
  run "$@"
  if ((stopped)); then
    echo "retry.sh: stopped; not running again (exit $status)" >&2
    exit "$status"
  fi
  case "$status" in
    75 | 143) ;;
    *) exit "$status" ;;
  esac
  if ((attempt == attempts)); then
    echo "retry.sh: run $attempt of $attempts exited $status; no attempts left" >&2
    exit "$status"
  fi
  echo "retry.sh: run $attempt of $attempts exited $status (a rerun is safe); running again in ${delay}s" >&2
  failed=$status
  run sleep "$delay"
  status=$failed
  if ((stopped)); then
    echo "retry.sh: stopped while waiting to run again (exit $status)" >&2
    exit "$status"
  fi
done
exit "$status"
