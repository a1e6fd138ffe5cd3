//! CNI spec versions this host speaks. A config without `cniVersion` is 0.1.0 (Go's
//! `pkg/types/create`), which is why Mesos (which reads only 0.1/0.2 results) works unchanged.

use std::fmt;

use super::error::{CniError, INCOMPATIBLE_VERSION};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    V0_1_0,
    V0_2_0,
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

/// The version used when a config has no `cniVersion`.
pub const DEFAULT_VERSION: &str = "0.1.0";
/// Our newest version (used for VERSION answers and errors when the config is unreadable).
pub const CURRENT: CniVersion = CniVersion::V1_1_0;

impl CniVersion {
    pub const ALL: [CniVersion; 7] = [
        CniVersion::V0_1_0,
        CniVersion::V0_2_0,
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_1_0 => "0.1.0",
            CniVersion::V0_2_0 => "0.2.0",
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Exact match against the supported list; anything else is error 1, like Go's skel
    /// ("incompatible CNI versions").
    pub fn parse(s: &str) -> Result<Self, CniError> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                CniError::new(INCOMPATIBLE_VERSION, "incompatible CNI versions").with_details(
                    format!(
                        "config is {s:?}, plugin supports {:?}",
                        Self::ALL.map(CniVersion::as_str)
                    ),
                )
            })
    }

    /// `cniVersion` as written in a config; absent means 0.1.0.
    pub fn from_config(v: Option<&str>) -> Result<Self, CniError> {
        Self::parse(v.unwrap_or(DEFAULT_VERSION))
    }

    /// 0.1.0 and 0.2.0 use the `ip4`/`ip6` result.
    pub fn is_legacy_result(self) -> bool {
        self <= CniVersion::V0_2_0
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Loose `major.minor.patch` parse for versions written by other plugins (Mesos' own tests
/// print "0.2.3"); missing parts are 0. `None` when not numeric.
pub fn parse_loose(s: &str) -> Option<(u64, u64, u64)> {
    let mut it = s.trim().splitn(3, '.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next().map_or(Some(0), |p| p.parse().ok())?;
    let patch = it.next().map_or(Some(0), |p| p.parse().ok())?;
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        for v in CniVersion::ALL {
            assert_eq!(CniVersion::parse(v.as_str()).unwrap(), v);
        }
        assert!(CniVersion::V0_2_0 < CniVersion::V0_3_0);
        assert!(CniVersion::V0_4_0 < CniVersion::V1_0_0);
        assert_eq!(CniVersion::from_config(None).unwrap(), CniVersion::V0_1_0);
        let e = CniVersion::parse("0.5.0").unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.details.contains("0.5.0"), "{e:?}");
        assert!(CniVersion::V0_2_0.is_legacy_result());
        assert!(!CniVersion::V0_3_0.is_legacy_result());
    }

    #[test]
    fn loose() {
        assert_eq!(parse_loose("0.2.3"), Some((0, 2, 3)));
        assert_eq!(parse_loose("1.0"), Some((1, 0, 0)));
        assert_eq!(parse_loose("x"), None);
    }
}
