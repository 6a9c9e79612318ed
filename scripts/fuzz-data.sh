#!/usr/bin/env bash
# Bounded fuzzing of the dataset readers with cargo-fuzz (libFuzzer; needs a nightly toolchain
# and `cargo install cargo-fuzz`): YOLO label files, data.yaml, COCO instances json and the image
# check of the dataset scan. The sibling of scripts/fuzz-convert.sh.
#
#   scripts/fuzz-data.sh                 # 60 s per target: labels, yaml, coco, image
#   SECONDS_PER_TARGET=600 scripts/fuzz-data.sh coco
#
# Corpora start from small valid inputs (fixtures/data/fuzz, fixtures/data/coco). Crashes land in
# rtdetr/fuzz/artifacts/<target>/; turn each into a regression test in rtdetr/tests/robustness.rs
# before fixing it. The stable-Rust stand-in that CI runs is `cargo test -p rtdetr --test robustness`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fuzz="$root/rtdetr/fuzz"
data="$root/fixtures/data"
seconds=${SECONDS_PER_TARGET:-60}
targets=("${@:-labels yaml coco image}")
read -r -a targets <<< "${targets[*]}"

mkdir -p "$fuzz"/corpus/{labels,yaml,coco,image}
printf '\x03%s' $'0 0.5 0.5 0.2 0.2\n1 0.1 0.2 0.3 0.4\n' > "$fuzz/corpus/labels/two"
printf '\x02%s' $'0 0.1 0.1 0.2 0.1 0.3 0.3 0.1 0.3\n' > "$fuzz/corpus/labels/polygon"
printf '%s' $'path: .\ntrain: images/train\nval: val.txt\nnames:\n  0: cat\n  1: dog\n' > "$fuzz/corpus/yaml/map"
printf '%s' $'train: [a, b]\nval: c\nnc: 2\nnames: [x, "y z"]\n' > "$fuzz/corpus/yaml/list"
cp "$data/coco/instances.json" "$fuzz/corpus/coco/"
cp "$data"/fuzz/8x8.* "$fuzz/corpus/image/"

cd "$fuzz"
for t in "${targets[@]}"; do
    echo "== fuzzing $t for ${seconds}s"
    cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=262144 -timeout=10
done
