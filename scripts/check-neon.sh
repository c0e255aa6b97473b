#!/usr/bin/env bash
# Checks that the aarch64 build runs its matrix products on the crate's own NEON GEMM
# micro-kernel (gemm::kernel::neon::tile_8x8, by-lane .4s fmla) and vectorizes the element-wise
# hot loops with NEON, and that the binary picks that kernel at run time (matrixmultiply is
# only the fallback, MNIST_MLP_GEMM=fallback, and the test oracle).
#
# usage: scripts/check-neon.sh [--no-lto] [--out FILE] [--list FUNCTION]
#
#   --no-lto    build without LTO and with 16 codegen units (in <target dir>/neon-check-nolto,
#               so the normal build is untouched), to compare with the shipped code generation
#   --out FILE  where the report goes (default docs/neon-check.txt; "-" for stdout only)
#   --list FUNCTION  also print the instructions attributed to FUNCTION, a label of the table's
#               first column (e.g. "Adam::step"), to stderr
#
# Builds go to cargo's target directory (CARGO_TARGET_DIR or build.target-dir are honoured;
# `cargo metadata` names it).
#
# What it does:
#  1. `cargo build --profile profiling --target aarch64-unknown-linux-gnu`: the release profile
#     (LTO, one codegen unit, -C target-cpu=cortex-a53 from .cargo/config.toml) with debug info
#     and symbols kept, so the machine code is the release binary's.
#  2. Disassembles it with aarch64-linux-gnu-objdump -d -l --inlines. With LTO nearly every hot
#     function is inlined into its callers (the layers into Trainer::step, Mlp::forward, ...),
#     so there is often no symbol to look for. Instead each instruction is attributed through
#     the DWARF inline chain objdump prints above it ("inlined by ... (function)") to the
#     innermost function of interest it was inlined from, wherever the copy lives. A function
#     of interest includes its closures (Adam::step's update loop runs in
#     `Adam::step::{{closure}}` on the thread pool, via optim::update/update_loop). This
#     measures the shipped code itself, inlined copies included.
#  3. Counts, per function, NEON instructions on .4s lanes (fmla, by-lane fmla such as
#     `fmla v1.4s, v2.4s, v3.s[0]` counted again in their own column, fmul, fadd/fsub,
#     fmax/fmin, compares and bit selects, fsqrt, fdiv, ucvtf/scvtf, u8->u32 widening), the
#     scalar f32 instructions left (s registers) and the loads/stores on the stack, and prints
#     a table.
#  4. Shows the crate's NEON micro-kernel (gemm::kernel::neon::tile_8x8, called through a
#     function pointer, so it keeps its own symbol): its .4s fmla, by-lane fmla and stack
#     accesses (spilled accumulators would show there). Reports matrixmultiply's NEON kernel
#     (sgemm_kernel::kernel_target_neon) as the fallback present in the binary.
#  5. Runs `mnist-mlp info` under qemu-aarch64 (default CPU and -cpu cortex-a53), which must
#     report "gemm kernel: neon ..." (case-insensitive), and with MNIST_MLP_GEMM=fallback, which
#     must report the matrixmultiply fallback.
#
# Exit status: 0 when Adam::step, bias_relu (bias + ReLU) and relu_grad all have .4s vector
# arithmetic, tile_8x8 is in the binary with by-lane .4s fmla, and `info` reports the NEON kernel (and the
# fallback when forced); 1 otherwise. Stack accesses in tile_8x8 are a warning, not a failure.
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
        -h | --help) sed -n '/^# usage:/,/^# What it does:/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "check-neon: unknown argument: $1" >&2; exit 2 ;;
    esac
done

for tool in aarch64-linux-gnu-objdump c++filt qemu-aarch64 cargo; do
    command -v "$tool" >/dev/null || { echo "check-neon: $tool not found (scripts/install-host-deps.sh)" >&2; exit 1; }
done

