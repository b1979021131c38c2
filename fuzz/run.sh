#!/usr/bin/env bash
# Runs each fuzz target for a bounded time (default 120 s each), not part of CI:
#   fuzz/run.sh [SECONDS] [TARGET…]
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Crashes land in
# fuzz/artifacts/TARGET/; each one found becomes a regression test next to the parser.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-120}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(png_info prompt checkpoint)
fi
mkdir -p corpus/checkpoint corpus/png_info corpus/prompt
# Seeds: real files the parsers should know.
cp -n ../tests/fixtures/ckpt-zip/*.ckpt corpus/checkpoint/ 2>/dev/null || true
cp -n ../tests/fixtures/*.png corpus/png_info/ 2>/dev/null || true
printf 'a (cat:1.2) [dog] BREAK \\(x\\)' > corpus/prompt/seed 2>/dev/null || true
for t in "${targets[@]}"; do
  echo "== $t for ${seconds}s"
  cargo +nightly fuzz run "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=1048576
done
