//! The console's HTTPS certificate: generated on first start (rcgen, self-signed, for the
//! machine's names and the listen address), or the installer's own, uploaded through the
//! console and used for new connections at once (no restart).
//!
//! Files: `<data>/certs/console.crt` and `console.key` (mode 0600), so backups carry them
//! (`backup.rs` archives `data/certs/`). A generated certificate is replaced by an upload; an
//! uploaded one is never overwritten by generation.
//!
//! Local tools on the box (`gateway backup`) reach the console with [`pinned_client_config`]:
//! they trust exactly the certificate in that file, whatever names it lists.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use cloud_sync::tls::{Pem, TlsError, certificates, private_key};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::Serialize;

/// The certificate's file under the data directory.
pub const CERT_FILE: &str = "certs/console.crt";
/// The private key's file under the data directory.
pub const KEY_FILE: &str = "certs/console.key";

/// Why the console's certificate could not be made, read or replaced.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("generating a certificate: {0}")]
    Generate(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key type is not supported for a web server: {0}")]
    Key(String),
}

/// What the console shows about the certificate in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// SHA-256 of the leaf certificate (DER), as colon-separated hex.
    pub fingerprint: String,
    /// Certificates in the chain.
    pub chain_len: usize,
    /// Whether the gateway generated it (browsers will warn until the installer uploads one).
    pub generated: bool,
}

/// The certificate in use, swappable while serving.
#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    summary: CertSummary,
}

#[derive(Debug)]
struct Resolver(RwLock<Current>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(current.key.clone())
    }
}

/// The console's certificate and the TLS configuration that serves it.
#[derive(Debug, Clone)]
pub struct ConsoleCert {
    data: PathBuf,
    resolver: Arc<Resolver>,
    config: Arc<rustls::ServerConfig>,
}

const GENERATED_MARK: &str = "certs/console.generated";

impl ConsoleCert {
    /// Loads the certificate from the data directory, generating one for `names` (DNS names
    /// and IP addresses) when there is none.
    pub fn load_or_create(data: &Path, names: &[String]) -> Result<ConsoleCert, CertError> {
        let cert_path = data.join(CERT_FILE);
        let key_path = data.join(KEY_FILE);
        if !cert_path.exists() || !key_path.exists() {
            let made = rcgen::generate_simple_self_signed(names.to_vec())
                .map_err(|e| CertError::Generate(e.to_string()))?;
            let cert_pem = made.cert.pem();
            let key_pem = made.signing_key.serialize_pem();
            write_files(data, cert_pem.as_bytes(), key_pem.as_bytes())?;
            write(
                &data.join(GENERATED_MARK),
                names.join("\n").as_bytes(),
                0o644,
            )?;
            tracing::info!(
                "generated a self-signed certificate for the console ({}); upload your own in Settings",
                names.join(", ")
            );
        }
        let cert = Pem::read("the console's certificate", &cert_path)?;
        let key = Pem::read("the console's private key", &key_path)?;
        let generated = data.join(GENERATED_MARK).exists();
        let current = certified(&cert, &key, generated)?;
        let resolver = Arc::new(Resolver(RwLock::new(current)));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ConsoleCert {
            data: data.to_path_buf(),
            resolver,
            config: Arc::new(config),
        })
    }

    /// The TLS configuration to serve with (it follows [`ConsoleCert::install`]).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    pub fn summary(&self) -> CertSummary {
        self.resolver
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .summary
            .clone()
    }

    /// Where the certificate in use is (clients that pin it read it from here).
    pub fn cert_path(&self) -> PathBuf {
        self.data.join(CERT_FILE)
    }

    /// Checks an uploaded certificate chain and key (PEM) belong together, stores them and
    /// serves them to new connections. Nothing changes when they are refused.
    pub fn install(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertSummary, CertError> {
        let cert = Pem::new("the uploaded certificate", cert_pem.to_vec());
        let key = Pem::new("the uploaded private key", key_pem.to_vec());
        // The same checks a server configuration makes (chain parses, key matches).
        cloud_sync::tls::server_config(&cert, &key)?;
        let current = certified(&cert, &key, false)?;
        write_files(&self.data, cert_pem, key_pem)?;
        let _ = std::fs::remove_file(self.data.join(GENERATED_MARK));
        let summary = current.summary.clone();
        *self
            .resolver
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = current;
        Ok(summary)
    }
}

