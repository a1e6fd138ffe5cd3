#!/usr/bin/env bash
# Builds the release tarball from built artifacts: `make dist` calls it after `make build`.
#   scripts/dist.sh <bin dir> <wasm dir> <out dir>
# <bin dir> holds contrail-cni-plugin, contrail-cni-plugin-compile and contrail-mesos-manager
# (target/ship, as `make build` leaves them), <wasm dir> the
# plugins (target/wasm32-wasip2/wasm-release). Prints the tarball's path.
set -euo pipefail
bin=$1 wasm=$2 out=$3
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
arch=$(uname -m)
name="contrail-mesos-cni-$version-$arch"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
d="$stage/$name"
install -d "$d/bin" "$d/cni-wasm" "$d/etc" "$d/systemd" "$d/deploy"
install -m 0755 "$bin/contrail-cni-plugin" "$bin/contrail-cni-plugin-compile" \
  "$bin/contrail-mesos-manager" "$d/bin/"
install -m 0644 "$wasm/mesos_delegate.wasm" "$d/cni-wasm/mesos-delegate.wasm"
install -m 0644 "$wasm/contrail_ipam.wasm" "$d/cni-wasm/contrail-ipam.wasm"
install -m 0755 "$root/packaging/install.sh" "$d/install.sh"
install -m 0644 "$root/packaging/contrail-mesos-manager.service" \
  "$root/packaging/contrail-cni-sweep.service" "$root/packaging/contrail-cni-sweep.timer" "$d/systemd/"
install -m 0644 "$root/packaging/contrail-mesos-manager.toml.sample" \
  "$root/packaging/contrail-cni-plugin.conf.sample" \
  "$root/packaging/mesos-delegate.conf.sample" "$d/etc/"
cp -r "$root/deploy/." "$d/deploy/"
install -m 0644 "$root/README.md" "$d/README.md"
# The WIT a site needs to write its own plugin (plugins/README.md).
cp -r "$root/wit" "$d/wit"
(cd "$d" && sha256sum bin/* cni-wasm/* >SHA256SUMS)
install -d "$out"
tar -C "$stage" --owner=0 --group=0 -czf "$out/$name.tar.gz" "$name"
echo "$out/$name.tar.gz"
