//! The worlds the host calls, in both contract versions: which version a component offers
//! (by the interface it exports), the typed `instantiate_pre` per world, and the exact type
//! check `plugin check` runs.

use wasmtime::component::{Component, HasSelf};

use super::bindings::{v1, v2};
use super::runtime::{self, Limits, State};
use super::{WIT_PACKAGE, WIT_PACKAGE_COMPAT, engine};

/// The plugin worlds the host calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    DelegateTranslator,
    ContrailTranslator,
    IpamPlugin,
}

impl World {
    pub const ALL: [World; 3] = [
        World::DelegateTranslator,
        World::ContrailTranslator,
        World::IpamPlugin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            World::DelegateTranslator => "delegate-translator",
            World::ContrailTranslator => "contrail-translator",
            World::IpamPlugin => "ipam-plugin",
        }
    }

    pub fn parse(s: &str) -> Option<World> {
        World::ALL.into_iter().find(|w| w.name() == s)
    }

    /// The interface the world exports, in 0.2.0 and in 0.1.0.
    fn exports(self) -> (&'static str, &'static str) {
        match self {
            World::DelegateTranslator => (
                "contrail:cni-plugin/delegate@0.2.0",
                "contrail:cni-plugin/translator@0.1.0",
            ),
            World::ContrailTranslator => (
                "contrail:cni-plugin/contrail@0.2.0",
                "contrail:cni-plugin/translator@0.1.0",
            ),
            World::IpamPlugin => (
                "contrail:cni-plugin/ipam@0.2.0",
                "contrail:cni-plugin/ipam@0.1.0",
            ),
        }
    }
}

/// Which contract version a loaded plugin speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V2,
    V1,
}

impl Version {
    pub fn package(self) -> &'static str {
        match self {
            Version::V2 => WIT_PACKAGE,
            Version::V1 => WIT_PACKAGE_COMPAT,
        }
    }
}

/// A type-checked plugin of either version, ready to instantiate.
pub(super) enum Pre<A, B> {
    V2(A),
    V1(B),
}

pub(super) struct Prepared<P> {
    pub(super) name: String,
    pub(super) pre: P,
}

pub(super) type DelegatePre =
    Pre<v2::delegate::DelegateTranslatorPre<State>, v1::translator::LabelTranslatorPre<State>>;
pub(super) type ContrailPre =
    Pre<v2::contrail::ContrailTranslatorPre<State>, v1::translator::LabelTranslatorPre<State>>;
pub(super) type IpamPre = Pre<v2::ipam::IpamPluginPre<State>, v1::ipam::IpamPluginPre<State>>;

/// The contract version `component` offers for `world`, by the interface it exports.
pub fn version_of(component: &Component, world: World) -> Option<Version> {
    let engine = component.engine();
    let (v2_export, v1_export) = world.exports();
    let mut found = None;
    for (name, _) in component.component_type().exports(engine) {
        if name == v2_export {
            return Some(Version::V2);
        }
        if name == v1_export {
            found = Some(Version::V1);
        }
    }
    found
}

fn not_exported(world: World) -> wasmtime::Error {
    let (a, b) = world.exports();
    wasmtime::Error::msg(format!(
        "it is not a {} plugin: it exports neither {a} nor {b}",
        world.name()
    ))
}

pub(super) fn prepare_delegate(component: &Component) -> wasmtime::Result<DelegatePre> {
    let engine = component.engine();
    match version_of(component, World::DelegateTranslator) {
        Some(Version::V2) => {
            let linker = runtime::linker_for(engine, component, |l| {
                v2::delegate::DelegateTranslator::add_to_linker::<State, HasSelf<State>>(l, |s| s)
            })?;
            Ok(Pre::V2(v2::delegate::DelegateTranslatorPre::new(
                linker.instantiate_pre(component)?,
            )?))
        }
        Some(Version::V1) => Ok(Pre::V1(prepare_v1_translator(component)?)),
        None => Err(not_exported(World::DelegateTranslator)),
    }
}

