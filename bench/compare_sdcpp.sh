#!/usr/bin/env bash
# Pentimento and stable-diffusion.cpp side by side: the same model file, prompt, size, steps and
# threads, one after the other on this machine; prints total time, model load, sampling, decode
# and peak resident memory for each.
#
#   bench/compare_sdcpp.sh SDCPP_GIT GGML_GIT MODEL [SIZE] [STEPS]
#
# SDCPP_GIT, GGML_GIT: git directories of leejet/stable-diffusion.cpp and ggml-org/ggml (any
# clone holding the pinned commits below); MODEL: an SD 1.x/2.x single file (bench/make_sd_file.py
# writes a full-size random one). SIZE defaults to 512, STEPS to 2. Needs cmake, a C++ compiler and
# GNU time; builds stable-diffusion.cpp once into $SDCPP_BUILD (default /tmp/sdcpp-build) and
# Pentimento with `cargo build --release`.
set -euo pipefail

# stable-diffusion.cpp as measured in bench/RESULTS.md; ggml at the commit its submodule names.
SDCPP_COMMIT=97d2990807fe6d558e395f8764198d7c7e7b411c

sd_git=${1:?usage: compare_sdcpp.sh SDCPP_GIT GGML_GIT MODEL [SIZE] [STEPS]}
ggml_git=${2:?usage: compare_sdcpp.sh SDCPP_GIT GGML_GIT MODEL [SIZE] [STEPS]}
model=${3:?usage: compare_sdcpp.sh SDCPP_GIT GGML_GIT MODEL [SIZE] [STEPS]}
size=${4:-512}
steps=${5:-2}
threads=$(nproc)
build=${SDCPP_BUILD:-/tmp/sdcpp-build}
here=$(cd "$(dirname "$0")/.." && pwd)
prompt="a lighthouse on a cliff at dusk"
out=$(mktemp -d)

sd_cli=$build/src/build/bin/sd-cli
if [ ! -x "$sd_cli" ]; then
    rm -rf "$build" && mkdir -p "$build"
    git clone -q --no-checkout "$sd_git" "$build/src"
    cd "$build/src"
    # Everything but the pictures and the tokenizer tables of other model families (SD 1.x/2.x
    # use CLIP's; a partial snapshot may lack the others, left empty below).
    git checkout -q "$SDCPP_COMMIT" -- $(git ls-tree -r --name-only "$SDCPP_COMMIT" \
        | grep -v -E "^assets/|src/tokenizers/vocab/(gemma|gpt_oss|mistral|qwen|t5|umt5)")
    ggml_commit=$(git ls-tree "$SDCPP_COMMIT" ggml | awk '{print $3}')
    rm -rf ggml && git clone -q "$ggml_git" ggml && git -C ggml checkout -q "$ggml_commit"
    # Tokenizer tables for other model families, absent from a partial snapshot: empty ones.
    (
        cd src/tokenizers/vocab
        for table in gemma2_merges gemma2_vocab gemma_merges gemma_vocab gpt_oss_merges \
            gpt_oss_vocab mistral_merges mistral_vocab qwen_merges t5 umt5; do
            [ -s "$table.hpp" ] || : > "$table.hpp"
        done
        grep -oE "cast<const char\*>\(([a-z0-9_]+)\)" vocab.cpp | sed -E 's/.*\(([a-z0-9_]+)\)/\1/' \
            | sort -u | grep -v "^clip_" | while read -r name; do
                grep -qs "$name\[\]" ./*.hpp || echo "static const unsigned char $name[] = {0};" >> t5.hpp
            done
    )
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON > "$out/cmake.log"
    cmake --build build -j"$threads" --target sd-cli > "$out/build.log"
fi
(cd "$here" && cargo build --release --quiet)
pentimento=$here/target/release/pentimento

# GNU time's "Maximum resident set size" (KiB) and the wall time, from its -v report.
peak_gib() { awk -F': ' '/Maximum resident set size/ {printf "%.2f", $2 / 1048576}' "$1"; }
wall_s() { awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.1f", s}' "$1"; }

echo "stable-diffusion.cpp ${SDCPP_COMMIT:0:8}: ${size}² txt2img, $steps steps, $threads threads…" >&2
/usr/bin/time -v "$sd_cli" -m "$model" -p "$prompt" --steps "$steps" -W "$size" -H "$size" \
    -t "$threads" -s 1 -o "$out/sdcpp.png" -v > "$out/sdcpp.log" 2> "$out/sdcpp.time"
echo "pentimento: the same…" >&2
/usr/bin/time -v "$pentimento" generate --model "$model" --prompt "$prompt" --steps "$steps" \
    --width "$size" --height "$size" --seed 1 --out "$out/pentimento.png" \
    > "$out/pentimento.log" 2> "$out/pentimento.time"

# sd.cpp's own phase lines ("… completed, taking 1.23s"); ours from `generate`'s report.
sd_phase() { grep -oE "$1 completed, taking [0-9.]+s" "$out/sdcpp.log" | grep -oE "[0-9.]+s$" | tr -d s | head -1; }
our_load=$(grep -oE "in [0-9.]+s$" "$out/pentimento.time" | head -1 | grep -oE "[0-9.]+")

printf '\n| %s | stable-diffusion.cpp | Pentimento |\n| --- | --- | --- |\n' "${size}², $steps steps"
printf '| total (process) | %s s | %s s |\n' "$(wall_s "$out/sdcpp.time")" "$(wall_s "$out/pentimento.time")"
# It loads in more than one pass (one line each): their sum.
sd_load=$(grep -oE "loading tensors completed, taking [0-9.]+s" "$out/sdcpp.log" \
    | grep -oE "[0-9.]+s$" | tr -d s | awk '{s += $1} END {printf "%.2f", s}')
printf '| model load | %s s | %s s |\n' "$sd_load" "${our_load:-?}"
printf '| sampling | %s s | (in total) |\n' "$(sd_phase sampling)"
printf '| VAE decode | %s s | (in total) |\n' "$(sd_phase decode_first_stage)"
printf '| peak resident memory | %s GiB | %s GiB |\n' "$(peak_gib "$out/sdcpp.time")" "$(peak_gib "$out/pentimento.time")"
echo "logs and pictures: $out" >&2
