//! The release tarball (`make dist` → `scripts/dist.sh`) installs with its own `install.sh` on a
//! machine without a toolchain: the agent layout works (VERSION answers, the plugins pass
//! `plugin check` and are precompiled), the master layout has a config the manager reads and a
//! unit that points at the installed binary. Built here from the debug artifacts; everything
//! goes under a temporary DESTDIR. No root needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use contrail_integration::paths;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

fn artifacts() -> (PathBuf, PathBuf) {
    let bin = paths::target_dir().join("debug");
    let wasm = paths::wasm_dir();
    for p in [
        bin.join("contrail-cni-plugin"),
        bin.join("contrail-cni-plugin-compile"),
        bin.join("contrail-mesos-manager"),
        wasm.join("mesos_delegate.wasm"),
        wasm.join("contrail_ipam.wasm"),
    ] {
        assert!(
            p.is_file(),
            "{} is missing: run `cargo build --bins` and `make wasm`",
            p.display()
        );
    }
    (bin, wasm)
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn the_release_tarball_installs_an_agent_and_a_master() {
    let (bin, wasm) = artifacts();
    let tmp = tempfile::tempdir().unwrap();
    let out = run(Command::new(repo().join("scripts/dist.sh"))
        .arg(&bin)
        .arg(&wasm)
        .arg(tmp.path().join("dist")));
    let tarball = PathBuf::from(out.trim().lines().last().unwrap());
    assert!(tarball.is_file(), "{out}");
    let x = tmp.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    run(Command::new("tar")
        .arg("-C")
        .arg(&x)
        .arg("-xzf")
        .arg(&tarball));
    let top = std::fs::read_dir(&x)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&top));
    let root = tmp.path().join("root");

    // Agent.
    run(Command::new(top.join("install.sh"))
        .args(["agent", "/opt/cni"])
        .env("DESTDIR", &root));
    let cni = root.join("opt/cni");
    assert_eq!(
        std::fs::read_link(cni.join("mesos")).unwrap(),
        Path::new("contrail-cni-plugin")
    );
    let v = run(Command::new(cni.join("contrail-cni-plugin"))
        .env("CNI_COMMAND", "VERSION")
        .stdin(std::process::Stdio::null()));
    assert!(v.contains("supportedVersions"), "{v}");
    for p in ["mesos-delegate", "contrail-ipam"] {
        let f = cni.join(format!("contrail-cni-wasm/{p}.wasm"));
        run(Command::new(cni.join("contrail-cni-plugin"))
            .args(["plugin", "check"])
            .arg(&f));
    }
    // The compiler is installed beside the host, where the host looks for it.
    let v = run(Command::new(cni.join("contrail-cni-plugin")).arg("version"));
    let compiler = cni.join("contrail-cni-plugin-compile");
    assert!(compiler.is_file(), "{v}");
    assert!(
        v.contains(&format!("plugin compiler: {}\n", compiler.display())),
        "{v}"
    );
    let cache = root.join("var/cache/contrail-cni/wasm");
    assert!(
        std::fs::read_dir(&cache).is_ok_and(|mut d| d.next().is_some()),
        "plugins not precompiled into {}",
        cache.display()
    );

    // Master.
    run(Command::new(top.join("install.sh"))
        .arg("master")
        .env("DESTDIR", &root)
        .env("PREFIX", "/usr/local"));
    let mgr = root.join("usr/local/bin/contrail-mesos-manager");
    let cfg = root.join("etc/contrail/contrail-mesos-manager.toml");
    let printed = run(Command::new(&mgr)
        .arg("--config")
        .arg(&cfg)
        .arg("--print-config"));
    assert!(printed.contains("master1:2181"), "{printed}");
    // And it passes the manager's own check (its token file pointed at one that exists here).
    let token = tmp.path().join("mesos-token");
    std::fs::write(&token, "s3cret\n").unwrap();
    run(Command::new(&mgr)
        .arg("--config")
        .arg(&cfg)
        .arg("--check-config")
        .env("CONTRAIL_MESOS_MANAGER_API_TOKEN_FILE", &token)
        .env(
            "CONTRAIL_MESOS_MANAGER_LOG_FILE",
            root.join("var/log/contrail/contrail-mesos-manager.log"),
        ));
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/contrail-mesos-manager.service"))
            .unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/contrail-mesos-manager --config /etc/contrail/contrail-mesos-manager.toml"),
        "{unit}"
    );
    // A second install keeps an operator's edited config.
    std::fs::write(&cfg, "[api]\nlisten = \"127.0.0.1:7000\"\n").unwrap();
    let again = run(Command::new(top.join("install.sh"))
        .arg("master")
        .env("DESTDIR", &root));
    assert!(again.contains("kept the existing"), "{again}");
    assert!(std::fs::read_to_string(&cfg).unwrap().contains("7000"));

    // The sample network configs pass the host's own check (warnings allowed: the sample's
    // log directory and manager hosts do not exist here).
    // The Contrail sample's token file is where the node keeps it; point it at one here.
    let mut contrail: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(top.join("etc/contrail-cni-plugin.conf.sample")).unwrap(),
    )
    .unwrap();
    contrail["contrail"]["mesos-token-file"] = serde_json::json!(token);
    let contrail_conf = tmp.path().join("contrail-cni-plugin.conf");
    std::fs::write(&contrail_conf, contrail.to_string()).unwrap();
    for (sample, path) in [
        ("contrail-cni-plugin.conf.sample", contrail_conf),
        (
            "mesos-delegate.conf.sample",
            top.join("etc/mesos-delegate.conf.sample"),
        ),
    ] {
        let out = Command::new(cni.join("contrail-cni-plugin"))
            .args(["config", "check"])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{sample}: {text}");
        assert!(!text.contains("error:"), "{sample}: {text}");
    }
    // Bad usage is an error, not a partial install.
    let bad = Command::new(top.join("install.sh"))
        .arg("agent")
        .env("DESTDIR", &root)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
