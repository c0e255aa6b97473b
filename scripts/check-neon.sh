#!/usr/bin/env bash
# Checks that the aarch64 build vectorizes the crate's element-wise hot loops with NEON and
# carries matrixmultiply's NEON GEMM kernel, and that the binary picks that kernel at run time.
#
# usage: scripts/check-neon.sh [--no-lto] [--out FILE] [--list FUNCTION]
#
#   --no-lto    build without LTO and with 16 codegen units (in target/neon-check-nolto, so
#               the normal build is untouched), to compare with the shipped code generation
#   --out FILE  where the report goes (default docs/neon-check.txt; "-" for stdout only)
#   --list FUNCTION  also print the instructions attributed to FUNCTION, a label of the table's
#               first column (e.g. "Adam::step"), to stderr
#
# What it does:
#  1. `cargo build --profile profiling --target aarch64-unknown-linux-gnu`: the release profile
#     (LTO, one codegen unit, -C target-cpu=cortex-a53 from .cargo/config.toml) with debug info
#     and symbols kept, so the machine code is the release binary's.
#  2. Disassembles it with aarch64-linux-gnu-objdump -d -l --inlines. With LTO nearly every hot
#     function is inlined into its callers (Adam::step and the layers into Trainer::step,
#     Mlp::forward, ...), so there is no symbol to look for. Instead each instruction is
#     attributed through the DWARF inline chain objdump prints above it ("inlined by ...
#     (function)") to the innermost function of interest it was inlined from, wherever the
#     copy lives. This measures the shipped code itself, inlined copies included.
#  3. Counts, per function, NEON instructions on .4s lanes (fmla, fmul, fadd/fsub,
#     fmax/fmin, compares and bit selects, fsqrt, fdiv, ucvtf/scvtf, u8->u32 widening) and the
#     scalar f32 instructions left (s registers), and prints a table.
#  4. Shows that matrixmultiply's NEON micro-kernel (sgemm_kernel::kernel_target_neon) is in the
#     binary and how many .4s fmla it has, and runs `mnist-mlp info` under qemu-aarch64 (default
#     CPU and -cpu cortex-a53), which must report "gemm kernel: NEON".
#
# Exit status: 0 when Adam::step, relu_forward and relu_backward all have .4s vector arithmetic,
# the NEON GEMM kernel is present and `info` reports it; 1 otherwise.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=aarch64-unknown-linux-gnu
out="$repo/docs/neon-check.txt"
lto=1
list=""

while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-lto) lto=0; shift ;;
        --out) out=${2:?--out needs a file}; shift 2 ;;
        --list) list=${2:?--list needs a function label}; shift 2 ;;
        -h | --help) sed -n '5,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "check-neon: unknown argument: $1" >&2; exit 2 ;;
    esac
done

for tool in aarch64-linux-gnu-objdump c++filt qemu-aarch64 cargo; do
    command -v "$tool" >/dev/null || { echo "check-neon: $tool not found (scripts/install-host-deps.sh)" >&2; exit 1; }
done

# --- build ------------------------------------------------------------------------------------
cd "$repo"
if [[ $lto == 1 ]]; then
    build_desc="cargo build --profile profiling --target $target (release codegen: LTO, 1 codegen unit; symbols and debug info kept)"
    cargo build --quiet --profile profiling --target "$target"
    bin="$repo/target/$target/profiling/mnist-mlp"
    # The shipped (stripped) release binary, to check that it has the same vector code.
    cargo build --quiet --release --target "$target"
    release_bin="$repo/target/$target/release/mnist-mlp"
else
    build_desc="cargo build --profile profiling --target $target with CARGO_PROFILE_PROFILING_LTO=false CARGO_PROFILE_PROFILING_CODEGEN_UNITS=16"
    CARGO_PROFILE_PROFILING_LTO=false CARGO_PROFILE_PROFILING_CODEGEN_UNITS=16 \
        cargo build --quiet --profile profiling --target "$target" --target-dir "$repo/target/neon-check-nolto"
    bin="$repo/target/neon-check-nolto/$target/profiling/mnist-mlp"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- disassemble and attribute ------------------------------------------------------------------
