#!/usr/bin/env bash
# make compat: the job (the project's [job] extra) against the oldest and newest gensim and Ray it supports
# (and, to show where the ranges end, the release just below each), by hand, not in CI. Each combination gets
# its own virtual environment under .compat/, runs the demo (two real refreshes on a local Ray, the second an update, then a verified
# load) and the tests that pin gensim's per-thread loops, the model format and the reader's answers against
# gensim's, and prints one line:
#
#   gensim 4.4.0  ray 2.60.0  supported  passed  (demo 48 s, tests 31 s)
#
#   tests/compat/run.sh                              # the default matrix below
#   tests/compat/run.sh "4.3.3 2.60.0 outside"       # one combination: gensim, Ray, what it is
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
matrix=("$@")
if ((${#matrix[@]} == 0)); then
  # pyproject.toml: gensim>=4.4,<4.5 (4.4.0 is the only release) and ray>=2.60,<2.61 (2.60.0 is the only one)
  matrix=("4.4.0 2.60.0 supported" "4.3.3 2.60.0 outside" "4.4.0 2.59.0 outside")
fi
mkdir -p .compat
status=0
for entry in "${matrix[@]}"; do
  read -r gensim ray what <<<"$entry"
  venv=".compat/gensim-$gensim-ray-$ray"
  log="$venv.log"
  if [[ ! -x "$venv/bin/python" ]]; then
    "$PYTHON" -m venv "$venv" >"$log" 2>&1
    "$venv/bin/pip" install --quiet --upgrade pip >>"$log" 2>&1
  fi
  older=()  # gensim before 4.4 needs numpy 1.x, which pyarrow 21 and later refuse at import
  [[ "$gensim" == 4.[0-3].* ]] && older=("numpy<2" "pyarrow>=17,<21")
  if ! "$venv/bin/pip" install --quiet -e '.[job,test]' "gensim==$gensim" "ray[default]==$ray" >>"$log" 2>&1; then
    # outside the ranges pip refuses the project's own pins: install the project without them
    "$venv/bin/pip" install --quiet "gensim==$gensim" "ray[default]==$ray" "${older[@]}" numpy pyarrow boto3 cryptography \
      pytest pytest-timeout moto[server] pyyaml jsonschema psutil zstandard >>"$log" 2>&1 &&
      "$venv/bin/pip" install --quiet --no-deps -e . >>"$log" 2>&1
  fi
  work=$(mktemp -d)
  start=$(date +%s)
  HOME="$work" RAY_AUTH_MODE=disabled timeout 900 "$venv/bin/python" -m jobs.demo --workdir "$work/demo" >>"$log" 2>&1
  demo=$?
  mid=$(date +%s)
  HOME="$work" timeout 900 "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/component/test_epochs.py \
    tests/component/test_serialize.py tests/component/test_vocabulary_update.py tests/component/test_keyed.py >>"$log" 2>&1
  tests=$?
  end=$(date +%s)
  rm -rf "$work"
  outcome=passed
  ((demo == 0 && tests == 0)) || outcome="FAILED (demo exit $demo, tests exit $tests; see $log)"
  [[ "$what" == supported && "$outcome" != passed ]] && status=1
  printf 'gensim %-6s ray %-7s %-9s %s  (demo %d s, tests %d s)\n' "$gensim" "$ray" "$what" "$outcome" \
    $((mid - start)) $((end - mid))
done
exit $status
