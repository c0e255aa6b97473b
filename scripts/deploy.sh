#!/usr/bin/env bash
# deploy.sh: build mnist-mlp for the board, copy it (and optionally a data set) over SSH, and
# run it there with its output streamed back.
#
# What it owns: the cross build for the board (static musl by default), copying only what
# changed (compared by SHA-256 on both ends), installing each file atomically (uploaded to a
# staging directory, verified, then renamed, so a running or half-copied binary is never
# clobbered), and returning the remote command's exit code.
#
# What it deliberately does not do: touch SSH trust. It uses plain ssh/scp with the user's
# config, keys and known_hosts; host-key checking stays on unless --insecure is given. Options
# for a particular host (the emulated board's key, port and known_hosts) come in through
# DEPLOY_SSH_OPTS. It installs no host packages (scripts/install-host-deps.sh does).
set -euo pipefail

readonly PROG=${0##*/}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO

# Tunables.
readonly RETRIES=4       # attempts per copy: a loaded board can drop a connection ("Exit before auth")
readonly RETRY_DELAY=3   # seconds between attempts
readonly BIN=mnist-mlp   # the binary's name, locally and on the board

usage() {
  cat <<EOF
Usage: $PROG [OPTIONS] [--] USER@HOST[:PORT] [MNIST-MLP ARGS...]

Builds mnist-mlp for the board, copies it to USER@HOST into the remote directory, and, when
arguments follow the host, runs 'mnist-mlp ARGS...' there (in the remote directory) with its
output streamed back. Exits with the remote command's exit code (255: the SSH connection
failed); without arguments it only deploys. Deployment failures exit 1, usage errors 2.

Options:
  --musl             Build for aarch64-unknown-linux-musl: one static binary that runs on any
                     board image [default]
  --gnu              Build for aarch64-unknown-linux-gnu (needs the board's glibc to be at least
                     as new as the cross sysroot's)
  --no-build         Do not run cargo: deploy the release binary of that target as last built
                     (so several deploys run the very same build while the tree changes)
  --data DIR         Also copy the regular files at the top of DIR (e.g. the four MNIST .gz
                     files) into REMOTE-DIR/data/. Pass '--data data' among the mnist-mlp
                     arguments to use them. Files whose SHA-256 already matches are not sent
                     again; remote files that DIR lacks are left alone.
  --remote-dir DIR   Remote directory, created if missing; relative paths are relative to the
                     remote home [default: ~/mnist-mlp]
  --port N           SSH port (same as USER@HOST:N)
  --insecure         For throw-away hosts only (fresh emulators, lab boards re-flashed daily):
                     skip host-key checking, adding
                     -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
  -h, --help         This help.

Environment:
  DEPLOY_SSH_OPTS    Extra options for both ssh and scp, space-separated (no quoting), e.g.
                     "-o IdentityFile=~/.ssh/board -o Port=2222". For ssh options given twice
                     the first wins, so --port and --insecure take precedence over these.
                     scripts/qemu-board.sh provides them for the emulated board as
                     \$BOARD_SSH_OPTS:
                       scripts/qemu-board.sh start
                       eval "\$(scripts/qemu-board.sh env)"
                       DEPLOY_SSH_OPTS="\$BOARD_SSH_OPTS" $PROG --data data/mnist-10k \\
                         \$BOARD_HOST train --data data --iterations 3
  CARGO, CARGO_TARGET_DIR, ...  as for any cargo build.

Needs on the board: a POSIX shell, sha256sum (busybox has it), and an SFTP server for scp
(OpenSSH's sftp-server; OpenSSH's scp uses SFTP by default).

Examples:
  $PROG root@imx8mp.local          # deploy only
  $PROG root@imx8mp.local info     # deploy, then run 'mnist-mlp info' on the board
  $PROG --data data/mnist root@10.0.0.7:2222 train --data data --threads 4
EOF
}

die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s (see --help)\n' "$PROG" "$*" >&2; exit 2; }
say() { printf '%s: %s\n' "$PROG" "$*" >&2; }

# Single-quotes $1 for the remote POSIX shell.
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# retry [--ssh] WHAT CMD...: runs CMD up to RETRIES times, naming it WHAT in messages. With
# --ssh, retries only ssh's own failures (exit 255): a remote command failing on its own is
# not run twice.
retry() {
  local only_255=0 n=1 rc what
  if [[ $1 == --ssh ]]; then only_255=1; shift; fi
  what=$1
  shift
  while :; do
    rc=0
    "$@" || rc=$?
    if ((rc == 0)) || ((only_255 && rc != 255)) || ((n >= RETRIES)); then return "$rc"; fi
    say "$what failed (exit $rc, attempt $n of $RETRIES); retrying in ${RETRY_DELAY} s"
    sleep "$RETRY_DELAY"
    n=$((n + 1))
  done
}

# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

target=aarch64-unknown-linux-musl
build=1
data_dir=""
# shellcheck disable=SC2088  # a literal ~: it is resolved on the board, below
remote_dir="~/mnist-mlp"
port=""
insecure=0
while (($# > 0)); do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --musl) target=aarch64-unknown-linux-musl; shift ;;
    --gnu) target=aarch64-unknown-linux-gnu; shift ;;
    --no-build) build=0; shift ;;
    --data) (($# >= 2)) || usage_error "--data needs a directory"; data_dir=$2; shift 2 ;;
    --data=*) data_dir=${1#*=}; shift ;;
    --remote-dir) (($# >= 2)) || usage_error "--remote-dir needs a directory"; remote_dir=$2; shift 2 ;;
    --remote-dir=*) remote_dir=${1#*=}; shift ;;
    --port) (($# >= 2)) || usage_error "--port needs a number"; port=$2; shift 2 ;;
    --port=*) port=${1#*=}; shift ;;
    --insecure) insecure=1; shift ;;
    --) shift; break ;;
    -*) usage_error "unknown option $1" ;;
    *) break ;;
  esac
