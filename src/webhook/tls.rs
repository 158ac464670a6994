//! The server's TLS: the serving certificate, and, with `--client-ca`, who
//! may ask for reviews. Both are read from files and reloaded when the files
//! change.
//!
//! Client authentication is mutual TLS. The handshake asks every client for a
//! certificate and accepts one only if it chains to the client CA (rustls'
//! `WebPkiClientVerifier`; a certificate from any other CA fails the
//! handshake). A client may also present none: kubelet probes and Prometheus
//! must keep working. What a connection proved is its [`Caller`]; the review
//! routes answer only callers that proved what [`ClientPolicy`] asks.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::sync::watch;

/// What `--client-ca` (and `--client-name`) ask of clients.
#[derive(Clone, Debug)]
pub struct ClientAuth {
    /// PEM bundle of the CAs whose client certificates are accepted.
    pub ca: PathBuf,
    /// Names a client certificate must carry one of (its subject CN or a DNS
    /// name among its subject alternative names); empty: any.
    pub names: Vec<String>,
}

/// Who may ask for reviews.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClientPolicy {
    /// Anyone who can reach the port (no `--client-ca`).
    #[default]
    Anyone,
    /// Only clients whose certificate the handshake verified against the
    /// client CA and, when `names` is not empty, that carries one of them.
    Certified { names: Vec<String> },
}

/// What one connection's client proved, as the review routes see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Client authentication is off: anyone may ask.
    Anyone,
    /// A verified certificate, and the name it was accepted under (its
    /// first name when any name is accepted).
    Certified(String),
    /// The client may not ask for reviews, and why.
    Refused(Refusal),
}

/// Why a connection's client may not ask for reviews.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no client certificate was presented; only the API server, with its client certificate, may ask for reviews (--client-ca)")]
    NoCertificate,
    #[error(
        "the client certificate (names: {presented}) carries none of the names accepted (--client-name: {accepted})"
    )]
    Name { presented: String, accepted: String },
    #[error("the client certificate cannot be read: {0}")]
    Unreadable(String),
}

/// Decides what a connection's client proved. `presented` is the end-entity
/// certificate the TLS handshake verified against the client CA (rustls
/// refuses the handshake for any other), or none.
pub fn caller(policy: &ClientPolicy, presented: Option<&[u8]>) -> Caller {
    let names = match policy {
        ClientPolicy::Anyone => return Caller::Anyone,
        ClientPolicy::Certified { names } => names,
    };
    let Some(der) = presented else { return Caller::Refused(Refusal::NoCertificate) };
    let carried = match certificate_names(der) {
        Ok(n) => n,
        Err(e) => return Caller::Refused(Refusal::Unreadable(e)),
    };
    if names.is_empty() {
        return Caller::Certified(carried.into_iter().next().unwrap_or_default());
    }
    match carried.iter().find(|c| names.iter().any(|n| n.eq_ignore_ascii_case(c))) {
        Some(n) => Caller::Certified(n.clone()),
        None => Caller::Refused(Refusal::Name {
            presented: if carried.is_empty() { "none".into() } else { carried.join(", ") },
            accepted: names.join(", "),
        }),
    }
}

/// A certificate's subject common names, then the DNS names among its
/// subject alternative names.
fn certificate_names(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_cert::der::asn1::{ObjectIdentifier, PrintableStringRef, Utf8StringRef};
    use x509_cert::der::Decode as _;
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;
    const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    for atv in cert.tbs_certificate.subject.0.iter().flat_map(|rdn| rdn.0.iter()) {
        if atv.oid == COMMON_NAME {
            if let Ok(s) = atv.value.decode_as::<Utf8StringRef<'_>>() {
                names.push(s.as_str().to_string());
            } else if let Ok(s) = atv.value.decode_as::<PrintableStringRef<'_>>() {
                names.push(s.as_str().to_string());
            }
        }
    }
    let san = cert.tbs_certificate.get::<SubjectAltName>().map_err(|e| e.to_string())?;
    for name in san.map(|(_, s)| s.0).unwrap_or_default() {
        if let GeneralName::DnsName(d) = name {
            names.push(d.as_str().to_string());
        }
    }
    Ok(names)
}

/// A certificate, key or CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {why}")]
    Read { path: String, why: String },
    #[error("{path}: {why}")]
    Invalid { path: String, why: String },
}

/// What one listener serves TLS with, and who may ask on it.
#[derive(Clone)]
pub struct ListenerTls {
    pub config: RustlsConfig,
    pub clients: ClientPolicy,
    /// Changes when another client CA is loaded: the connections open then
    /// were authenticated by the one before, and are closed so that their
    /// clients authenticate again.
    pub client_ca_loads: watch::Receiver<u64>,
}

/// The serving certificate and the client CA, as loaded from their files,
/// for the two kinds of listener: the webhook's (asks for client
/// certificates when client authentication is on) and the metrics one
/// (never does). Cheap to clone; reloads reach every clone.
#[derive(Clone)]
pub struct ServingTls {
    inner: Arc<Inner>,
}

