#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation (what `cargo fuzz build`
# passes, without a sanitizer: the code under test is safe Rust) and runs one of them.
#   bash fuzz/run.sh build
#   bash fuzz/run.sh render 1800     # target, seconds
set -euo pipefail
cd "$(dirname "$0")"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
if [ "${1:-}" = build ]; then
  # --target keeps the flags off build scripts and proc macros, as cargo-fuzz does.
  exec cargo +nightly build --release --bins --target x86_64-unknown-linux-gnu
fi
target=$1
seconds=${2:-1800}
case $target in
  render) max_len=4096 ;;
  load) max_len=65536 ;;
  *) echo "unknown target $target (render, load)" >&2; exit 64 ;;
esac
mkdir -p "artifacts/$target" "corpus-run/$target"
exec ./target/x86_64-unknown-linux-gnu/release/"$target" "corpus-run/$target" "corpus/$target" \
  -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -max_len="$max_len" \
  -artifact_prefix="artifacts/$target/" -print_final_stats=1
