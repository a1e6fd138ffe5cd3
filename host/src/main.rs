//! `contrail-cni-plugin` (also installed as `mesos`). With no arguments it is a CNI plugin
//! (env + stdin in, result or error JSON on stdout); with arguments, the operator CLI.

use std::process::ExitCode;

use contrail_cni_host::cni::skel::ProcessEnv;

fn main() -> ExitCode {
    if std::env::args_os().len() > 1 {
        return contrail_cni_host::cli::main(std::env::args_os());
    }
    let code = contrail_cni_host::run_cni(
        &ProcessEnv,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
    );
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