done
(($# > 0)) || usage_error "no USER@HOST given"
dest=$1
shift
args=("$@")   # for mnist-mlp on the board

# USER@HOST[:PORT], also USER@[IPV6]:PORT.
host=$dest host_port=""
if [[ $dest =~ ^(.*@)?\[([^]]+)\](:([0-9]+))?$ ]]; then
  host=${BASH_REMATCH[1]}${BASH_REMATCH[2]} host_port=${BASH_REMATCH[4]}
elif [[ $dest =~ ^([^:]+):([0-9]+)$ ]]; then
  host=${BASH_REMATCH[1]} host_port=${BASH_REMATCH[2]}
elif [[ $dest == *:* && $dest != *:*:* ]]; then
  usage_error "bad port in '$dest'"
fi
[[ -n $host ]] || usage_error "empty host in '$dest'"
if [[ -n $host_port && -n $port && $host_port != "$port" ]]; then
  usage_error "two ports: '$dest' and --port $port"
fi
port=${port:-$host_port}
[[ -z $port || $port =~ ^[0-9]+$ ]] || usage_error "--port must be a number, not '$port'"

# The remote directory as ssh and scp both see it: relative paths start in the remote home.
case $remote_dir in
  \~ | \~/) remote_dir=. ;;
  \~/*) remote_dir=${remote_dir#\~/} ;;
  \~*) usage_error "--remote-dir: '~user' paths are not supported" ;;
esac
[[ $remote_dir == / ]] || remote_dir=${remote_dir%/}
[[ -n $remote_dir ]] || usage_error "empty --remote-dir"

data_files=()
if [[ -n $data_dir ]]; then
  [[ -d $data_dir ]] || die "--data: '$data_dir' is not a directory"
  data_dir=$(cd "$data_dir" && pwd)   # absolute: scp must not read "a:b" as a remote path
  while IFS= read -r f; do data_files+=("$f"); done < <(
    find -L "$data_dir" -mindepth 1 -maxdepth 1 -type f ! -name '.*' | LC_ALL=C sort)
  ((${#data_files[@]} > 0)) || die "--data: no files in '$data_dir'"
fi

# ssh/scp options: ours first (ssh keeps the first value of an option), then DEPLOY_SSH_OPTS.
ssh_opts=()
[[ -z $port ]] || ssh_opts+=(-o "Port=$port")
((insecure == 0)) || ssh_opts+=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
read -ra extra_opts <<<"${DEPLOY_SSH_OPTS:-}"
ssh_opts+=("${extra_opts[@]}")

# Runs a command line (already quoted for the remote shell) on the board.
# shellcheck disable=SC2029  # expanding on this side is the point
remote() { ssh "${ssh_opts[@]}" "$host" "$1"; }

# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------

if ((build)); then
  say "building $BIN for $target ..."
  # The JSON messages name the executable wherever the target directory is; diagnostics
  # still go to the terminal.
  bin=$(cd "$REPO" && "${CARGO:-cargo}" build --release --target "$target" --bin "$BIN" \
          --message-format=json-render-diagnostics |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1) ||
    die "cargo build --release --target $target failed"
  [[ -n $bin && -f $bin ]] || die "cargo built no $BIN executable for $target"
  say "built $bin ($(($(stat -c %s "$bin") / 1024)) KiB)"
else
  target_dir=$(cd "$REPO" && "${CARGO:-cargo}" metadata --format-version 1 --no-deps |
               sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p') ||
    die "cargo metadata failed"
  bin=$target_dir/$target/release/$BIN
  [[ -f $bin ]] || die "--no-build: no $bin (hint: cargo build --release --target $target)"
  say "deploying $bin as built ($(($(stat -c %s "$bin") / 1024)) KiB)"
fi

# ---------------------------------------------------------------------------------------------
# Copy what changed
# ---------------------------------------------------------------------------------------------

# Each file to deploy: its local path and its path relative to the remote directory.
locals=("$bin") rels=("$BIN")
for f in "${data_files[@]}"; do locals+=("$f"); rels+=("data/${f##*/}"); done