# --- build ------------------------------------------------------------------------------------
cd "$repo"
# Cargo's target directory (CARGO_TARGET_DIR, build.target-dir or the default target/).
target_dir=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
[[ -n $target_dir ]] || { echo "check-neon: cannot find cargo's target directory" >&2; exit 1; }
# A path as the report shows it: relative to the repository, or under <target dir>.
show() {
    case "$1" in
        "$repo"/*) echo "${1#"$repo"/}" ;;
        "$target_dir"/*) echo "<target dir>/${1#"$target_dir"/}" ;;
        *) echo "$1" ;;
    esac
}
if [[ $lto == 1 ]]; then
    build_desc="cargo build --profile profiling --target $target (release codegen: LTO, 1 codegen unit; symbols and debug info kept)"
    cargo build --quiet --profile profiling --target "$target"
    bin="$target_dir/$target/profiling/mnist-mlp"
    # The shipped (stripped) release binary, to check that it has the same vector code.
    cargo build --quiet --release --target "$target"
    release_bin="$target_dir/$target/release/mnist-mlp"
else
    build_desc="cargo build --profile profiling --target $target with CARGO_PROFILE_PROFILING_LTO=false CARGO_PROFILE_PROFILING_CODEGEN_UNITS=16"
    CARGO_PROFILE_PROFILING_LTO=false CARGO_PROFILE_PROFILING_CODEGEN_UNITS=16 \
        cargo build --quiet --profile profiling --target "$target" --target-dir "$target_dir/neon-check-nolto"
    bin="$target_dir/neon-check-nolto/$target/profiling/mnist-mlp"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- disassemble and attribute ------------------------------------------------------------------
# -l --inlines: before an instruction whose source location changed, objdump prints the
# innermost function's name (only when it changes), its file:line, and one "inlined by
# FILE:LINE (CALLER)" line per level of inlining. c++filt demangles the callers' names.
aarch64-linux-gnu-objdump -d -l --inlines --no-show-raw-insn -C "$bin" | c++filt >"$work/dis.txt"

# The functions of interest, in table order: "label|demangled path[ path...]". A label's
# instructions are those whose inline chain contains one of its paths or a closure of one
# (PATH::{{closure}}, nested closures too); the innermost match wins, so gather's row holds
# only what is not to_unit_f32's.
targets=(
    "linear_forward|mnist_mlp::layers::linear_forward"
    "linear_backward (bias grad)|mnist_mlp::layers::linear_backward"
    "bias_relu (bias + ReLU)|mnist_mlp::gemm::bias_relu"
    "relu_grad (ReLU gradient)|mnist_mlp::gemm::relu_grad"
    "softmax_cross_entropy|mnist_mlp::loss::softmax_cross_entropy"
    "Adam::step|mnist_mlp::optim::Adam::step mnist_mlp::optim::update mnist_mlp::optim::update_loop"
    "to_unit_f32 (u8 -> f32)|mnist_mlp::data::to_unit_f32"
    "Dataset::gather (rest)|mnist_mlp::data::Dataset::gather"
    "GEMM kernel neon::tile_8x8|mnist_mlp::gemm::kernel::neon::tile_8x8"
    "fallback: sgemm NEON kernel|matrixmultiply::sgemm_kernel::kernel_target_neon"
    "fallback: sgemm portable|matrixmultiply::sgemm_kernel::kernel_fallback_impl"
)
printf '%s\n' "${targets[@]}" >"$work/targets.txt"

awk -F'\t' -v targets="$work/targets.txt" -v list="$list" '
function norm(name) {
    sub(/::h[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]+$/, "", name)  # legacy-mangling hash (mawk has no {n})
    sub(/\(\)$/, "", name)              # C-style "name()" headers
    return name
}
function wanted(name) {
    # The label of a function of interest, or of a closure (nested closures too) of one.
    for (;;) {
        if (name in want) return want[name]
        if (!sub(/::\{\{closure\}\}$/, "", name)) return ""
    }
}
function chain_target(   i, t) {
    # Innermost function of interest in the current chain ("" if none).
    for (i = 0; i < nchain; i++)
        if ((t = wanted(chain[i])) != "") return t
    return ""
}
BEGIN {
    while ((getline line < targets) > 0) {
        split(line, p, "|")
        npath = split(p[2], paths, " ")
        for (i = 1; i <= npath; i++) want[paths[i]] = p[1]
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
    if (!((tgt, sym) in where)) {       # ELF symbols holding the code, in address order
        where[tgt, sym] = 1
        s = sym; sub(/^mnist_mlp::/, "", s)
        places[tgt] = places[tgt] (places[tgt] == "" ? "" : ", ") s
    }
    # Loads and stores on the stack: spills, or saves of callee-saved registers.
    if (ops ~ /\[sp[],]/ && mn ~ /^(ld|st)/) c[tgt, "stack"]++
    if (ops ~ /\.4s/) {
        # fmla vD.4s, vN.4s, vM.4s or, by lane (vfmaq_laneq_f32), fmla vD.4s, vN.4s, vM.s[i]:
        # both are .4s fmla; the by-lane form is counted again in "lane".
        if (mn ~ /^fml[as]$/) { c[tgt, "fmla"]++; if (ops ~ /v[0-9]+\.s\[[0-3]\]/) c[tgt, "lane"]++ }
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
    cols = "fmla lane fmul fadd fmax sel fsqrt fdiv cvt widen all4s scalar stack"
    ncol = split(cols, col, " ")
    for (k = 1; k <= ntargets; k++) {
        t = order[k]
        line = t
        for (j = 1; j <= ncol; j++) line = line "\t" (c[t, col[j]] + 0)
        print line "\t" (t in seen ? places[t] : "(not in binary)")
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
        same_as_release="yes: same count of .4s instructions per mnemonic ($total in all) in $(show "$release_bin")"
    else
        same_as_release="NO: the .4s instruction mix differs from $(show "$release_bin") (diff below)"
    fi
fi

# --- the crate's NEON kernel: its inner loop --------------------------------------------------------
# tile_8x8 is called through a function pointer (Kernel::run), so it keeps its own symbol. Its k
# loop is the backward branch whose span holds the most fmla; summarized by mnemonic.
kernel_sym=mnist_mlp::gemm::kernel::neon::tile_8x8
# "ADDRESS SIZE" (hex) of its symbol, nothing if absent.
kernel_symbol() {
    aarch64-linux-gnu-nm -C -S "$bin" |
        awk -v s="$kernel_sym" '$4 == s || index($4, s "::h") == 1 { print $1, $2; exit }'
}
kernel_loop() {
    local addr size
    read -r addr size < <(kernel_symbol) || true
    [[ -n ${addr:-} ]] || return 0
    aarch64-linux-gnu-objdump -d --no-show-raw-insn \
        --start-address=$((16#$addr)) --stop-address=$((16#$addr + 16#$size)) "$bin" |
        awk -F'\t' '
        function pad(h) { while (length(h) < 16) h = "0" h; return h }
        /^ +[0-9a-f]+:\t/ {
            a = $1; gsub(/[ :]/, "", a)
            at[n] = pad(a); mn[n] = $2; ops[n] = $3; n++
        }
        END {
            best = -1
            for (i = 0; i < n; i++) {
                if (mn[i] !~ /^(b(\..*)?|cbn?z|tbn?z)$/) continue
                t = ops[i]; sub(/ <.*/, "", t); sub(/.*, */, "", t); t = pad(t)
                if (t >= at[i]) continue
                k = 0
                for (j = 0; j <= i; j++) if (at[j] >= t && mn[j] == "fmla") k++
                if (k > best) { best = k; lo = t; hi = i }
            }
            if (best < 0) { print "no loop found"; exit }
            len = 0
            for (j = 0; j <= hi; j++) {
                if (at[j] < lo) continue
                len++
                key = mn[j]
                if (mn[j] ~ /^(ld|st)/) {
                    r = ops[j]; sub(/[0-9].*/, "", r); key = key " " r
                    if (ops[j] ~ /\[sp[],]/) key = key " [sp] (stack)"
                } else if (mn[j] == "fmla" && ops[j] ~ /v[0-9]+\.s\[[0-3]\]/) key = "fmla .4s by lane"
                else if (mn[j] == "fmla") key = "fmla .4s"
                if (!(key in cnt)) kinds[nkinds++] = key     # in order of appearance
                cnt[key]++
            }
            sub(/^0+/, "", lo); a = at[hi]; sub(/^0+/, "", a)
            out = ""
            for (j = 0; j < nkinds; j++) out = out (out == "" ? "" : ", ") cnt[kinds[j]] " " kinds[j]
            print lo "-" a ", " len " instructions: " out
        }'
}
kernel_loop_desc=$(kernel_loop)

