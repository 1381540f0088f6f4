//! TLS to the broker: a rustls client configuration (ring provider only) from PEM files, and MQTT options.
//!
//! PROTOCOL.md, "Identity and confinement": every gateway presents a client certificate whose
//! Common Name is `{site}/{gateway}`, and checks the broker's certificate against the
//! deployment's CA. The errors here are worded for the person installing a gateway: they name
//! the file that is wrong and what is wrong with it.
//!
//! Only the `ring` crypto provider is compiled in (no aws-lc-rs: it needs cmake and a C
//! toolchain on the build host); the provider is passed explicitly, never installed globally.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// How often the client pings an idle connection; the broker drops it after 1.5 times this.
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The largest MQTT packet sent or accepted. An `EventBatch` is at most 256 KiB (PROTOCOL.md,
/// "Payloads"); a full booking snapshot can be larger. rumqttc's own default is 10 KiB.
pub const MAX_PACKET_BYTES: usize = 1024 * 1024;

/// PEM bytes and where they came from (a path, or a description), for error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    pub origin: String,
    pub bytes: Vec<u8>,
}

impl Pem {
    /// PEM bytes from `origin`, a path or a description such as "the client key".
    pub fn new(origin: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Pem {
        Pem {
            origin: origin.into(),
            bytes: bytes.into(),
        }
    }

    /// Reads a PEM file; `what` says what it should hold ("CA certificate", "client key").
    pub fn read(what: &'static str, path: &Path) -> Result<Pem, TlsError> {
        let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.display().to_string(),
            source,
        })?;
        Ok(Pem::new(path.display().to_string(), bytes))
    }
}

// Never prints the bytes: one of these holds a private key.
impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pem")
            .field("origin", &self.origin)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// The three PEM inputs of a client: the CA that signed the broker's certificate, the client's
/// certificate chain (its own certificate first, then any intermediates) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Pem,
    pub cert_chain: Pem,
    pub key: Pem,
}

impl TlsFiles {
    /// From PEM bytes held in memory; errors call them "the CA certificate" and so on.
    pub fn from_pem(
        ca: impl Into<Vec<u8>>,
        cert_chain: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> TlsFiles {
        TlsFiles {
            ca: Pem::new("the CA certificate", ca),
            cert_chain: Pem::new("the client certificate", cert_chain),
            key: Pem::new("the client key", key),
        }
    }

    /// Reads the three files; errors name the file.
    pub fn read(ca: &Path, cert_chain: &Path, key: &Path) -> Result<TlsFiles, TlsError> {
        Ok(TlsFiles {
            ca: Pem::read("CA certificate", ca)?,
            cert_chain: Pem::read("client certificate", cert_chain)?,
            key: Pem::read("client key", key)?,
        })
    }
}

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{origin} is not valid PEM: {detail}")]
    BadPem { origin: String, detail: String },
    #[error("no certificate found in {origin} (expected a \"BEGIN CERTIFICATE\" block)")]
    NoCertificate { origin: String },
    #[error("no private key found in {origin} (expected a \"BEGIN PRIVATE KEY\" block)")]
    NoKey { origin: String },
    #[error(
        "the private key in {origin} is encrypted; store it decrypted, readable only by the gateway"
    )]
    EncryptedKey { origin: String },
    #[error("the CA certificate in {origin} is not usable: {source}")]
    BadCa {
        origin: String,
        source: rustls::Error,
    },
    #[error("the private key does not match the certificate ({key} does not belong to {cert})")]
    KeyMismatch { cert: String, key: String },
    #[error("the certificate {cert} or key {key} is not usable: {source}")]
    BadClientIdentity {
        cert: String,
        key: String,
        source: rustls::Error,
    },
    #[error("the TLS library refused its configuration: {0}")]
    Provider(rustls::Error),
}

/// The MQTT client id is empty: a persistent session (clean session off) needs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the MQTT client id is empty: a persistent session needs one")]
pub struct EmptyClientId;

