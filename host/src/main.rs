//! `contrail-cni-plugin` (also installed as `mesos`). With no arguments it is a CNI plugin
//! (env + stdin in, result or error JSON on stdout); with arguments, the operator CLI.

use std::process::ExitCode;

use contrail_cni_host::cni::skel::ProcessEnv;

fn main() -> ExitCode {
    if std::env::args_os().len() > 1 {
        return contrail_cni_host::cli::main(std::env::args_os());
    }
    let invoked_as = std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = contrail_cni_host::run_cni(
        &ProcessEnv,
        &invoked_as,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
    );
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