pub(super) fn prepare_contrail(component: &Component) -> wasmtime::Result<ContrailPre> {
    let engine = component.engine();
    match version_of(component, World::ContrailTranslator) {
        Some(Version::V2) => {
            let linker = runtime::linker_for(engine, component, |l| {
                v2::contrail::ContrailTranslator::add_to_linker::<State, HasSelf<State>>(l, |s| s)
            })?;
            Ok(Pre::V2(v2::contrail::ContrailTranslatorPre::new(
                linker.instantiate_pre(component)?,
            )?))
        }
        Some(Version::V1) => Ok(Pre::V1(prepare_v1_translator(component)?)),
        None => Err(not_exported(World::ContrailTranslator)),
    }
}

fn prepare_v1_translator(
    component: &Component,
) -> wasmtime::Result<v1::translator::LabelTranslatorPre<State>> {
    let linker = runtime::linker_for(component.engine(), component, |l| {
        v1::translator::LabelTranslator::add_to_linker::<State, HasSelf<State>>(l, |s| s)
    })?;
    v1::translator::LabelTranslatorPre::new(linker.instantiate_pre(component)?)
}

pub(super) fn prepare_ipam(component: &Component) -> wasmtime::Result<IpamPre> {
    let engine = component.engine();
    match version_of(component, World::IpamPlugin) {
        Some(Version::V2) => {
            let linker = runtime::linker_for(engine, component, |l| {
                v2::ipam::IpamPlugin::add_to_linker::<State, HasSelf<State>>(l, |s| s)
            })?;
            Ok(Pre::V2(v2::ipam::IpamPluginPre::new(
                linker.instantiate_pre(component)?,
            )?))
        }
        Some(Version::V1) => {
            let linker = runtime::linker_for(engine, component, |l| {
                v1::ipam::IpamPlugin::add_to_linker::<State, HasSelf<State>>(l, |s| s)
            })?;
            Ok(Pre::V1(v1::ipam::IpamPluginPre::new(
                linker.instantiate_pre(component)?,
            )?))
        }
        None => Err(not_exported(World::IpamPlugin)),
    }
}

/// Type-checks `component` as `world` exactly as an ADD would: the bindgen'd world's
/// `instantiate_pre` (imports), then one instantiation in a sandboxed store, which looks up
/// every export as a typed function (a record with a changed field fails here). Nothing is
/// called.
pub fn check_world(component: &Component, world: World) -> Result<Version, String> {
    let limits = Limits {
        memory_limit_mb: crate::cni::config::DEFAULT_MEMORY_LIMIT_MB,
        timeout_ms: crate::cni::config::DEFAULT_TIMEOUT_MS,
    };
    // The process-wide engine, which compiled `component` and whose epoch the store's alarm
    // advances.
    let engine = engine().map_err(|e| e.msg)?;
    let mut store = runtime::new_store(engine, "(check)", "", limits)?;
    let r = match world {
        World::DelegateTranslator => prepare_delegate(component).and_then(|p| match p {
            Pre::V2(pre) => pre.instantiate(&mut store).map(drop),
            Pre::V1(pre) => pre.instantiate(&mut store).map(drop),
        }),
        World::ContrailTranslator => prepare_contrail(component).and_then(|p| match p {
            Pre::V2(pre) => pre.instantiate(&mut store).map(drop),
            Pre::V1(pre) => pre.instantiate(&mut store).map(drop),
        }),
        World::IpamPlugin => prepare_ipam(component).and_then(|p| match p {
            Pre::V2(pre) => pre.instantiate(&mut store).map(drop),
            Pre::V1(pre) => pre.instantiate(&mut store).map(drop),
        }),
    };
    r.map_err(|e| format!("{e:#}"))?;
    version_of(component, world).ok_or_else(|| "no version".to_owned())
}
