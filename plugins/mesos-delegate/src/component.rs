//! The WIT glue: convert records, forward warnings and panics to the host log. No logic here.
//!
//! One component, two worlds: it exports `delegate` (world `delegate-translator`) and
//! `contrail` (world `contrail-translator`) of `contrail:cni-plugin@0.2.0`. The host loads each
//! world from its own file setting, so a site replaces either policy alone.

#[allow(unused_imports)]
use guest_support::prelude::*;

wit_bindgen::generate!({
    path: "../../wit",
    inline: "
        package contrail:mesos-delegate;
        world mesos-delegate {
            include contrail:cni-plugin/delegate-translator@0.2.0;
            include contrail:cni-plugin/contrail-translator@0.2.0;
        }
    ",
    world: "contrail:mesos-delegate/mesos-delegate",
    generate_all,
});

use contrail::cni_plugin::host::{self, Level};
use contrail::cni_plugin::types as wit_types;
use exports::contrail::cni_plugin::contrail as wit_contrail;
use exports::contrail::cni_plugin::delegate as wit_delegate;

struct Component;

export!(Component);

/// The build has no `std` (guest-support's crate docs), so the panic handler is ours: the
/// message goes to the host log, then the call traps (`unreachable`) and the host reports it.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    host::log(Level::Error, &format!("mesos-delegate panicked: {info}"));
    core::arch::wasm32::unreachable()
}

fn to_wit_error(e: crate::PluginError) -> wit_types::PluginError {
    wit_types::PluginError {
        code: e.code,
        msg: e.msg,
        details: e.details,
    }
}

fn to_labels(labels: Vec<wit_types::Label>) -> Vec<crate::Label> {
    labels
        .into_iter()
        .map(|l| crate::Label {
            key: l.key,
            value: l.value,
        })
        .collect()
}

impl wit_delegate::Guest for Component {
    fn translate(
        req: wit_delegate::DelegateRequest,
    ) -> Result<wit_delegate::DelegateAnswer, wit_types::PluginError> {
        let labels = to_labels(req.labels);
        use crate::delegate::Command;
        use wit_types::Command as WitCommand;
        let d = crate::delegate::translate_delegate(&crate::delegate::DelegateRequest {
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
        host::log(Level::Debug, &format!("delegate decision: {d:?}"));
        Ok(wit_delegate::DelegateAnswer {
            ips: d.ips,
            mac: d.mac,
            labels: d.labels.map(|l| {
                l.into_iter()
                    .map(|l| wit_types::Label {
                        key: l.key,
                        value: l.value,
                    })
                    .collect()
            }),
        })
    }
}

impl wit_contrail::Guest for Component {
    fn translate(
        req: wit_contrail::TranslateRequest,
    ) -> Result<wit_contrail::ContrailRequest, wit_types::PluginError> {
        let t =
            crate::contrail::translate_contrail(&to_labels(req.labels)).map_err(to_wit_error)?;
        for w in &t.warnings {
            host::log(Level::Warn, w);
        }
        let r = t.request;
        Ok(wit_contrail::ContrailRequest {
            domain: r.domain,
            project: r.project,
            network: r.network,
            subnets: r
                .subnets
                .into_iter()
                .map(|cidr| wit_contrail::Subnet { cidr })
                .collect(),
            ip: r.ip,
            floating_ips: r
                .floating_ips
                .into_iter()
                .map(|f| wit_contrail::FloatingIpRequest {
                    pool: f.pool,
                    address: f.address,
                })
                .collect(),
            security_groups: r.security_groups,
            isolation: r.isolation.map(|i| {
                use crate::contrail::Isolation as I;
                match i {
                    I::Cluster => wit_contrail::Isolation::Cluster,
                    I::Group => wit_contrail::Isolation::Group,
                    I::App => wit_contrail::Isolation::App,
                    I::UserDefined => wit_contrail::Isolation::UserDefined,
                }
            }),
            other: r
                .other
                .into_iter()
                .map(|l| wit_types::Label {
                    key: l.key,
                    value: l.value,
                })
                .collect(),
        })
    }
}