/// Parses every certificate of a PEM input, in order; at least one.
pub fn certificates(pem: &Pem) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(&pem.bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(pem, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            origin: pem.origin.clone(),
        });
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) of a PEM input.
pub fn private_key(pem: &Pem) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(&pem.bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) if contains(&pem.bytes, b"ENCRYPTED") => {
            Err(TlsError::EncryptedKey {
                origin: pem.origin.clone(),
            })
        }
        Err(pem::Error::NoItemsFound) => Err(TlsError::NoKey {
            origin: pem.origin.clone(),
        }),
        Err(e) => Err(bad_pem(pem, e)),
    }
}

/// Builds the client configuration: trust only `files.ca` for the broker, present
/// `files.cert_chain` with `files.key`. TLS 1.2 and 1.3, ring provider.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = root_store(&files.ca)?;
    let chain = certificates(&files.cert_chain)?;
    let key = private_key(&files.key)?;
    let config = builder()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|source| match source {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch {
                    cert: files.cert_chain.origin.clone(),
                    key: files.key.origin.clone(),
                }
            }
            source => TlsError::BadClientIdentity {
                cert: files.cert_chain.origin.clone(),
                key: files.key.origin.clone(),
                source,
            },
        })?;
    Ok(Arc::new(config))
}

/// A web server's configuration (the hub's dashboard and API, the gateway's console):
/// present `cert_chain` with `key`, no client certificates, HTTP/2 and HTTP/1.1 by ALPN.
/// TLS 1.2 and 1.3, ring provider.
pub fn server_config(cert_chain: &Pem, key: &Pem) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates(cert_chain)?;
    let private = private_key(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::Provider)?
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .map_err(|source| match source {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch {
                cert: cert_chain.origin.clone(),
                key: key.origin.clone(),
            }
        }
        source => TlsError::BadClientIdentity {
            cert: cert_chain.origin.clone(),
            key: key.origin.clone(),
            source,
        },
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A configuration that checks the broker against `ca` but presents no client certificate.
/// A broker of this protocol refuses it; tools and tests use it to prove that.
pub fn server_auth_only_config(ca: &Pem) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = root_store(ca)?;
    Ok(Arc::new(
        builder()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// MQTT options for this protocol: the given transport, [`KEEP_ALIVE`], packets up to
/// [`MAX_PACKET_BYTES`], and clean session **off**, so the broker keeps the session's
/// subscriptions and queued QoS 1 messages while the client is away (and rumqttc resends its
/// unacknowledged publishes on reconnect). `tls: None` is plain TCP, for lab setups only
/// (`tls = false` in the gateway's configuration).
///
/// `host` is also the name checked against the broker's certificate: a DNS name, or an IP
/// address that the certificate lists.
pub fn mqtt_options(
    client_id: &str,
    host: &str,
    port: u16,
    tls: Option<Arc<ClientConfig>>,
) -> Result<MqttOptions, EmptyClientId> {
    if client_id.is_empty() {
        return Err(EmptyClientId);
    }
    let mut options = MqttOptions::new(client_id, host, port);
    options
        .set_keep_alive(KEEP_ALIVE)
        .set_clean_session(false)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    if let Some(config) = tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    }
    Ok(options)
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, TlsError> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)
}

fn root_store(ca: &Pem) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert).map_err(|source| TlsError::BadCa {
            origin: ca.origin.clone(),
            source,
        })?;
    }
    Ok(roots)
}

