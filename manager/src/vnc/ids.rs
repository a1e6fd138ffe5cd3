//! Name and uuid derivation of the objects the manager creates per attachment. Every name is
//! a function of (container id, ifname) alone, so a repeated or crashed registration meets
//! `409 already exists` and reuses what is there, and a DEL finds the objects from VNC alone.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Name of the VMI and the instance-ip of one attachment.
pub fn port_name(cid: &str, ifname: &str) -> String {
    format!("{cid}__{ifname}")
}

/// The MAC the server gives a VMI (`"02:"` + its uuid's first 5 bytes): the manager sets the
/// same one itself, so a create needs no read-back.
pub fn mac_for(vmi_uuid: &str) -> String {
    let h = vmi_uuid.replace('-', "");
    format!(
        "02:{}:{}:{}:{}:{}",
        &h[0..2],
        &h[2..4],
        &h[4..6],
        &h[6..8],
        &h[8..10]
    )
}

/// `index` annotation `i/N`: i from the ifname's trailing digits (eth1 → 1), else the number
/// of interfaces already registered; N = i + 1. Mesos gives each network its own ADD and the
/// manager cannot know how many follow, so N counts the interfaces up to this one.
pub fn index_of(ifname: &str, registered: usize) -> String {
    let digits: String = ifname
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let i = digits.parse::<usize>().unwrap_or(registered);
    format!("{i}/{}", i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_from_ifname() {
        assert_eq!(index_of("eth0", 0), "0/1");
        assert_eq!(index_of("eth2", 0), "2/3");
        assert_eq!(index_of("net", 1), "1/2");
    }
}