# --- run time: the GEMM kernel the binary selects -------------------------------------------------
qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
info_default=$(env -u MNIST_MLP_GEMM "${qemu[@]}" "$bin" info)
info_a53=$(env -u MNIST_MLP_GEMM "${qemu[@]}" -cpu cortex-a53 "$bin" info)
info_fallback=$(MNIST_MLP_GEMM=fallback "${qemu[@]}" -cpu cortex-a53 "$bin" info)

# A column of counts.tsv by row label and column name.
cols=(name fmla lane fmul fadd fmax sel fsqrt fdiv cvt widen all scalar stack places)
count() {
    local i
    for i in "${!cols[@]}"; do [[ ${cols[i]} == "$2" ]] && break; done
    awk -F'\t' -v n="$1" -v f=$((i + 1)) '$1 == n { print $f + 0 }' "$work/counts.tsv"
}
kernel_label="GEMM kernel neon::tile_8x8"
fallback_label="fallback: sgemm NEON kernel"

# --- report ---------------------------------------------------------------------------------------
report() {
    # No date or commit: the report describes the code it sits beside (git records when).
    echo "NEON check of the aarch64 build"
    echo "build: $build_desc"
    echo "rustc: $(rustc --version)"
    echo "binary: $(show "$bin")"
    echo "same vector code as the stripped release build: $same_as_release"
    if [[ $same_as_release == NO* ]]; then
        diff "$work/hist-release.txt" "$work/hist-profiling.txt" | sed 's/^/  /' || true
    fi
    echo
    echo "Instructions per function (closures included), attributed through the DWARF inline chains"
    echo "(objdump -l --inlines), all inlined copies counted. Columns are NEON instructions on .4s"
    echo "(4 x f32) lanes except 'lane' (the fmla among them that multiply by one lane of a vector,"
    echo "fmla vD.4s, vN.4s, vM.s[i]), 'sel' (fcm* compares plus and/bic/bsl/bif/bit on .16b masks),"
    echo "'widen' (ushll/uxtl u8->u16->u32), 'scalar' (f32 instructions on s registers, i.e. not"
    echo "vectorized) and 'stack' (loads/stores addressed from sp: register saves or spills)."
    echo "'vec' = all .4s/.16b vector instructions of the function (loads, moves and shuffles"
    echo "included). Static counts: a loop is usually emitted as a vector body plus a scalar"
    echo "remainder loop (and, where the compiler cannot prove that buffers do not overlap, a scalar"
    echo "fallback behind a run-time overlap check), so 'scalar' > 0 next to vector columns is the"
    echo "normal shape. The last column names the ELF symbols the code is in."
    echo
    local fmt='%-28s %5s %5s %5s %9s %9s %4s %6s %5s %9s %6s %5s %7s %6s  %s\n'
    # shellcheck disable=SC2059
    printf "$fmt" function fmla lane fmul fadd/fsub fmax/fmin sel fsqrt fdiv ucvtf/scvtf widen vec scalar stack "code in"
    while IFS=$'\t' read -r name fmla lane fmul fadd fmax sel fsqrt fdiv cvt widen all scalar stack places; do
        # shellcheck disable=SC2059
        printf "$fmt" "$name" "$fmla" "$lane" "$fmul" "$fadd" "$fmax" "$sel" "$fsqrt" "$fdiv" "$cvt" \
            "$widen" "$all" "$scalar" "$stack" "$places"
    done <"$work/counts.tsv"
    echo
    local kfmla klane kstack
    kfmla=$(count "$kernel_label" fmla); klane=$(count "$kernel_label" lane); kstack=$(count "$kernel_label" stack)
    echo "The crate's NEON GEMM micro-kernel ($kernel_sym, 8x8 tile, 16 accumulators;"
    echo "gemm::kernel::select() returns it on every aarch64 CPU):"
    local kaddr ksize
    read -r kaddr ksize < <(kernel_symbol) || true
    if [[ -n ${kaddr:-} ]]; then
        echo "  ELF symbol: $kernel_sym, $((16#$ksize)) bytes (called through a function pointer: never inlined)"
    else
        echo "  ELF symbol: none"
    fi
    echo "  .4s fmla: $kfmla, by lane: $klane ($((kfmla / 16)) copies of the 16-fmla step of k: the unrolled k loop and its remainder)"
    echo "  stack loads/stores: $kstack$([[ $kstack == 0 ]] && echo " (no spills: accumulators and operands stay in registers)")"
    echo "  k loop (addresses, then instructions by kind): ${kernel_loop_desc:-not found}"
    echo
    echo "matrixmultiply, the fallback (MNIST_MLP_GEMM=fallback, CPUs without a crate kernel, test oracle):"
    if [[ $(count "$fallback_label" fmla) -gt 0 ]]; then
        echo "  fallback present: yes, its NEON kernel (sgemm_kernel::kernel_target_neon) has $(count "$fallback_label" fmla) .4s fmla ($(count "$fallback_label" lane) by lane)"
    else
        echo "  fallback present: NO .4s fmla attributed to sgemm_kernel::kernel_target_neon"
    fi
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
    echo "  'fallback: sgemm portable' is absent: NEON is part of the aarch64 target, so matrixmultiply's"
    echo "  run-time check is folded to true at compile time and its portable kernel is dropped."
    echo
    echo "qemu-aarch64 (default CPU): mnist-mlp info"
    while IFS= read -r line; do echo "  $line"; done <<<"$info_default"
    echo "qemu-aarch64 -cpu cortex-a53: mnist-mlp info | grep -E 'cpu|gemm'"
    grep -E '^(cpu|gemm)' <<<"$info_a53" | sed 's/^/  /'
    echo "MNIST_MLP_GEMM=fallback qemu-aarch64 -cpu cortex-a53: mnist-mlp info | grep gemm"
    grep -E '^gemm' <<<"$info_fallback" | sed 's/^/  /'
}

