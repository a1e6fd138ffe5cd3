//! The WIT glue: convert records, forward warnings and panics to the host log. No logic here.

wit_bindgen::generate!({
    world: "label-translator",
    path: "../../wit",
});

use contrail::cni_plugin::host::{self, Level};
use exports::contrail::cni_plugin::translator as wit;

struct Component;

export!(Component);

/// Without WASI the default panic hook traps before printing (it reads the environment), so
/// the message would be lost; send it to the host log instead. The panic still aborts the call
/// and the host reports a trap.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            host::log(Level::Error, &format!("mesos-delegate panicked: {info}"));
        }))
    });
}

fn to_wit_error(e: crate::PluginError) -> wit::PluginError {
    wit::PluginError {
        code: e.code,
        msg: e.msg,
        details: e.details,
    }
}

fn to_labels(labels: Vec<wit::Label>) -> Vec<crate::Label> {
    labels
        .into_iter()
        .map(|l| crate::Label {
            key: l.key,
            value: l.value,
        })
        .collect()
}

impl wit::Guest for Component {
    fn translate_delegate(req: wit::DelegateRequest) -> Result<String, wit::PluginError> {
        install_panic_hook();
        let labels = to_labels(req.labels);
        use crate::delegate::Command;
        use contrail::cni_plugin::types::Command as WitCommand;
        let out = crate::delegate::translate_delegate(&crate::delegate::DelegateRequest {
            command: match req.invocation.command {
                WitCommand::Add => Command::Add,
                WitCommand::Del => Command::Del,
                WitCommand::Check => Command::Check,
                WitCommand::Status => Command::Status,
                WitCommand::Gc => Command::Gc,
            },
            network_name: &req.invocation.network_name,
            cni_version: &req.invocation.cni_version,
            config: &req.invocation.config,
            labels: &labels,
            delegate: &req.delegate,
            ignore_unknown: req.ignore_unknown,
        })
        .map_err(to_wit_error)?;
        host::log(Level::Debug, &format!("delegate config: {out}"));
        Ok(out)
    }

    fn translate_contrail(
        labels: Vec<wit::Label>,
    ) -> Result<wit::ContrailRequest, wit::PluginError> {
        install_panic_hook();
        let t = crate::contrail::translate_contrail(&to_labels(labels)).map_err(to_wit_error)?;
        for w in &t.warnings {
            host::log(Level::Warn, w);
        }
        let r = t.request;
        Ok(wit::ContrailRequest {
            domain: r.domain,
            project: r.project,
            network: r.network,
            subnets: r
                .subnets
                .into_iter()
                .map(|cidr| wit::Subnet { cidr })
                .collect(),
            ip: r.ip,
            floating_ips: r
                .floating_ips
                .into_iter()
                .map(|f| wit::FloatingIpRequest {
                    pool: f.pool,
                    address: f.address,
                })
                .collect(),
            security_groups: r.security_groups,
            other: r
                .other
                .into_iter()
                .map(|l| wit::Label {
                    key: l.key,
                    value: l.value,
                })
                .collect(),
        })
    }
}
