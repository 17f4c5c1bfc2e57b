#!/usr/bin/env bash
# Differential check of tandem's manifest reader against kubectl's own reader
# (k8s.io/apimachinery's YAMLReader + sigs.k8s.io/yaml, built from the Go module proxy):
# both read the same streams, the JSON of every document must be equal.
# Usage: bash bench/kubectl-reader/check.sh   (needs go and python3; about a minute)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$here" && go build -o "$work/kubectl-reader" .)
(cd "$root" && cargo build -q --release -p tandem-bench --bin inject-bench)
bench="${CARGO_TARGET_DIR:-$root/target}/release/inject-bench"
python3 "$here/scalars.py" > "$work/scalars.yaml"
cp "$here/structures.yaml" "$work/"
cp "$root"/examples/*.yaml "$work/"
"$bench" corpus 200 > "$work/corpus.yaml"
fail=0
for f in "$work"/*.yaml; do
  "$work/kubectl-reader" < "$f" > "$f.kubectl"
  "$bench" tojson < "$f" > "$f.tandem"
  python3 - "$f" <<'PY' || fail=1
import json, sys
f = sys.argv[1]
k = open(f + ".kubectl").read().split("\n")
t = open(f + ".tandem").read().split("\n")
bad = 0
if len(k) != len(t):
    print(f"{f}: {len(k)} documents from kubectl, {len(t)} from tandem"); sys.exit(1)
for i, (a, b) in enumerate(zip(k, t)):
    if a.startswith("ERROR") or b.startswith("ERROR"):
        if a.startswith("ERROR") != b.startswith("ERROR"):
            bad += 1; print(f"{f} #{i+1}: kubectl {a!r}, tandem {b!r}")
        continue
    ja, jb = json.loads(a or "null"), json.loads(b or "null")
    # Go writes a float such as 2^64 as 18446744073709552000, serde_json as
    # 1.8446744073709552e+19: the same float64.
    same = ja == jb or json.dumps(ja, sort_keys=True) == json.dumps(jb, sort_keys=True) \
        or json.loads(a, parse_int=float) == json.loads(b, parse_int=float)
    if not same:
        bad += 1; print(f"{f} #{i+1}:\n  kubectl {a}\n  tandem  {b}")
print(f"{f.rsplit('/', 1)[1]}: {len(k) - 1} documents, {bad} differences")
sys.exit(1 if bad else 0)
PY
done
exit $fail
