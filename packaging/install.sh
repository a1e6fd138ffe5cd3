#!/bin/sh
# Installs a contrail-mesos-cni release tarball (built by `make dist`) with no Rust toolchain.
#
#   ./install.sh agent <CNI_BIN_DIR>   every Mesos agent: the CNI host, its plugin compiler
#                                      (beside it: the host runs it when a plugin is not yet
#                                      compiled), the `mesos` alias and the Wasm plugins, each
#                                      checked and precompiled
#   ./install.sh master                each master: the manager, a sample config (never
#                                      overwriting one in place) and its systemd unit
#
# DESTDIR (default empty) prefixes every path, PREFIX (default /usr/local) is where the
# manager's binary goes, as packagers expect; WASM_CACHE_DIR (default the host's,
# /var/cache/contrail-cni/wasm) is where the plugins are precompiled (set it to the network
# config's wasm.cache-dir if that is set).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
WASM_CACHE_DIR=${WASM_CACHE_DIR:-/var/cache/contrail-cni/wasm}
# Where the files come from: the unpacked tarball, or a build tree (`make install` sets both).
BIN_SRC=${BIN_SRC:-$here/bin}
WASM_SRC=${WASM_SRC:-$here/cni-wasm}

usage() {
  echo "usage: $0 agent <CNI_BIN_DIR>   (DC/OS: /opt/mesosphere/active/cni)" >&2
  echo "       $0 master" >&2
  exit 2
}

agent() {
  dir="$DESTDIR$1"
  install -d "$dir" "$dir/contrail-cni-wasm"
  install -m 0755 "$BIN_SRC/contrail-cni-plugin" "$dir/contrail-cni-plugin"
  install -m 0755 "$BIN_SRC/contrail-cni-plugin-compile" "$dir/contrail-cni-plugin-compile"
  ln -sfn contrail-cni-plugin "$dir/mesos"
  for p in mesos-delegate contrail-ipam; do
    src="$WASM_SRC/$p.wasm"
    # cargo names the build outputs with underscores.
    [ -e "$src" ] || src="$WASM_SRC/$(echo "$p" | tr - _).wasm"
    install -m 0644 "$src" "$dir/contrail-cni-wasm/$p.wasm"
  done
  for p in "$dir"/contrail-cni-wasm/*.wasm; do
    # The gate: a plugin that does not match this host's WIT, or imports what the host does
    # not grant, is not installed silently.
    "$dir/contrail-cni-plugin" plugin check "$p" >/dev/null
    "$dir/contrail-cni-plugin" plugin compile --cache-dir "$DESTDIR$WASM_CACHE_DIR" "$p" >/dev/null 2>&1 ||
      echo "note: $p not precompiled (cache dir not writable); the first ADD compiles it with $dir/contrail-cni-plugin-compile"
  done
  echo "installed the CNI host, its plugin compiler and the plugins into $dir"
  echo "next: a network config in the agent's --network_cni_config_dir (samples: etc/*.conf.sample of the release)"
  echo "      and check it: $dir/contrail-cni-plugin config check <file>"
}

master() {
  install -d "$DESTDIR$PREFIX/bin" "$DESTDIR/etc/contrail" "$DESTDIR/var/log/contrail"
  # The unit runs as the system user `contrail` (created here on a real install).
  if [ -z "$DESTDIR" ]; then
    id contrail >/dev/null 2>&1 ||
      useradd --system --no-create-home --shell /usr/sbin/nologin contrail
    chown contrail: /var/log/contrail
  fi
  install -m 0755 "$BIN_SRC/contrail-mesos-manager" "$DESTDIR$PREFIX/bin/contrail-mesos-manager"
  cfg="$DESTDIR/etc/contrail/contrail-mesos-manager.toml"
  if [ -e "$cfg" ]; then
    echo "kept the existing $cfg"
  else
    install -m 0640 "$here/etc/contrail-mesos-manager.toml.sample" "$cfg"
  fi
  unit_dir="$DESTDIR/etc/systemd/system"
  install -d "$unit_dir"
  sed "s|@BINDIR@|$PREFIX/bin|g" "$here/systemd/contrail-mesos-manager.service" \
    >"$unit_dir/contrail-mesos-manager.service"
  chmod 0644 "$unit_dir/contrail-mesos-manager.service"
  echo "installed the manager into $DESTDIR$PREFIX/bin and its unit into $unit_dir"
  echo "next: edit $cfg ([vnc] urls, [marathon] urls, [zookeeper] connect, [api] token-file),"
  echo "      then: systemctl daemon-reload && systemctl enable --now contrail-mesos-manager"
}

[ $# -ge 1 ] || usage
case "$1" in
  agent) [ $# -eq 2 ] || usage; agent "$2" ;;
  master) [ $# -eq 1 ] || usage; master ;;
  *) usage ;;
esac