rd=$(sq "$remote_dir")
t0=$SECONDS

# What the board already has: "SHA256  PATH" for each of our paths that exists there. The
# staging directory .deploy/ is emptied first (a leftover of an interrupted deploy).
query="mkdir -p $rd/data && cd $rd && rm -rf .deploy && mkdir -p .deploy/data && for f in"
for r in "${rels[@]}"; do query+=" $(sq "$r")"; done
# shellcheck disable=SC2016  # $f is the remote shell's
query+='; do if [ -f "$f" ]; then sha256sum "$f" || exit 1; fi; done'
remote_sums=$(retry --ssh ssh remote "$query" </dev/null) ||
  die "cannot reach $host or query its files (ssh exit $?; check DEPLOY_SSH_OPTS, --port, known_hosts)"
declare -A have=()
while read -r sum path; do [[ -z $path ]] || have[$path]=$sum; done <<<"$remote_sums"

send_bin=() send_data=() expect=() names=()
for i in "${!locals[@]}"; do
  sum=$(sha256sum <"${locals[$i]}" | cut -d' ' -f1)
  [[ ${have[${rels[$i]}]:-} != "$sum" ]] || continue
  expect+=("$sum  ${rels[$i]}")
  names+=("$(sq "${rels[$i]}")")
  if [[ ${rels[$i]} == data/* ]]; then send_data+=("${locals[$i]}"); else send_bin+=("${locals[$i]}"); fi
done

if ((${#expect[@]} == 0)); then
  say "$host:$remote_dir is up to date (nothing changed in the ${#locals[@]} file(s))"
else
  bytes=0
  for f in "${send_bin[@]}" "${send_data[@]}"; do bytes=$((bytes + $(stat -L -c %s "$f"))); done
  say "copying ${#expect[@]} of ${#locals[@]} files ($((bytes / 1024)) KiB) to $host:$remote_dir ..."
  # Into the staging directory; scp's SFTP mode takes remote paths literally.
  ((${#send_bin[@]} == 0)) || retry scp scp -q "${ssh_opts[@]}" "${send_bin[@]}" "$host:$remote_dir/.deploy/" ||
    die "scp to $host failed $RETRIES times"
  ((${#send_data[@]} == 0)) || retry scp scp -q "${ssh_opts[@]}" "${send_data[@]}" "$host:$remote_dir/.deploy/data/" ||
    die "scp to $host failed $RETRIES times"
  # Verify what arrived (the expected sums come on stdin), then rename each into place.
  install="cd $rd/.deploy && sha256sum -c - >/dev/null || exit 1; for f in ${names[*]}; do mv -f \"\$f\" \"../\$f\" || exit 1; done"
  install+=" && cd .. && rm -rf .deploy && chmod 755 $(sq "$BIN")"
  printf '%s\n' "${expect[@]}" | remote "$install" ||
    die "the copies on $host do not match (or could not be moved into place)"
  say "copied in $((SECONDS - t0)) s"
fi

# ---------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------

((${#args[@]} > 0)) || exit 0
cmd="cd $rd && exec ./$(sq "$BIN")"
for a in "${args[@]}"; do cmd+=" $(sq "$a")"; done
say "running on $host in $remote_dir: $BIN ${args[*]}"
rc=0
remote "$cmd" || rc=$?
exit "$rc"
