#!/usr/bin/env bash
# The fresh-machine check (a stage of scripts/test.sh, so of CI): proves that
# the README's run command works on a bare Debian 12 system.
#
#   1. debootstrap builds a minimal Debian 12 (bookworm) root filesystem in a
#      new temporary folder: the base system and nothing else. The Debian
#      mirror is the one this machine's apt already uses, so the check needs
#      no network beyond Debian's package registry. Nothing is cached from an
#      earlier run: every run downloads and installs every package anew, so a
#      package missing from scripts/install-deps.sh fails here even when this
#      machine has it installed by hand.
#   2. A clean export of the repository (tracked files only, with uncommitted
#      changes to them; no build folders) is copied into it.
#   3. Inside it, as root, in a private mount namespace (proc, sys and dev are
#      mounted there only, and vanish with it), with an empty environment, it
#      runs exactly the README's run command, `bash scripts/demo.sh`, which
#      installs its own packages, builds and generates; the stage passes only
#      when that exits 0 and prints `identical output: yes`.
#   4. Then the test command's install step (install-deps.sh --test) and a
#      configure of the whole project, tests, benchmarks and docs included,
#      so a package only the tests need cannot be missing either.
#   5. The root is deleted; the stage prints how long each step took.
#
# Needs root, debootstrap (scripts/test.sh installs it) and about 2 GB
# under ${TMPDIR:-/var/tmp}.
#
# Usage: scripts/fresh-root.sh            the check above (the test command's stage)
#        scripts/fresh-root.sh 'COMMAND'  runs COMMAND in the fresh root instead of
#                                         steps 3-4, and passes when it exits 0: for
#                                         checking by hand, e.g. the README's test
#                                         command: scripts/fresh-root.sh 'bash scripts/test.sh'
#                                         (6-8 GB of disk: it builds everything)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

[[ "$(id -u)" == 0 ]] || { echo "fresh-root: needs root (debootstrap, chroot, mounts)" >&2; exit 2; }
command -v debootstrap > /dev/null || { echo "fresh-root: debootstrap is not installed" >&2; exit 2; }

# The mirror this machine's apt reads bookworm's main component from.
mirror="$(apt-cache policy 2> /dev/null |
  awk '$3 == "bookworm/main" && $2 ~ /^(https?|file):/ { print $2; exit }')"
[[ -n "$mirror" ]] || { echo "fresh-root: apt knows no mirror of bookworm/main (run apt-get update)" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/var/tmp}/assistgen-fresh-root.XXXXXX")"
root="$work/root"
cleanup() {
  # The mounts lived in the unshared namespace, which is gone by now; never
  # delete through a mount point that is still there.
  if grep -q " $work/" /proc/self/mounts; then
    echo "fresh-root: $work still has mounts; not deleting it" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

t0=$SECONDS
echo "== fresh root: debootstrap --variant=minbase bookworm (mirror from apt: $mirror)"
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  echo "fresh-root: debootstrap failed" >&2
  exit 1
fi
t_bootstrap=$((SECONDS - t0))

# The exported tree: HEAD plus uncommitted changes to tracked files. Outside
# a git checkout (a release tarball, or this script run inside a fresh root),
# the tree itself without its build folders.
mkdir -p "$root/src/assistgen"
if command -v git > /dev/null && git -C "$repo" rev-parse --git-dir > /dev/null 2>&1; then
  snapshot="$(git -C "$repo" stash create 2> /dev/null || true)"
  git -C "$repo" archive --format=tar "${snapshot:-HEAD}" | tar -x -C "$root/src/assistgen"
else
  tar -C "$repo" --exclude='./build*' --exclude='./.git' -cf - . | tar -x -C "$root/src/assistgen"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"

# Runs a command in the fresh root: as root, from the exported tree, in a
# private mount namespace, with an empty environment.
in_root() {
  # (--propagation unchanged, then make-rprivate where / is a mount point:
  # inside a chroot, as when the test command itself runs in a fresh root,
  # it is not, and the namespace around it is private already.)
  unshare --mount --propagation unchanged --fork -- bash -euo pipefail -c '
    root="$1"; cmd="$2"
    if mountpoint -q /; then mount --make-rprivate /; fi
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    mount --rbind /dev "$root/dev"
    exec chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      /bin/bash -c "cd /src/assistgen && $cmd"
  ' fresh-root "$root" "$1"
}

if (($# > 0)); then
  echo "== fresh root: $1 (as root, in the bare system)"
  t1=$SECONDS
  set +e
  in_root "$1"
  rc=$?
  set -e
  echo "== fresh root: debootstrap ${t_bootstrap} s, '$1' $((SECONDS - t1)) s, exit code $rc"
  exit "$rc"
fi

echo "== fresh root: bash scripts/demo.sh (the README's run command), as root, in the bare system"
t1=$SECONDS
set +e
in_root "bash scripts/demo.sh" 2>&1 | tee "$work/demo.log"
rc=${PIPESTATUS[0]}
set -e
t_demo=$((SECONDS - t1))
if ((rc != 0)); then
  echo "fresh-root: FAILED: the README's run command exited $rc on a bare Debian 12 root" >&2
  exit 1
fi
if ! grep -q '^identical output: yes' "$work/demo.log"; then
  echo "fresh-root: FAILED: the README's run command did not print 'identical output: yes'" >&2
  exit 1
fi

# The test command's own packages on top (tests, benchmarks, docs): its
# install step, then a configure of the whole project with everything on,
# which fails on any package that is missing; node and npm must be there
# (Debian's, for the server's tests with real clients).
echo "== fresh root: the test command's packages (install-deps.sh --test) and a configure of everything"
t2=$SECONDS
if ! in_root "bash scripts/install-deps.sh --test > /dev/null && node --version && npm --version && cmake -S . -B build-all -G Ninja \
      -DCMAKE_BUILD_TYPE=Release -DASSISTGEN_BUILD_TESTS=ON -DASSISTGEN_BUILD_BENCHMARKS=ON \
      -DASSISTGEN_BUILD_EXAMPLES=ON -DASSISTGEN_BUILD_CLI=ON -DASSISTGEN_BUILD_HPU=ON" > "$work/configure.log" 2>&1; then
  cat "$work/configure.log" >&2
  echo "fresh-root: FAILED: the test suite does not configure on a bare Debian 12 root with the packages of install-deps.sh --test" >&2
  exit 1
fi
t_configure=$((SECONDS - t2))

echo "== fresh root: debootstrap ${t_bootstrap} s, README run command ${t_demo} s (packages, build, generation), test packages and configure ${t_configure} s, stage $((SECONDS - t0)) s"
echo "== fresh root: passed"
