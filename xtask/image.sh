#!/bin/sh
# udstrace's container image, from a udstrace binary built on this machine: a root file
# system holding the binary at /usr/bin/udstrace, exactly the shared libraries it loads (as
# ldd lists them, at the paths it names them by, symlinks kept), /etc/passwd and /etc/group
# naming root, and /tmp; imported into docker as the first TAG, then tagged with the others.
# `cargo xtask image` and the image test (tests/tests/image.rs) both build it here.
#
# Usage: image.sh BINARY TAG... (the docker client: $DOCKER, else docker)
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 BINARY TAG..." >&2
    exit 2
fi
bin=$1
shift
docker=${DOCKER:-docker}

root=$(mktemp -d "${TMPDIR:-/tmp}/udstrace-image.XXXXXX")
trap 'rm -rf "$root"' EXIT INT TERM
mkdir -p "$root/usr/bin" "$root/etc" "$root/tmp"
chmod 755 "$root" "$root/usr" "$root/usr/bin" "$root/etc"
chmod 1777 "$root/tmp"

cp "$bin" "$root/usr/bin/udstrace"
# Symbols are of no use in the image (a debug build's debug information least of all).
strip "$root/usr/bin/udstrace"

# `NAME => /path (0x...)`, or the loader's `/path (0x...)`; the vDSO has no file (and a static
# binary no line).
ldd "$bin" | sed -n 's/^.*[[:space:]]\(\/[^[:space:]]*\) (0x[0-9a-f]*)$/\1/p' | sort -u |
    while read -r lib; do
        real=$(readlink -f "$lib")
        mkdir -p "$root$(dirname "$real")"
        cp "$real" "$root$real"
        if [ "$lib" != "$real" ]; then
            mkdir -p "$root$(dirname "$lib")"
            ln -sf "$real" "$root$lib"
        fi
    done

echo 'root:x:0:0:root:/root:/usr/sbin/nologin' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
chmod 644 "$root/etc/passwd" "$root/etc/group"

first=$1
shift
tar --numeric-owner --owner=0 --group=0 -C "$root" -c . |
    "$docker" import \
        --change 'ENTRYPOINT ["/usr/bin/udstrace"]' \
        --change 'ENV PATH=/usr/bin' \
        - "$first" >/dev/null
for tag in "$@"; do
    "$docker" tag "$first" "$tag"
done
