#!/usr/bin/env bash
# The GPU suite, built here (no GPU, no driver) and run on a GPU machine that has no Rust:
#
#   scripts/gpu-suite.sh build [DIR]   builds in release with --features cuda the GPU test binary
#                                      (rtdetr/tests/gpu.rs) and the `rtdetr` CLI, strips and gzips them and copies
#                                      them, the fixtures and this script into DIR (default target/gpu-suite, ~35 MB).
#   DIR/gpu-suite.sh run               on the GPU machine: runs the GPU tests (f32 parity fixtures, kernels vs CPU,
#                                      bf16 inference) and `rtdetr bench --device cuda`, writing DIR/out/.
#
# Linking: candle's cudarc links libcuda, libnvrtc, libcurand, libcublas and libcublasLt dynamically and
# candle-kernels links libcudart. The nvcc wheels ship only libcudart, so `build` writes link-time stubs (every
# function cudarc declares, with the real libraries' sonames) into $CUDA_HOME/lib/stubs, where cudarc's build
# script looks; at run time the loader takes the real libraries: the driver's libcuda.so.1 and the CUDA 13 wheels'
# libraries, which `run` puts on LD_LIBRARY_PATH.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

stubs() {
  local dir="$CUDA_HOME/lib/stubs" sys
  sys=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.10/src | head -1)
  mkdir -p "$dir"
  # library:soname:cudarc module
  for spec in cuda:libcuda.so.1:driver nvrtc:libnvrtc.so.13:nvrtc curand:libcurand.so.10:curand \
              cublas:libcublas.so.13:cublas cublasLt:libcublasLt.so.13:cublaslt; do
    IFS=: read -r lib soname module <<<"$spec"
    grep -oE 'pub unsafe fn [A-Za-z_0-9]+' "$sys/$module/sys/mod.rs" | awk '{print "void " $4 "(void) {}"}' \
      | sort -u > "$dir/$lib.c"
    cc -shared -fPIC -o "$dir/lib$lib.so" "$dir/$lib.c" -Wl,-soname,"$soname"
  done
  ln -sf ../libcudart.so.13 "$dir/libcudart.so"
}

build() {
  local out="${1:-target/gpu-suite}" tests
  cd "$here/.."
  source scripts/cuda-env.sh
  stubs
  tests=$(cargo test --release --features cuda -p rtdetr --test gpu --no-run --message-format=json \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu":
        print(m["executable"])')
  cargo build --release --features cuda -p rtdetr-cli
  rm -rf "$out" && mkdir -p "$out/fixtures"
  cp "$tests" "$out/gpu-tests"
  cp target/release/rtdetr "$out/rtdetr"
  # Stripped, each is ~57 MB, 33 MB of it candle-kernels' MoE/GGUF cubins; gzip brings each to ~14 MB.
  strip "$out/gpu-tests" "$out/rtdetr"
  gzip -f "$out/gpu-tests" "$out/rtdetr"
  cp -r fixtures/data/. "$out/fixtures/"
  cp scripts/gpu-suite.sh "$out/"
  du -sh "$out" "$out"/*
}

run() {
  cd "$here"
  mkdir -p out
  local exe
  for exe in gpu-tests rtdetr; do
    [ -x "$exe" ] || { gunzip -c "$exe.gz" > "$exe" && chmod +x "$exe"; }
  done
  local libs="" site d
  for site in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
    for d in "$site"/nvidia/*/lib "$site"/nvidia/*/*/lib; do
      [ -d "$d" ] && libs="$libs:$d"
    done
  done
  export LD_LIBRARY_PATH="${libs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if ldd ./gpu-tests ./rtdetr | grep "not found"; then
    echo "gpu-suite: CUDA libraries missing (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)" >&2
    exit 1
  fi
  nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv | tee out/gpu.txt || true
  local status=0
  RTDETR_FIXTURES="$here/fixtures" ./gpu-tests --test-threads=1 --nocapture 2>&1 | tee out/tests.txt \
    || status=$?
  ./rtdetr bench --device cuda --variant s --imgsz 640 --iters 20 --json out/bench-s-b1.json \
    2>&1 | tee out/bench.txt
  ./rtdetr bench --device cuda --variant s --imgsz 640 --batch 8 --iters 10 --json out/bench-s-b8.json \
    2>&1 | tee -a out/bench.txt
  return "$status"
}

case "${1:-}" in
  build) shift; build "$@" ;;
  run) run ;;
  *) echo "usage: $0 build [DIR] | run" >&2; exit 2 ;;
esac