struct Inner {
    cert: PathBuf,
    key: PathBuf,
    client: Option<ClientAuth>,
    webhook: RustlsConfig,
    open: RustlsConfig,
    /// The files' contents when last loaded (cert, key, client CA).
    loaded: Mutex<[Option<Vec<u8>>; 3]>,
    /// How many times another client CA was loaded.
    client_ca_loads: watch::Sender<u64>,
}

impl ServingTls {
    /// Loads the serving certificate and key, and the client CA when client
    /// authentication is asked for.
    pub async fn load(cert: &Path, key: &Path, client: Option<ClientAuth>) -> Result<ServingTls, TlsError> {
        let files = read_all(cert, key, client.as_ref().map(|c| c.ca.as_path())).await;
        let (webhook, open) = configs(cert, key, client.as_ref().map(|c| c.ca.as_path()), &files)?;
        let files = files.map(Result::ok);
        Ok(ServingTls {
            inner: Arc::new(Inner {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                client,
                webhook: RustlsConfig::from_config(webhook),
                open: RustlsConfig::from_config(open),
                loaded: Mutex::new(files),
                client_ca_loads: watch::Sender::new(0),
            }),
        })
    }

    /// Who may ask for reviews on the webhook's listener.
    pub fn client_policy(&self) -> ClientPolicy {
        match &self.inner.client {
            None => ClientPolicy::Anyone,
            Some(c) => ClientPolicy::Certified { names: c.names.clone() },
        }
    }

    /// The webhook's listener: asks for client certificates when client
    /// authentication is on.
    pub fn webhook(&self) -> ListenerTls {
        ListenerTls {
            config: self.inner.webhook.clone(),
            clients: self.client_policy(),
            client_ca_loads: self.inner.client_ca_loads.subscribe(),
        }
    }

    /// A listener that never asks for a client certificate.
    pub fn open(&self) -> ListenerTls {
        ListenerTls {
            config: self.inner.open.clone(),
            clients: ClientPolicy::Anyone,
            client_ca_loads: watch::channel(0).1,
        }
    }

    /// Loads the files again if any changed since they were last loaded. A
    /// change that does not load (a key that does not match, a CA file
    /// without a certificate) is reported once and the configuration in
    /// force stays.
    pub async fn reload_if_changed(&self) {
        let i = &self.inner;
        let ca = i.client.as_ref().map(|c| c.ca.as_path());
        let files = read_all(&i.cert, &i.key, ca).await;
        // A file being replaced may be missing for a moment: wait for it.
        if files.iter().any(Result::is_err) {
            return;
        }
        let ca_changed = {
            let now = files.clone().map(Result::ok);
            let mut last = i.loaded.lock().unwrap_or_else(|e| e.into_inner());
            if *last == now {
                return;
            }
            let ca_changed = last[2] != now[2];
            *last = now;
            ca_changed
        };
        match configs(&i.cert, &i.key, ca, &files) {
            Ok((webhook, open)) => {
                i.webhook.reload_from_config(webhook);
                i.open.reload_from_config(open);
                tracing::info!(client_ca = ?ca.map(Path::display), "serving certificate and client CA reloaded");
                if ca_changed {
                    i.client_ca_loads.send_modify(|n| *n += 1);
                }
            }
            Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the certificate and client CA in force"),
        }
    }
}

/// A file's content, or why it cannot be read.
type File = Result<Vec<u8>, String>;

/// The certificate, key and client CA files (without a client CA, nothing
/// in its place).
async fn read_all(cert: &Path, key: &Path, ca: Option<&Path>) -> [File; 3] {
    let read = |p: &Path| {
        let p = p.to_path_buf();
        async move { tokio::fs::read(&p).await.map_err(|e| e.to_string()) }
    };
    [
        read(cert).await,
        read(key).await,
        match ca {
            Some(ca) => read(ca).await,
            None => Ok(Vec::new()),
        },
    ]
}

