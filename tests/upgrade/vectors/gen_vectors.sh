#!/usr/bin/env bash
# Regenerates the wire vectors of tests/upgrade/vectors (README.md):
#   1. each release in RELEASES: its schemas/ (git archive) + gen_vectors.cpp -> <commit>_* files
#   2. the working tree's schemas/ -> current_* files (what this agent and central write now)
#   3. every release's reader on the current_* files -> verdicts.txt (how an older central reads a
#      newer agent's frames, how an older agent reads a newer central's acks)
# Needs g++, libzstd-dev, libssl-dev, libboost-json-dev, libsqlite3-dev and the git history.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
# Commits that changed the wire code (git log -- schemas/src): the first frame, then signatures
# and the reject codes bad_signature/unapproved.
RELEASES=(edaab0b 19fa98a)
work=$(mktemp -d /tmp/semilab-vectors-XXXXXX)
trap 'rm -rf "$work"' EXIT

build() {  # src_root out
  local src=$1 out=$2 defs=()
  grep -q "class signing_key" "$src/schemas/include/semilab/schemas/signing.hpp" 2>/dev/null &&
    defs+=(-DGEN_SIGNING)
  # shellcheck disable=SC2046
  g++ -std=c++20 -O1 -w -DZSTD_STATIC_LINKING_ONLY "${defs[@]}" -I "$src/schemas/include" -I "$src/schemas/src" \
      -I "$here" "$here/gen_vectors.cpp" $(ls "$src"/schemas/src/*.cpp) \
      -o "$out" -lzstd -lcrypto -lsqlite3 -lboost_json
}

for rel in "${RELEASES[@]}"; do
  mkdir -p "$work/$rel"
  git -C "$root" archive "$rel" schemas | tar -x -C "$work/$rel"
  build "$work/$rel" "$work/gen-$rel"
  "$work/gen-$rel" write "$here" "$rel" "$here/test_signing_key.pem"
done
build "$root" "$work/gen-current"
"$work/gen-current" write "$here" current "$here/test_signing_key.pem"
{
  echo "# How each release reads what the current code writes (gen_vectors.sh; do not edit)."
  for rel in "${RELEASES[@]}"; do
    "$work/gen-$rel" read "$here"/current_* | sed "s/^/$rel /"
  done
} > "$here/verdicts.txt"
"$work/gen-current" digest > "$here/canonical_digest.txt"
cat "$here/verdicts.txt"
