#!/usr/bin/env bash
# Proves the README's set-up on a really fresh Debian 12: builds a minimal bookworm root file system
# with mmdebstrap (Debian's package; `apt-get install mmdebstrap`), clones this repository's HEAD into
# it (no ../shared beside the clone), and runs inside a chroot the two commands of the README's
# "Set-up" section exactly as written there (the first ```sh block builds and runs the demo, the
# second runs the tests). Needs root and the network access to Debian and PyPI that a user has.
# Usage: sudo scripts/check-fresh-system.sh [WORK_DIR]   (default: a new folder under /var/tmp;
# WORK_DIR/log.txt keeps the whole log; the root file system is left there for inspection).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d /var/tmp/peft-fresh.XXXXXX)}"
rootfs="$work/rootfs"
log="$work/log.txt"
mkdir -p "$work"
[ "$(id -u)" -eq 0 ] || { echo "check-fresh-system: run as root (chroot, mounts)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "check-fresh-system: apt-get install mmdebstrap" >&2; exit 1; }
[ ! -e "$rootfs" ] || { echo "check-fresh-system: $rootfs exists; give a new WORK_DIR" >&2; exit 1; }

# The README's two commands, taken from the README itself so the check follows its text.
readme_blocks="$(awk '/^## Set-up/{on=1; next} /^## /{on=0} on && /^```sh$/{code=1; n++; next}
  code && /^```$/{code=0; next} code {print n "\t" $0}' "$repo/README.md")"
build_cmd="$(awk -F'\t' '$1==1{print $2}' <<<"$readme_blocks")"
test_cmd="$(awk -F'\t' '$1==2{print $2}' <<<"$readme_blocks")"
[ -n "$build_cmd" ] && [ -n "$test_cmd" ] || { echo "check-fresh-system: no two sh blocks in README Set-up" >&2; exit 1; }

exec > >(tee "$log") 2>&1
echo "== $(date -u +%FT%TZ) fresh Debian 12 in $rootfs"
mmdebstrap --variant=apt --include=ca-certificates bookworm "$rootfs" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"
# The host's certificate bundle: where HTTPS goes through a proxy with its own CA, pip needs it.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
git clone -q "$repo" "$rootfs/root/peft.cpp"
echo "== clone of $(git -C "$repo" rev-parse --short HEAD) at /root/peft.cpp; packages before: $(chroot "$rootfs" dpkg-query -W | wc -l)"

mounts=(proc sys dev dev/pts)
cleanup() { for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "$rootfs/${mounts[i]}" 2>/dev/null || true; done; }
trap cleanup EXIT
mount -t proc proc "$rootfs/proc"
mount --rbind /sys "$rootfs/sys"
mount --rbind /dev "$rootfs/dev"
mount --rbind /dev/pts "$rootfs/dev/pts" 2>/dev/null || true
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"

in_chroot() {
  chroot "$rootfs" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 TERM=dumb /bin/bash -c "cd /root/peft.cpp && test ! -e ../shared && $1"
}
start=$(date +%s)
echo "== README command 1: $build_cmd"
in_chroot "$build_cmd"
mid=$(date +%s)
echo "== README command 2: $test_cmd"
in_chroot "$test_cmd"
end=$(date +%s)
echo "== check-fresh-system: both README commands passed (command 1 $((mid - start)) s, command 2 $((end - mid)) s)"
