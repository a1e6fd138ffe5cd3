//! [`Invocation`]: one validated CNI call and the plugins it may use. Both paths (Contrail and
//! the Mesos delegate) receive it from the dispatcher; neither imports anything back from there.

use crate::cni::error::CniError;
use crate::cni::skel::Request;
use crate::cni::{CmdArgs, CniVersion, Command, NetConf};
use crate::wasm::{InvocationRecord, Plugins};

/// A validated invocation and the plugins it may use (loaded on first use).
pub struct Invocation {
    pub command: Command,
    pub args: CmdArgs,
    pub conf: NetConf,
    /// The config's `cniVersion`, parsed (results are written in it).
    pub version: CniVersion,
    pub plugins: Plugins,
}

impl Invocation {
    /// Builds the invocation from a skel request; a bad `wasm` section is error 7.
    pub fn new(req: Request) -> Result<Self, CniError> {
        let plugins = Plugins::new(req.conf.wasm()?, &req.args.container_id);
        Ok(Invocation {
            command: req.command,
            args: req.args,
            conf: req.conf,
            version: req.version,
            plugins,
        })
    }

    /// The network's `name` (validated by skel, so never empty on a dispatched call).
    pub fn network_name(&self) -> &str {
        self.conf.name().unwrap_or_default()
    }

    /// The WIT `invocation` record handed to plugins.
    pub fn record(&self) -> InvocationRecord {
        InvocationRecord {
            command: self.command,
            container_id: self.args.container_id.clone(),
            ifname: self.args.ifname.clone(),
            netns: self.args.netns.clone(),
            network_name: self.network_name().to_owned(),
            cni_version: self.conf.cni_version().to_owned(),
            config: self.conf.text().to_owned(),
        }
    }
}