# -l --inlines: before an instruction whose source location changed, objdump prints the
# innermost function's name (only when it changes), its file:line, and one "inlined by
# FILE:LINE (CALLER)" line per level of inlining. c++filt demangles the callers' names.
aarch64-linux-gnu-objdump -d -l --inlines --no-show-raw-insn -C "$bin" | c++filt >"$work/dis.txt"

# The functions of interest, in table order: "label|demangled path". A label's instructions
# are those whose inline chain contains the path (innermost match wins, so gather's row holds
# only what is not to_unit_f32's).
targets=(
    "linear_forward (bias add)|mnist_mlp::layers::linear_forward"
    "linear_backward (bias grad)|mnist_mlp::layers::linear_backward"
    "relu_forward|mnist_mlp::layers::relu_forward"
    "relu_backward|mnist_mlp::layers::relu_backward"
    "softmax_cross_entropy|mnist_mlp::loss::softmax_cross_entropy"
    "Adam::step|mnist_mlp::optim::Adam::step"
    "to_unit_f32 (u8 -> f32)|mnist_mlp::data::to_unit_f32"
    "Dataset::gather (rest)|mnist_mlp::data::Dataset::gather"
    "sgemm NEON kernel|matrixmultiply::sgemm_kernel::kernel_target_neon"
    "sgemm fallback kernel|matrixmultiply::sgemm_kernel::kernel_fallback_impl"
)
printf '%s\n' "${targets[@]}" >"$work/targets.txt"