fn certified(cert: &Pem, key: &Pem, generated: bool) -> Result<Current, CertError> {
    let chain = certificates(cert)?;
    let private = private_key(key)?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|e| CertError::Key(e.to_string()))?;
    let fingerprint = chain
        .first()
        .map(|c| {
            ring::digest::digest(&ring::digest::SHA256, c.as_ref())
                .as_ref()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .unwrap_or_default();
    let summary = CertSummary {
        fingerprint,
        chain_len: chain.len(),
        generated,
    };
    Ok(Current {
        key: Arc::new(CertifiedKey::new(chain, signing)),
        summary,
    })
}

fn write_files(data: &Path, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), CertError> {
    write(&data.join(KEY_FILE), key_pem, 0o600)?;
    write(&data.join(CERT_FILE), cert_pem, 0o644)
}

/// Writes a file atomically (temporary file, fsync, rename) with `mode`.
fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let io = |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// A TLS client configuration that trusts exactly one server certificate: the first one in
/// `cert_path` (the console's `<data>/certs/console.crt`), compared byte for byte with the
/// leaf the server presents. Names, issuer and dates are not checked (a generated certificate
/// lists the box's names, an uploaded one the names the site chose); the handshake's
/// signatures are, with ring's algorithms, so only the holder of the key gets through.
pub fn pinned_client_config(cert_path: &Path) -> Result<Arc<rustls::ClientConfig>, CertError> {
    let pem = Pem::read("the console's certificate", cert_path)?;
    let leaf = certificates(&pem)?
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::NoCertificate {
            origin: pem.origin.clone(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedLeaf {
        leaf,
        origin: pem.origin,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // Every connection shows the certificate again (a resumed session would skip the pin).
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// Accepts the one pinned leaf certificate (see [`pinned_client_config`]).
#[derive(Debug)]
struct PinnedLeaf {
    leaf: CertificateDer<'static>,
    /// Where the pinned certificate was read (for the refusal's message).
    origin: String,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedLeaf {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate is not the one in {}",
                self.origin
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The names a generated certificate is for: this machine's host name, `localhost`, the
/// loopback addresses and the listen address when it is a specific one.
pub fn default_names(listen: std::net::SocketAddr) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() && !names.iter().any(|n| n == host) {
            names.insert(0, host.to_owned());
            if !host.contains('.') {
                names.push(format!("{host}.local"));
            }
        }
    }
    let ip = listen.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        names.push(ip.to_string());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_replaced_by_an_upload() {
        let dir = tempfile::tempdir().expect("dir");
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let a = ConsoleCert::load_or_create(dir.path(), &names).expect("generated");
        assert!(a.summary().generated);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second start keeps it.
        let b = ConsoleCert::load_or_create(dir.path(), &names).expect("loaded");
        assert_eq!(a.summary(), b.summary());
        // An upload whose key belongs to another certificate is refused, nothing changes.
        let one = rcgen::generate_simple_self_signed(vec!["gw.example".into()]).expect("one");
        let two = rcgen::generate_simple_self_signed(vec!["gw.example".into()]).expect("two");
        let err = a
            .install(
                one.cert.pem().as_bytes(),
                two.signing_key.serialize_pem().as_bytes(),
            )
            .expect_err("mismatch");
        assert!(err.to_string().contains("does not belong"), "{err}");
        assert_eq!(a.summary(), b.summary());
        let err = a
            .install(b"not a certificate", b"nor a key")
            .expect_err("junk");
        assert!(err.to_string().contains("uploaded certificate"), "{err}");
        // A matching pair is installed and served.
        let s = a
            .install(
                one.cert.pem().as_bytes(),
                one.signing_key.serialize_pem().as_bytes(),
            )
            .expect("installed");
        assert!(!s.generated);
        assert_ne!(s.fingerprint, b.summary().fingerprint);
        let c = ConsoleCert::load_or_create(dir.path(), &names).expect("reloaded");
        assert_eq!(c.summary(), s);
    }

    /// Runs a handshake between the two in memory; the first error either side meets.
    fn handshake(
        mut client: rustls::ClientConnection,
        mut server: rustls::ServerConnection,
    ) -> Result<(), rustls::Error> {
        for _ in 0..20 {
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
            let mut wire = Vec::new();
            client.write_tls(&mut wire).expect("client out");
            server.read_tls(&mut wire.as_slice()).expect("server in");
            server.process_new_packets()?;
            let mut wire = Vec::new();
            server.write_tls(&mut wire).expect("server out");
            client.read_tls(&mut wire.as_slice()).expect("client in");
            client.process_new_packets()?;
        }
        panic!("the handshake did not finish");
    }

    fn connect(
        client: &Arc<rustls::ClientConfig>,
        server: &ConsoleCert,
        name: &str,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_owned()).expect("name");
        handshake(
            rustls::ClientConnection::new(client.clone(), name).expect("client"),
            rustls::ServerConnection::new(server.server_config()).expect("server"),
        )
    }

    #[test]
    fn the_pinned_client_trusts_exactly_the_certificate_in_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let names = vec!["localhost".to_owned()];
        let served = ConsoleCert::load_or_create(dir.path(), &names).expect("generated");
        let pinned = pinned_client_config(&dir.path().join(CERT_FILE)).expect("pinned");
        // Any name: the pin is the certificate itself.
        connect(&pinned, &served, "localhost").expect("the gateway's own certificate");
        connect(&pinned, &served, "10.1.2.3").expect("by address");

        // Another gateway (another certificate) is refused, naming the pinned file.
        let other_dir = tempfile::tempdir().expect("dir");
        let other = ConsoleCert::load_or_create(other_dir.path(), &names).expect("other");
        let err = connect(&pinned, &other, "localhost").expect_err("another certificate");
        assert!(err.to_string().contains("console.crt"), "{err}");

        // An uploaded certificate for the site's own name (not localhost) is trusted once the
        // file holds it.
        let own = rcgen::generate_simple_self_signed(vec!["gw.example".into()]).expect("own");
        served
            .install(
                own.cert.pem().as_bytes(),
                own.signing_key.serialize_pem().as_bytes(),
            )
            .expect("installed");
        connect(&pinned, &served, "localhost").expect_err("the old pin no longer matches");
        let repinned = pinned_client_config(&dir.path().join(CERT_FILE)).expect("pinned");
        connect(&repinned, &served, "127.0.0.1").expect("the uploaded certificate");

        let err = pinned_client_config(&dir.path().join("certs/missing.crt")).expect_err("none");
        assert!(err.to_string().contains("missing.crt"), "{err}");
    }
}