/// The two server configurations (webhook, open) from the files' contents.
fn configs(
    cert: &Path,
    key: &Path,
    ca: Option<&Path>,
    files: &[File; 3],
) -> Result<(Arc<ServerConfig>, Arc<ServerConfig>), TlsError> {
    let text = |path: &Path, content: &File| {
        content.clone().map_err(|why| TlsError::Read { path: path.display().to_string(), why })
    };
    let invalid = |path: &Path, why: String| TlsError::Invalid { path: path.display().to_string(), why };
    let cert_pem = text(cert, &files[0])?;
    let key_pem = text(key, &files[1])?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid(cert, "no certificate in it".into()));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| invalid(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = || {
        ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(cert, e.to_string()))
    };
    let finish = |b: rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>| {
        let mut c = b.with_single_cert(chain.clone(), private.clone_key()).map_err(|e| invalid(key, e.to_string()))?;
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok::<_, TlsError>(Arc::new(c))
    };
    let open = finish(builder()?.with_no_client_auth())?;
    let webhook = match ca {
        None => open.clone(),
        Some(ca) => {
            let pem = text(ca, &files[2])?;
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&pem) {
                roots.add(c.map_err(|e| invalid(ca, e.to_string()))?).map_err(|e| invalid(ca, e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(invalid(ca, "no CA certificate in it".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                // Probes and scrapers present none; the review routes refuse them.
                .allow_unauthenticated()
                .build()
                .map_err(|e| invalid(ca, e.to_string()))?;
            finish(builder()?.with_client_cert_verifier(verifier))?
        }
    };
    Ok((webhook, open))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>, dns: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn who_may_ask_for_reviews() {
        let certified =
            |names: &[&str]| ClientPolicy::Certified { names: names.iter().map(|n| n.to_string()).collect() };
        let apiserver = cert(Some("kube-apiserver"), &[]);
        let by_san = cert(Some("someone"), &["apiserver.example.com"]);
        let alice = cert(Some("alice"), &[]);
        let nameless = cert(None, &[]);
        let evil = cert(Some("kube-apiserver-evil"), &[]);
        let refused_name = |presented: &str, accepted: &str| {
            Caller::Refused(Refusal::Name { presented: presented.into(), accepted: accepted.into() })
        };
        // (case, policy, certificate presented, caller)
        let rows: Vec<(&str, ClientPolicy, Option<&[u8]>, Caller)> = vec![
            ("off, no certificate", ClientPolicy::Anyone, None, Caller::Anyone),
            ("off, a certificate", ClientPolicy::Anyone, Some(&alice), Caller::Anyone),
            ("on, no certificate", certified(&[]), None, Caller::Refused(Refusal::NoCertificate)),
            ("on, any name", certified(&[]), Some(&alice), Caller::Certified("alice".into())),
            ("on, any name, none carried", certified(&[]), Some(&nameless), Caller::Certified(String::new())),
            ("by CN", certified(&["kube-apiserver"]), Some(&apiserver), Caller::Certified("kube-apiserver".into())),
            (
                "by DNS SAN",
                certified(&["apiserver.example.com"]),
                Some(&by_san),
                Caller::Certified("apiserver.example.com".into()),
            ),
            (
                "DNS names are case-blind",
                certified(&["APIServer.example.com"]),
                Some(&by_san),
                Caller::Certified("apiserver.example.com".into()),
            ),
            ("another name", certified(&["kube-apiserver"]), Some(&alice), refused_name("alice", "kube-apiserver")),
            ("no name at all", certified(&["kube-apiserver"]), Some(&nameless), refused_name("none", "kube-apiserver")),
            ("names, no certificate", certified(&["kube-apiserver"]), None, Caller::Refused(Refusal::NoCertificate)),
            (
                "a prefix is not the name",
                certified(&["kube-apiserver"]),
                Some(&evil),
                refused_name("kube-apiserver-evil", "kube-apiserver"),
            ),
        ];
        for (case, policy, presented, want) in rows {
            assert_eq!(caller(&policy, presented), want, "{case}");
        }
        assert!(matches!(caller(&certified(&[]), Some(b"junk")), Caller::Refused(Refusal::Unreadable(_))));
    }

    fn ca_pem(name: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        p.self_signed(&key).unwrap().pem()
    }

    #[tokio::test]
    async fn a_client_ca_that_does_not_load_leaves_the_one_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        let (crt, pk, ca) = (dir.path().join("tls.crt"), dir.path().join("tls.key"), dir.path().join("ca.crt"));
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&pk, key.serialize_pem()).unwrap();
        std::fs::write(&ca, "").unwrap();
        let client = ClientAuth { ca: ca.clone(), names: vec![] };
        assert!(ServingTls::load(&crt, &pk, Some(client.clone())).await.is_err(), "an empty CA file refuses to start");
        std::fs::write(&ca, ca_pem("first")).unwrap();
        let tls = ServingTls::load(&crt, &pk, Some(client)).await.unwrap();
        let listener = tls.webhook();
        let in_force = listener.config.get_inner();
        // (case, what the CA file is changed to, a new configuration and connections re-authenticated)
        let rows: Vec<(&str, Option<String>, bool)> = vec![
            ("unchanged", None, false),
            ("not a certificate", Some("not a certificate".into()), false),
            ("no certificate at all", Some(String::new()), false),
            ("another CA", Some(ca_pem("second")), true),
        ];
        let mut generation = *listener.client_ca_loads.borrow();
        let mut before = in_force;
        for (case, content, loads) in rows {
            if let Some(c) = content {
                std::fs::write(&ca, c).unwrap();
            }
            tls.reload_if_changed().await;
            let now = listener.config.get_inner();
            assert_eq!(!Arc::ptr_eq(&before, &now), loads, "{case}: configuration replaced");
            assert_eq!(*listener.client_ca_loads.borrow() != generation, loads, "{case}: connections re-authenticated");
            generation = *listener.client_ca_loads.borrow();
            before = now;
        }
    }
}
