#!/usr/bin/env bash
# Pin the images by digest: a tag can be moved to other bytes, a digest cannot.
#
#   infra/pin-images.sh base              # the Dockerfile's FROM line: its tag's current digest
#   infra/pin-images.sh app IMAGE:TAG     # after `docker push IMAGE:TAG`: every Kubernetes manifest and
#                                         # aws/cluster.yaml run IMAGE:TAG@<its digest>
#
# Digests come from `crane digest` (go-containerregistry) when it is installed, else from
# `docker buildx imagetools inspect`; both ask the registry, so log in to it first (for ECR:
# `aws ecr get-login-password | docker login ...`, as in aws/cluster.yaml). The tag stays in the reference
# for people to read; the digest is what pulls. Review the change (`git diff infra/`) and commit it.
#
# Exit status: 0 when every reference was rewritten, 1 when a digest could not be resolved or no reference
# was found, 2 for a usage error.
set -euo pipefail

usage() {
  echo "usage: pin-images.sh base | pin-images.sh app IMAGE:TAG" >&2
  exit 2
}

cd "$(dirname "${BASH_SOURCE[0]}")"

digest() {
  local out
  if command -v crane >/dev/null 2>&1; then
    out=$(crane digest "$1") || out=
  else
    out=$(docker buildx imagetools inspect "$1" --format '{{.Manifest.Digest}}') || out=
  fi
  if [[ ! "$out" =~ ^sha256:[0-9a-f]{64}$ ]]; then
    echo "pin-images.sh: no digest for $1 (got '${out}'); is the tag pushed, and are you logged in?" >&2
    exit 1
  fi
  printf '%s' "$out"
}

# A literal string as a sed -E pattern (image references hold no '#', the delimiter used below).
literal() { printf '%s' "$1" | sed -E 's/[][\.*^$+?(){}|]/\\&/g'; }

# Only the characters of an image reference, so that it can be written into the files as it is.
checked() {
  [[ "$1" =~ ^[A-Za-z0-9._/:-]+$ ]] || { echo "pin-images.sh: not an image reference: '$1'" >&2; exit 2; }
}

case "${1:-}" in
  base)
    (($# == 1)) || usage
    from=$(sed -nE 's/^FROM ([^ @]+)(@sha256:[0-9a-f]{64})?$/\1/p' Dockerfile)
    [[ -n "$from" && "$from" == *:* ]] || { echo "pin-images.sh: no 'FROM image:tag' line in infra/Dockerfile" >&2; exit 1; }
    checked "$from"
    pinned=$(digest "$from")
    sed -i -E "s#^FROM $(literal "$from")(@sha256:[0-9a-f]{64})?\$#FROM $from@$pinned#" Dockerfile
    echo "infra/Dockerfile: FROM $from@$pinned"
    ;;
  app)
    (($# == 2)) || usage
    image=$2
    name=${image##*/}
    [[ "$image" != *@* && "$name" == *:* ]] || { echo "pin-images.sh: give IMAGE:TAG, e.g. .../embedding-refresh:ray-2.60.0-py311" >&2; exit 2; }
    checked "$image"
    repository=${image%:*}
    pinned=$(digest "$image")
    files=(k8s/*.yaml aws/cluster.yaml)
    # Every reference to the repository (any tag, pinned or not) becomes IMAGE:TAG@digest.
    pattern="$(literal "$repository"):[A-Za-z0-9_.-]+(@sha256:[0-9a-f]{64})?"
    if ! grep -qE "$pattern" "${files[@]}"; then
      echo "pin-images.sh: no reference to $repository in infra/k8s/ or infra/aws/cluster.yaml" >&2
      exit 1
    fi
    sed -i -E "s#$pattern#$image@$pinned#g" "${files[@]}"
    grep -lE "$(literal "$image@$pinned")" "${files[@]}" | sed 's#^#infra/#'
    ;;
  *) usage ;;
esac