fn bad_pem(pem: &Pem, error: pem::Error) -> TlsError {
    let detail = match error {
        pem::Error::MissingSectionEnd { .. } => "a block has no END line (truncated file?)".into(),
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".into(),
        pem::Error::Base64Decode(e) => format!("a block is not valid base64 ({e})"),
        other => other.to_string(),
    };
    TlsError::BadPem {
        origin: pem.origin.clone(),
        detail,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair};

    struct Pki {
        ca_pem: String,
        cert_pem: String,
        key_pem: String,
        other_key_pem: String,
    }

    fn pki() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "site-a/gw-1");
        let cert = params.signed_by(&key, &issuer).unwrap();
        Pki {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            other_key_pem: KeyPair::generate().unwrap().serialize_pem(),
        }
    }

    fn files(p: &Pki) -> TlsFiles {
        TlsFiles::from_pem(p.ca_pem.clone(), p.cert_pem.clone(), p.key_pem.clone())
    }

    #[test]
    fn a_matching_certificate_and_key_build_a_config() {
        let p = pki();
        let config = client_config(&files(&p)).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_in_plain_words() {
        let p = pki();
        let mut f = files(&p);
        f.key = Pem::new("/etc/roomgate/client.key", p.other_key_pem.clone());
        f.cert_chain.origin = "/etc/roomgate/client.crt".into();
        let err = client_config(&f).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the private key does not match the certificate \
             (/etc/roomgate/client.key does not belong to /etc/roomgate/client.crt)"
        );
    }

    #[test]
    fn swapped_files_say_what_is_missing_where() {
        let p = pki();
        // The key where the certificate belongs.
        let mut f = files(&p);
        f.cert_chain = Pem::new("client.crt", p.key_pem.clone());
        let err = client_config(&f).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no certificate found in client.crt"),
            "{err}"
        );
        // The certificate where the key belongs.
        let mut f = files(&p);
        f.key = Pem::new("client.key", p.cert_pem.clone());
        let err = client_config(&f).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no private key found in client.key"),
            "{err}"
        );
        // A key where the CA belongs.
        let mut f = files(&p);
        f.ca = Pem::new("ca.crt", p.key_pem.clone());
        let err = client_config(&f).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no certificate found in ca.crt"),
            "{err}"
        );
        assert!(matches!(
            server_auth_only_config(&Pem::new("ca.crt", "")),
            Err(TlsError::NoCertificate { .. })
        ));
    }

    #[test]
    fn damaged_pem_is_reported_as_such() {
        let p = pki();
        let truncated = &p.cert_pem[..p.cert_pem.len() / 2];
        let mut f = files(&p);
        f.cert_chain = Pem::new("client.crt", truncated);
        let err = client_config(&f).unwrap_err();
        assert!(matches!(err, TlsError::BadPem { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("client.crt is not valid PEM"),
            "{err}"
        );

        let garbled = p.cert_pem.replacen("MII", "M!I", 1);
        f.cert_chain = Pem::new("client.crt", garbled);
        let err = client_config(&f).unwrap_err();
        assert!(matches!(err, TlsError::BadPem { .. }), "{err:?}");
    }

    #[test]
    fn an_encrypted_key_is_named() {
        let p = pki();
        let mut f = files(&p);
        f.key = Pem::new(
            "client.key",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let err = client_config(&f).unwrap_err();
        assert!(matches!(err, TlsError::EncryptedKey { .. }), "{err:?}");
    }

    #[test]
    fn a_ca_that_is_not_a_certificate_is_refused() {
        let p = pki();
        let mut f = files(&p);
        f.ca = Pem::new(
            "ca.crt",
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        );
        let err = client_config(&f).unwrap_err();
        assert!(matches!(err, TlsError::BadCa { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("the CA certificate in ca.crt"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_names_the_path_and_what_it_should_hold() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.crt");
        let err = TlsFiles::read(&missing, &missing, &missing).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot read the CA certificate file "),
            "{text}"
        );
        assert!(text.contains("ca.crt"), "{text}");
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let p = pki();
        let shown = format!("{:?}", files(&p));
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(!shown.contains(&p.key_pem[30..60]), "{shown}");
    }

    #[test]
    fn options_keep_the_session_and_use_the_given_tls() {
        let p = pki();
        let config = client_config(&files(&p)).unwrap();
        let options = mqtt_options("gw-site-a-gw-1", "127.0.0.1", 8883, Some(config)).unwrap();
        assert!(!options.clean_session());
        assert_eq!(options.keep_alive(), KEEP_ALIVE);
        assert_eq!(options.client_id(), "gw-site-a-gw-1");
        assert_eq!(options.broker_address(), ("127.0.0.1".to_owned(), 8883));
        assert!(matches!(
            options.transport(),
            Transport::Tls(TlsConfiguration::Rustls(_))
        ));
        let plain = mqtt_options("lab", "localhost", 1883, None).unwrap();
        assert!(matches!(plain.transport(), Transport::Tcp));
        assert_eq!(
            mqtt_options("", "localhost", 1883, None).unwrap_err(),
            EmptyClientId
        );
    }
}
