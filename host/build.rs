//! Link settings of `contrail-cni-plugin` alone (not the library, the compiler or the tests'
//! own binaries). Every CNI call execs it, so what happens before `main` is paid on every ADD
//! and DEL; docs/BENCHMARKS.md ("Exec floor and delegate path", "Fifth round") has the figures.
//!
//! **As it ships** (`make host`), the host is a static musl executable built position-dependent
//! (`-C relocation-model=static`, set for the musl target by the Makefile). glibc's start-up
//! detects CPU features and cache sizes with some fifty CPUID instructions, each a trap to the
//! hypervisor on a VM (~5 us here): a glibc program cannot exec and exit in less than ~0.4 ms
//! on such a node, a static musl one does in ~0.2 ms. The price is name resolution:
//! `getaddrinfo` is musl's, which reads `/etc/hosts` and the servers of `/etc/resolv.conf` but
//! no NSS modules. The reference plugins beside it (Go, statically linked) resolve the same
//! way.
//!
//! **Built for glibc** (the tests' build, or anyone's `cargo build`), two settings below still
//! shorten the start-up:
//! * The unwinder is linked in statically (`libgcc_eh.a`) instead of loading `libgcc_s.so.1`:
//!   one library less to map and relocate, and no `__cpu_indicator_init` constructor, whose
//!   CPUID instructions trap to the hypervisor on a VM (~7 us each here). Rust's std asks for
//!   `-lgcc_s` by name, so a linker script of that name, found first on the search path,
//!   stands for `-lgcc_eh` (what `-static-libgcc` does for C programs). glibc stays dynamic
//!   there: name resolution keeps using the node's NSS modules.
//! * A position-dependent executable (`-no-pie`; the objects are PIC, which links either way):
//!   no ~12,000 relative relocations to apply and no copy-on-write faults on the pages they
//!   touch. The price is that the executable's own image is not randomised (ASLR still places
//!   the stack, heap, libc and every mapping wasmtime makes). The reference plugins it stands
//!   beside are the same: Debian's `/usr/lib/cni/bridge` and `host-local` are `ET_EXEC` (Go's
//!   default build mode on linux/amd64), so a node gives up nothing it has today.
//!
//! Only for linux-gnu targets; elsewhere (musl included) the defaults and the Makefile's flags
//! stand.

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    let dir = PathBuf::from(var("OUT_DIR")).join("static-libgcc");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/static-libgcc");
    std::fs::write(
        dir.join("libgcc_s.so"),
        "/* contrail-cni-plugin: the unwinder linked statically (host/build.rs) */\nINPUT(-lgcc_eh)\n",
    )
    .expect("write the libgcc_s linker script");
    println!(
        "cargo::rustc-link-arg-bin=contrail-cni-plugin=-L{}",
        dir.display()
    );
    println!("cargo::rustc-link-arg-bin=contrail-cni-plugin=-no-pie");
}