awk -F'\t' -v targets="$work/targets.txt" -v list="$list" '
function norm(name) {
    sub(/::h[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]+$/, "", name)  # legacy-mangling hash (mawk has no {n})
    sub(/\(\)$/, "", name)              # C-style "name()" headers
    return name
}
function chain_target(   i, t) {
    # Innermost function of interest in the current chain ("" if none).
    for (i = 0; i < nchain; i++)
        if (chain[i] in want) return want[chain[i]]
    return ""
}
BEGIN {
    while ((getline line < targets) > 0) {
        split(line, p, "|")
        want[p[2]] = p[1]
        order[++ntargets] = p[1]
    }
    nchain = 0; in_header = 0; current = ""; sym = ""
}
# An instruction: "   ad378:<TAB>fmul<TAB>v5.4s, v17.4s, v1.s[0]"
/^ +[0-9a-f]+:\t/ {
    if (in_header) {
        chain[0] = current; nchain = 1 + ninl
        for (i = 1; i <= ninl; i++) chain[i] = inl[i]
        in_header = 0; tgt = chain_target()
    }
    if (tgt == "") next
    mn = $2; ops = $3
    seen[tgt] = 1
    if (tgt == list) print sym ":" $0 > "/dev/stderr"
    where[tgt, sym] = 1
    if (ops ~ /\.4s/) {
        if (mn ~ /^fml[as]$/) c[tgt, "fmla"]++
        else if (mn == "fmul") c[tgt, "fmul"]++
        else if (mn ~ /^f(add|sub|addp)$/) c[tgt, "fadd"]++
        else if (mn ~ /^f(max|min)(nm)?p?$/) c[tgt, "fmax"]++
        else if (mn ~ /^fcm(eq|ge|gt|le|lt)$/) c[tgt, "sel"]++
        else if (mn == "fsqrt") c[tgt, "fsqrt"]++
        else if (mn == "fdiv") c[tgt, "fdiv"]++
        else if (mn ~ /^[us]cvtf$/) c[tgt, "cvt"]++
        else if (mn ~ /^(ushll2?|uxtl2?)$/) c[tgt, "widen"]++
        else c[tgt, "other"]++
        c[tgt, "all4s"]++
    } else if (ops ~ /\.16b/ && mn ~ /^(bsl|bif|bit|and|bic)$/) {
        c[tgt, "sel"]++; c[tgt, "all4s"]++
    } else if (ops ~ /\.8h/ && mn ~ /^(ushll2?|uxtl2?)$/) {
        c[tgt, "widen"]++; c[tgt, "all4s"]++
    } else if (mn ~ /^f/ && ops ~ /^s[0-9]+,/) {
        c[tgt, "scalar"]++
    }
    next
}
# A symbol: "00000000000ad000 <mnist_mlp::train::Trainer::step>:"
/^[0-9a-f]+ <.*>:$/ {
    sym = $0; sub(/^[0-9a-f]+ </, "", sym); sub(/>:$/, "", sym)
    current = norm(sym); ninl = 0; in_header = 1
    next
}
/^inlined by / {
    if (!in_header) { in_header = 1; ninl = 0 }
    name = $0; sub(/^inlined by [^(]*\(/, "", name); sub(/\)$/, "", name)
    inl[++ninl] = norm(name)
    next
}
/^$/ || /^Disassembly of section/ || /file format/ { next }
# The innermost function name (printed only when it changes) ends with ":" ...
/:$/ {
    if (!in_header) { in_header = 1; ninl = 0 }
    current = norm(substr($0, 1, length($0) - 1))
    next
}
# ... and anything else is a FILE:LINE location.
{ if (!in_header) { in_header = 1; ninl = 0 } }
END {
    cols = "fmla fmul fadd fmax sel fsqrt fdiv cvt widen all4s scalar"
    ncol = split(cols, col, " ")
    for (k = 1; k <= ntargets; k++) {
        t = order[k]
        line = t
        for (j = 1; j <= ncol; j++) line = line "\t" (c[t, col[j]] + 0)
        places = ""
        for (key in where) {
            split(key, kp, SUBSEP)
            if (kp[1] == t) {
                s = kp[2]; sub(/^mnist_mlp::/, "", s)
                places = places (places == "" ? "" : ", ") s
            }
        }
        print line "\t" (t in seen ? places : "(not in binary)")
    }
}' "$work/dis.txt" >"$work/counts.tsv"

# --- same vector code as the release binary? -------------------------------------------------------
# Histogram of the .4s instructions by mnemonic over the whole binary: equal histograms mean the
# debug info of the profiling build changed none of the vector code.
histogram() {
    aarch64-linux-gnu-objdump -d --no-show-raw-insn "$1" |
        awk -F'\t' '$3 ~ /\.4s/ { c[$2]++ } END { for (k in c) print k, c[k] }' | sort
}
same_as_release="not compared (--no-lto build)"
if [[ -n ${release_bin:-} ]]; then
    histogram "$bin" >"$work/hist-profiling.txt"
    histogram "$release_bin" >"$work/hist-release.txt"
    total=$(awk '{ n += $2 } END { print n + 0 }' "$work/hist-release.txt")
    if cmp -s "$work/hist-profiling.txt" "$work/hist-release.txt"; then
        same_as_release="yes: same count of .4s instructions per mnemonic ($total in all) in target/$target/release/mnist-mlp"
    else
        same_as_release="NO: the .4s instruction mix differs from target/$target/release/mnist-mlp (diff below)"
    fi
fi

# --- run time: the GEMM kernel matrixmultiply selects --------------------------------------------
qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
info_default=$("${qemu[@]}" "$bin" info)
info_a53=$("${qemu[@]}" -cpu cortex-a53 "$bin" info)

# --- report ---------------------------------------------------------------------------------------
report() {
    echo "NEON check of the aarch64 build ($(date -u +%Y-%m-%d), $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo "no git")$(git -C "$repo" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ", with uncommitted changes"))"
    echo "build: $build_desc"
    echo "rustc: $(rustc --version)"
    echo "binary: ${bin#"$repo"/}"
    echo "same vector code as the stripped release build: $same_as_release"
    if [[ $same_as_release == NO* ]]; then
        diff "$work/hist-release.txt" "$work/hist-profiling.txt" | sed 's/^/  /' || true
    fi
    echo
    echo "Instructions per function, attributed through the DWARF inline chains (objdump -l --inlines),"
    echo "all inlined copies counted. Columns are NEON instructions on .4s (4 x f32) lanes except"
    echo "'sel' (fcm* compares plus and/bic/bsl/bif/bit on .16b masks), 'widen' (ushll/uxtl u8->u16->u32)"
    echo "and 'scalar' (f32 instructions on s registers, i.e. not vectorized). 'vec' = all .4s/.16b"
    echo "vector instructions of the function (loads, moves and shuffles included). Static counts:"
    echo "a loop is usually emitted as a vector body plus a scalar remainder loop (and, where the"
    echo "compiler cannot prove that buffers do not overlap, a scalar fallback behind a run-time"
    echo "overlap check), so 'scalar' > 0 next to vector columns is the normal shape."
    echo
    printf '%-28s %5s %5s %9s %9s %4s %6s %5s %9s %6s %5s %7s  %s\n' \
        function fmla fmul fadd/fsub fmax/fmin sel fsqrt fdiv ucvtf/scvtf widen vec scalar "inlined into"
    while IFS=$'\t' read -r name fmla fmul fadd fmax sel fsqrt fdiv cvt widen all scalar places; do
        printf '%-28s %5s %5s %9s %9s %4s %6s %5s %9s %6s %5s %7s  %s\n' \
            "$name" "$fmla" "$fmul" "$fadd" "$fmax" "$sel" "$fsqrt" "$fdiv" "$cvt" "$widen" "$all" "$scalar" "$places"
    done <"$work/counts.tsv"
    echo
    echo "matrixmultiply's NEON micro-kernel:"
    local syms
    syms=$(aarch64-linux-gnu-nm -C "$bin" | grep 'sgemm_kernel' | cut -d' ' -f3- | sed 's/::h[0-9a-f]\{16\}$//' || true)
    if [[ -n $syms ]]; then
        echo "  ELF symbols containing 'sgemm_kernel':"
        while IFS= read -r line; do echo "    $line"; done <<<"$syms"
    else
        echo "  ELF symbols containing 'sgemm_kernel': none (with LTO the kernel is inlined into its callers)"
    fi
    echo "  objdump \"inlined by\" records naming sgemm_kernel functions (code inlined from or into them):"
    grep -o '(matrixmultiply::sgemm_kernel::[^)]*)' "$work/dis.txt" |
        sed 's/^(//; s/)$//; s/::h[0-9a-f]\{16\}$//' | sort | uniq -c | sort -rn |
        while read -r count name; do printf '    %-60s %5s records\n' "$name" "$count"; done
    echo "  'sgemm fallback kernel' is absent: NEON is part of the aarch64 target, so matrixmultiply's"
    echo "  run-time check is folded to true at compile time and the portable kernel is dropped."
    echo "  .4s fmla in kernel_target_neon's code: $(awk -F'\t' '$1 == "sgemm NEON kernel" { print $2 }' "$work/counts.tsv")"
    echo
    echo "qemu-aarch64 (default CPU): mnist-mlp info"
    while IFS= read -r line; do echo "  $line"; done <<<"$info_default"
    echo "qemu-aarch64 -cpu cortex-a53: mnist-mlp info | grep -E 'cpu|gemm'"
    grep -E '^(cpu|gemm)' <<<"$info_a53" | sed 's/^/  /'
}

if [[ $out == - ]]; then
    report | tee "$work/report.txt"
else
    mkdir -p "$(dirname "$out")"
    report | tee "$out" >/dev/null
    cat "$out"
    cp "$out" "$work/report.txt"
    echo "(written to ${out#"$repo"/})" >&2
fi

# --- verdict --------------------------------------------------------------------------------------
# Vector arithmetic (not just moves) on .4s lanes: the sum of the classified columns.
vec_ops() {
    awk -F'\t' -v n="$1" '$1 == n { print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 + $10 }' "$work/counts.tsv"
}
status=0
for fn in "Adam::step" relu_forward relu_backward; do
    ops=$(vec_ops "$fn")
    if [[ ${ops:-0} -eq 0 ]]; then
        echo "check-neon: FAIL: $fn has no .4s vector arithmetic" >&2
        status=1
    fi
done
if [[ $(vec_ops "sgemm NEON kernel") -eq 0 ]]; then
    echo "check-neon: FAIL: matrixmultiply's NEON kernel is not in the binary" >&2
    status=1
fi
for info in "$info_default" "$info_a53"; do
    if ! grep -q '^gemm kernel: *NEON' <<<"$info"; then
        echo "check-neon: FAIL: mnist-mlp info under qemu does not report the NEON kernel" >&2
        status=1
    fi
done
[[ $status == 0 ]] && echo "check-neon: OK" >&2
exit "$status"
