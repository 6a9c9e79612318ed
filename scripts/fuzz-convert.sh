#!/usr/bin/env bash
# Bounded fuzzing of weight-convert's readers with cargo-fuzz (libFuzzer; needs a nightly toolchain
# and `cargo install cargo-fuzz`).
#
#   scripts/fuzz-convert.sh            # 60 s per target: pickle, npy, convert
#   SECONDS_PER_TARGET=600 scripts/fuzz-convert.sh pickle
#
# Corpora start from the committed fixtures (fixtures/data/convert): the data.pkl of each torch
# zip for `pickle`, the npy files (minus their magic) for `npy`, every file for `convert`.
# Crashes land in weight-convert/fuzz/artifacts/<target>/; turn each into a regression test in
# weight-convert/tests/robustness.rs (its bytes inline or as a fixture) before fixing it.
# The stable-Rust stand-in that CI runs is `cargo test -p weight-convert --test robustness`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fuzz="$root/weight-convert/fuzz"
data="$root/fixtures/data/convert"
seconds=${SECONDS_PER_TARGET:-60}
targets=("${@:-pickle npy convert}")
read -r -a targets <<< "${targets[*]}"

mkdir -p "$fuzz/corpus/pickle" "$fuzz/corpus/npy" "$fuzz/corpus/convert"
for f in "$data"/*.pt "$data"/*.pth; do
    python3 - "$f" "$fuzz/corpus/pickle/$(basename "$f").pkl" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
name = next(n for n in z.namelist() if n.endswith('data.pkl'))
open(sys.argv[2], 'wb').write(z.read(name))
PY
done
for f in "$data"/*.npy; do tail -c +7 "$f" > "$fuzz/corpus/npy/$(basename "$f")"; done
cp "$data"/*.pt "$data"/*.pth "$data"/*.npy "$data"/*.safetensors "$fuzz/corpus/convert/"

cd "$fuzz"
for t in "${targets[@]}"; do
    echo "== fuzzing $t for ${seconds}s"
    cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=1048576
done
