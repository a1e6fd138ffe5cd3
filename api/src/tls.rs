//! TLS settings of the HTTP clients (the manager's VNC, Marathon and Mesos agent clients, the
//! CNI host's manager and vRouter agent clients): one CA bundle per peer, checked when the
//! client is built, and a way to tell a TLS failure from a network one.
//!
//! An empty CA file means the Mozilla root set compiled in (the `webpki-roots` crate through
//! ureq's `rustls` feature), not the host's store: the same roots on every node and in every
//! container image, whether or not it ships `ca-certificates`. A private CA (the usual case
//! for Contrail, Marathon and Mesos inside a cluster) is given as a PEM bundle.

use std::path::Path;

use ureq::tls::{PemItem, RootCerts, TlsConfig, TlsProvider};

/// A CA bundle that cannot be used. Always a configuration error: never replaced by the
/// default roots.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CA file {path}: {msg}")]
pub struct CaFileError {
    pub path: String,
    pub msg: String,
}

/// The client TLS settings for a CA bundle (PEM, one or more `CERTIFICATE` blocks; other
/// blocks are ignored). `""` = the bundled Mozilla roots.
pub fn client_config(ca_file: &str) -> Result<TlsConfig, CaFileError> {
    let b = TlsConfig::builder().provider(TlsProvider::Rustls);
    if ca_file.is_empty() {
        return Ok(b.root_certs(RootCerts::WebPki).build());
    }
    Ok(b.root_certs(load_ca_file(Path::new(ca_file))?).build())
}

/// Reads and parses a PEM CA bundle; at least one certificate, each a valid X.509 DER.
pub fn load_ca_file(path: &Path) -> Result<RootCerts, CaFileError> {
    let err = |msg: String| CaFileError {
        path: path.display().to_string(),
        msg,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut certs = vec![];
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(err(format!("not a PEM bundle: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(err("no PEM CERTIFICATE in it".into()));
    }
    // rustls only parses a root when it verifies a peer; parse now, so a corrupt certificate
    // is a start-up error and not a failure of every later call.
    let mut store = rustls::RootCertStore::empty();
    for (i, c) in certs.iter().enumerate() {
        store
            .add(rustls::pki_types::CertificateDer::from(c.der().to_vec()))
            .map_err(|e| err(format!("certificate {}: {e}", i + 1)))?;
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// `Some(reason)` when the call failed in TLS (the peer's certificate did not verify against
/// the CA bundle, a handshake the peer refused, a protocol mismatch): the same call fails the
/// same way until the configuration changes, so it is a permanent error. `None` for anything
/// else (refused, reset, timed out, which includes a handshake that never finished).
pub fn failure(e: &ureq::Error) -> Option<String> {
    match e {
        ureq::Error::Rustls(r) => Some(r.to_string()),
        ureq::Error::Tls(m) => Some((*m).to_owned()),
        ureq::Error::TlsRequired => Some(e.to_string()),
        // The handshake runs under `complete_io`, which wraps rustls' error in an io::Error.
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .map(ToString::to_string),
        _ => None,
    }
}

/// What every TLS failure message says (`describe`).
pub const FAILURE: &str = "TLS verification failed";

/// A message that says the failure was TLS verification, for logs and error bodies.
pub fn describe(url: &str, reason: &str) -> String {
    format!("{url}: {FAILURE}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_unusable_ca_file_is_an_error_never_the_default_roots() {
        let dir = std::env::temp_dir().join(format!("ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = client_config(missing.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let text = dir.join("text.pem");
        std::fs::write(&text, "hello\n").unwrap();
        let e = client_config(text.to_str().unwrap()).unwrap_err();
        assert!(e.msg.contains("no PEM CERTIFICATE"), "{e}");
        let bad = dir.join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(client_config(bad.to_str().unwrap()).is_err());
        assert!(client_config("").is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