if [[ $out == - ]]; then
    report | tee "$work/report.txt"
else
    mkdir -p "$(dirname "$out")"
    report | tee "$out" >/dev/null
    cat "$out"
    cp "$out" "$work/report.txt"
    echo "(written to $(show "$out"))" >&2
fi

# --- verdict --------------------------------------------------------------------------------------
# Vector arithmetic (not just moves) on .4s lanes: the sum of the classified columns.
vec_ops() {
    local n=0 f
    for f in fmla fmul fadd fmax sel fsqrt fdiv cvt widen; do n=$((n + $(count "$1" "$f"))); done
    echo "$n"
}
status=0
for fn in "Adam::step" "bias_relu (bias + ReLU)" "relu_grad (ReLU gradient)"; do
    if [[ $(vec_ops "$fn") -eq 0 ]]; then
        echo "check-neon: FAIL: $fn has no .4s vector arithmetic" >&2
        status=1
    fi
done
if [[ $(count "$kernel_label" lane) -eq 0 ]]; then
    echo "check-neon: FAIL: the crate's NEON GEMM kernel ($kernel_sym) is not in the binary or has no by-lane .4s fmla" >&2
    status=1
elif [[ $(count "$kernel_label" stack) -gt 0 ]]; then
    echo "check-neon: warning: $kernel_sym loads or stores on the stack ($(count "$kernel_label" stack) instructions): spills?" >&2
fi
for info in "$info_default" "$info_a53"; do
    if ! grep -qiE '^gemm kernel: *neon' <<<"$info"; then
        echo "check-neon: FAIL: mnist-mlp info under qemu does not report the NEON kernel: $(grep -i '^gemm' <<<"$info")" >&2
        status=1
    fi
done
if ! grep -qiE '^gemm kernel: *matrixmultiply' <<<"$info_fallback"; then
    echo "check-neon: FAIL: with MNIST_MLP_GEMM=fallback, mnist-mlp info does not report matrixmultiply: $(grep -i '^gemm' <<<"$info_fallback")" >&2
    status=1
fi
[[ $status == 0 ]] && echo "check-neon: OK" >&2
exit "$status"
