//! Calendar feeds: an iCalendar file or URL per room, imported on a schedule into the room's
//! bookings, with each run's result kept for the API.
//!
//! A feed is a `feed` document (room, source, interval); its last result a `feed_status`
//! document. A run fetches the source (a local file, or `http(s)://` with a timeout, a size limit
//! and `ETag` / `If-Modified-Since`), parses it with [`parse_ical`] in the site's zone, expands it
//! over the next [`HORIZON_DAYS`] days and lets [`BookingService::import_feed`] apply the diff
//! against what the feed imported before, in one room transaction. Imported bookings carry
//! `source = "feed:<id>"`; a re-import updates them by their stable ids, never duplicates.
//!
//! A conditional fetch answered `304 Not Modified` skips the import; since the horizon moves
//! with time, a full import is made at least every [`FULL_IMPORT_EVERY`] even when the server
//! says nothing changed.
//!
//! Local files are read only inside the hub's feed directory ([`Fetcher::file_root`]; none:
//! file sources are refused), so an API client cannot make the hub read its other files.
//!
//! HTTPS uses rustls with the ring provider and the system's root certificates
//! ([`Fetcher::with_system_roots`]); a redirect is followed up to [`MAX_REDIRECTS`] times.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use super::bookings::{BookingService, HORIZON_DAYS, RefusedImport, ServiceError, new_id, ts};
use crate::calendar::{IcalLimits, Window, parse_ical};

/// The document kind of feed configurations.
pub const FEED_KIND: &str = "feed";
/// The document kind of feeds' last results.
pub const FEED_STATUS_KIND: &str = "feed_status";
/// Redirects followed per fetch.
pub const MAX_REDIRECTS: usize = 5;
/// A feed is imported in full at least this often, whatever its server's validators say.
pub const FULL_IMPORT_EVERY: Duration = Duration::from_secs(12 * 3600);
/// The shortest interval between runs of one feed.
pub const MIN_INTERVAL_MINUTES: u32 = 5;

const DAY_MS: i64 = 86_400_000;

/// A feed as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedConfig {
    pub id: String,
    pub site: String,
    pub room: String,
    /// An absolute file path (or `file://` URL), or an `http://` / `https://` URL.
    pub source: String,
    /// Minutes between scheduled runs.
    pub interval_minutes: u32,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub created_ms: i64,
}

fn yes() -> bool {
    true
}

/// A problem line of the feed, as the parser reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalformedLine {
    pub line: usize,
    #[serde(default)]
    pub uid: Option<String>,
    pub reason: String,
}

/// The result of a feed's last run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedStatus {
    #[serde(default)]
    pub last_run_ms: Option<i64>,
    /// When the feed was last parsed and applied (not a `304`).
    #[serde(default)]
    pub last_import_ms: Option<i64>,
    #[serde(default)]
    pub ok: bool,
    /// Why the run failed as a whole (nothing was imported).
    #[serde(default)]
    pub error: Option<String>,
    /// The server said the calendar had not changed; nothing was imported.
    #[serde(default)]
    pub not_modified: bool,
    /// Events parsed.
    #[serde(default)]
    pub events: usize,
    #[serde(default)]
    pub created: usize,
    #[serde(default)]
    pub updated: usize,
    #[serde(default)]
    pub cancelled: usize,
    /// Events the hub did not book, with why.
    #[serde(default)]
    pub refused: Vec<RefusedImport>,
    /// Lines the parser could not read, with their line numbers.
    #[serde(default)]
    pub malformed: Vec<MalformedLine>,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub last_modified: Option<String>,
}

/// Where a feed comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Url(Uri),
}

/// Reads a feed source: an absolute path, a `file://` URL, or an `http(s)://` URL.
pub fn parse_source(text: &str) -> Result<Source, String> {
    let text = text.trim();
    if let Some(path) = text.strip_prefix("file://") {
        return parse_source(path);
    }
    if text.starts_with("http://") || text.starts_with("https://") {
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("'{text}' is not a valid URL: {e}"))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("'{text}' has no host"));
        }
        return Ok(Source::Url(uri));
    }
    if text.contains("://") {
        return Err(format!(
            "'{text}': only http://, https:// and file paths are supported"
        ));
    }
    let path = PathBuf::from(text);
    if !path.is_absolute() {
        return Err(format!("'{text}' is not an absolute file path"));
    }
    Ok(Source::File(path))
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bad URL: {0}")]
    BadUrl(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS with {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error("HTTP: {0}")]
    Http(String),
    #[error("{url} answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("the calendar is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    #[error("reading {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a fetch got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    NotModified,
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// The validators of the last fetch, for a conditional request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Fetches calendars over HTTP(S).
#[derive(Debug, Clone)]
pub struct Fetcher {
    tls: Arc<rustls::ClientConfig>,
    /// For one whole fetch, redirects included.
    pub timeout: Duration,
    /// The largest calendar accepted.
    pub max_bytes: usize,
    /// The directory local calendar files must be in; `None` refuses file sources (an API
    /// client must not read the hub's files).
    pub file_root: Option<PathBuf>,
}

impl Fetcher {
    /// Trusting the system's root certificates (unreadable ones are logged and skipped).
    pub fn with_system_roots() -> Result<Fetcher, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("system root certificates: {e}");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if ignored > 0 || added == 0 {
            tracing::warn!("system root certificates: {added} usable, {ignored} ignored");
        }
        Fetcher::with_roots(roots)
    }

    /// Trusting `roots` only.
    pub fn with_roots(roots: rustls::RootCertStore) -> Result<Fetcher, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Fetcher {
            tls: Arc::new(tls),
            timeout: Duration::from_secs(30),
            max_bytes: IcalLimits::default().max_bytes,
            file_root: None,
        })
    }

    /// The real path of a calendar file, if it is inside [`Fetcher::file_root`].
    pub fn check_file(&self, path: &std::path::Path) -> Result<PathBuf, String> {
        let Some(root) = &self.file_root else {
            return Err(
                "calendar files are off on this hub (it has no feed directory); use an http(s) URL"
                    .into(),
            );
        };
        let root = root
            .canonicalize()
            .map_err(|e| format!("the feed directory {}: {e}", root.display()))?;
        let real = path
            .canonicalize()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !real.starts_with(&root) {
            return Err(format!(
                "{} is outside the feed directory {}",
                path.display(),
                root.display()
            ));
        }
        Ok(real)
    }

    /// GETs `url`, following redirects; with `validators`, a conditional request.
    pub async fn fetch(
        &self,
        url: &Uri,
        validators: Option<&Validators>,
    ) -> Result<Fetched, FetchError> {
        tokio::time::timeout(self.timeout, self.follow(url.clone(), validators))
            .await
            .map_err(|_| FetchError::Timeout(self.timeout))?
    }

    async fn follow(
        &self,
        mut uri: Uri,
        validators: Option<&Validators>,
    ) -> Result<Fetched, FetchError> {
        for _ in 0..=MAX_REDIRECTS {
            let response = self.get(&uri, validators).await?;
            let status = response.status();
            if status == StatusCode::NOT_MODIFIED {
                return Ok(Fetched::NotModified);
            }
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| FetchError::Http(format!("{status} without a Location")))?;
                uri = redirect_target(&uri, location)?;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status {
                    url: uri.to_string(),
                    status,
                });
            }
            let text_header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v: &header::HeaderValue| v.to_str().ok())
                    .map(str::to_owned)
            };
            let (etag, last_modified) = (
                text_header(header::ETAG),
                text_header(header::LAST_MODIFIED),
            );
            let limited = http_body_util::Limited::new(response.into_body(), self.max_bytes);
            let body = limited.collect().await.map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge {
                        max: self.max_bytes,
                    }
                } else {
                    FetchError::Http(e.to_string())
                }
            })?;
            return Ok(Fetched::Body {
                bytes: body.to_bytes().to_vec(),
                etag,
                last_modified,
            });
        }
        Err(FetchError::TooManyRedirects)
    }

    async fn get(
        &self,
        uri: &Uri,
        validators: Option<&Validators>,
    ) -> Result<Response<Incoming>, FetchError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(FetchError::BadUrl(format!("{uri}: not http(s)"))),
        };
        let host = uri
            .host()
            .ok_or_else(|| FetchError::BadUrl(format!("{uri}: no host")))?;
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri
            .authority()
            .map_or_else(|| host.to_owned(), |a| a.as_str().to_owned());
        let mut request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, authority)
            .header(header::USER_AGENT, "roomgate-hub")
            .header(header::ACCEPT, "text/calendar, */*;q=0.5");
        if let Some(v) = validators {
            if let Some(etag) = &v.etag {
                request = request.header(header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &v.last_modified {
                request = request.header(header::IF_MODIFIED_SINCE, lm);
            }
        }
        let request = request
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| FetchError::BadUrl(format!("{uri}: {e}")))?;
        let tcp = tokio::net::TcpStream::connect((bare_host, port))
            .await
            .map_err(|source| FetchError::Connect {
                addr: format!("{bare_host}:{port}"),
                source,
            })?;
        if https {
            let name =
                rustls::pki_types::ServerName::try_from(bare_host.to_owned()).map_err(|e| {
                    FetchError::Tls {
                        host: bare_host.to_owned(),
                        reason: e.to_string(),
                    }
                })?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(name, tcp)
                .await
                .map_err(|e| FetchError::Tls {
                    host: bare_host.to_owned(),
                    reason: e.to_string(),
                })?;
            send(TokioIo::new(tls), request).await
        } else {
            send(TokioIo::new(tcp), request).await
        }
    }
}

async fn send<I>(
    io: I,
    request: Request<http_body_util::Empty<Bytes>>,
) -> Result<Response<Incoming>, FetchError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("feed connection: {e}");
        }
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| FetchError::Http(e.to_string()))
}

/// Where a redirect points: an absolute URL, or a path on the same server.
fn redirect_target(from: &Uri, location: &str) -> Result<Uri, FetchError> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location
            .parse()
            .map_err(|e| FetchError::BadUrl(format!("redirect to {location}: {e}")));
    }
    if !location.starts_with('/') {
        return Err(FetchError::BadUrl(format!(
            "redirect to a relative path {location:?} is not supported"
        )));
    }
    let mut parts = from.clone().into_parts();
    parts.path_and_query = Some(
        location
            .parse()
            .map_err(|e| FetchError::BadUrl(format!("redirect to {location}: {e}")))?,
    );
    Uri::from_parts(parts).map_err(|e| FetchError::BadUrl(format!("redirect to {location}: {e}")))
}

/// Reads a local calendar file of at most `max` bytes.
async fn read_file(path: PathBuf, max: usize) -> Result<Vec<u8>, FetchError> {
    let shown = path.display().to_string();
    let read = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, FetchError> {
        let file_error = |source| FetchError::File {
            path: path.display().to_string(),
            source,
        };
        let size = std::fs::metadata(&path).map_err(file_error)?.len();
        if usize::try_from(size).unwrap_or(usize::MAX) > max {
            return Err(FetchError::TooLarge { max });
        }
        std::fs::read(&path).map_err(file_error)
    })
    .await;
    read.unwrap_or_else(|e| {
        Err(FetchError::File {
            path: shown,
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// Why a feed operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("no feed '{0}'")]
    Unknown(String),
}

impl From<super::store::HubStoreError> for FeedError {
    fn from(e: super::store::HubStoreError) -> Self {
        FeedError::Service(ServiceError::Store(e))
    }
}

/// A change to a feed; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct FeedPatch {
    pub source: Option<String>,
    pub interval_minutes: Option<u32>,
    pub enabled: Option<bool>,
}

/// The feeds of the hub: configuration, runs, the schedule. A clone shares everything.
#[derive(Debug, Clone)]
pub struct Feeds {
    bookings: BookingService,
    fetcher: Fetcher,
}

fn invalid(field: &'static str, reason: String) -> FeedError {
    FeedError::Service(ServiceError::Invalid { field, reason })
}

fn check_interval(minutes: u32) -> Result<u32, FeedError> {
    if !(MIN_INTERVAL_MINUTES..=7 * 24 * 60).contains(&minutes) {
        return Err(invalid(
            "interval_minutes",
            format!("must be between {MIN_INTERVAL_MINUTES} and 10080 (a week); got {minutes}"),
        ));
    }
    Ok(minutes)
}

impl Feeds {
    pub fn new(bookings: BookingService, fetcher: Fetcher) -> Feeds {
        Feeds { bookings, fetcher }
    }

    pub fn bookings(&self) -> &BookingService {
        &self.bookings
    }

    /// Every feed with its last result, by id.
    pub async fn list(&self) -> Result<Vec<(FeedConfig, FeedStatus)>, FeedError> {
        let store = self.bookings.store();
        let mut out = Vec::new();
        for (key, doc) in store.docs(FEED_KIND).await? {
            match serde_json::from_value::<FeedConfig>(doc) {
                Ok(config) => {
                    let status = self.status(&config.id).await?;
                    out.push((config, status));
                }
                Err(e) => tracing::warn!("feed document {key} is unreadable: {e}"),
            }
        }
        Ok(out)
    }

    /// A feed and its last result.
    pub async fn get(&self, id: &str) -> Result<(FeedConfig, FeedStatus), FeedError> {
        Ok((self.config(id).await?, self.status(id).await?))
    }

    async fn config(&self, id: &str) -> Result<FeedConfig, FeedError> {
        let doc = self
            .bookings
            .store()
            .doc(FEED_KIND, id)
            .await?
            .ok_or_else(|| FeedError::Unknown(id.to_owned()))?;
        serde_json::from_value(doc).map_err(|e| {
            FeedError::Service(ServiceError::Store(super::store::HubStoreError::Corrupt {
                table: "docs/feed",
                reason: format!("{id}: {e}"),
            }))
        })
    }

    async fn status(&self, id: &str) -> Result<FeedStatus, FeedError> {
        let doc = self.bookings.store().doc(FEED_STATUS_KIND, id).await?;
        Ok(doc
            .and_then(|d| serde_json::from_value(d).ok())
            .unwrap_or_default())
    }

    async fn save(&self, config: &FeedConfig) -> Result<(), FeedError> {
        let doc = serde_json::to_value(config).unwrap_or_default();
        Ok(self
            .bookings
            .store()
            .put_doc(FEED_KIND, &config.id, &doc)
            .await?)
    }

    fn check_source(&self, source: &str) -> Result<(), FeedError> {
        match parse_source(source).map_err(|reason| invalid("source", reason))? {
            Source::File(path) => {
                self.fetcher
                    .check_file(&path)
                    .map_err(|reason| invalid("source", reason))?;
            }
            Source::Url(_) => {}
        }
        Ok(())
    }

    /// Adds a feed for a room (which must exist); it runs at the next scheduler tick.
    pub async fn create(
        &self,
        site: &str,
        room: &str,
        source: &str,
        interval_minutes: u32,
    ) -> Result<FeedConfig, FeedError> {
        self.bookings.room(site, room).await?;
        self.check_source(source)?;
        let config = FeedConfig {
            id: new_id("f")?,
            site: site.to_owned(),
            room: room.to_owned(),
            source: source.trim().to_owned(),
            interval_minutes: check_interval(interval_minutes)?,
            enabled: true,
            created_ms: self.bookings.now_ms(),
        };
        self.save(&config).await?;
        Ok(config)
    }

    /// Changes a feed's source, interval or whether it runs.
    pub async fn update(&self, id: &str, patch: FeedPatch) -> Result<FeedConfig, FeedError> {
        let mut config = self.config(id).await?;
        if let Some(source) = patch.source {
            self.check_source(&source)?;
            config.source = source.trim().to_owned();
        }
        if let Some(minutes) = patch.interval_minutes {
            config.interval_minutes = check_interval(minutes)?;
        }
        if let Some(enabled) = patch.enabled {
            config.enabled = enabled;
        }
        self.save(&config).await?;
        Ok(config)
    }

    /// Removes a feed and its status; the bookings it imported stay.
    pub async fn delete(&self, id: &str) -> Result<(), FeedError> {
        let store = self.bookings.store();
        if !store.delete_doc(FEED_KIND, id).await? {
            return Err(FeedError::Unknown(id.to_owned()));
        }
        store.delete_doc(FEED_STATUS_KIND, id).await?;
        Ok(())
    }

    /// Runs a feed now and stores its result (a failed run is a result too).
    pub async fn run(&self, id: &str) -> Result<FeedStatus, FeedError> {
        let config = self.config(id).await?;
        let previous = self.status(id).await?;
        let now = self.bookings.now_ms();
        let mut status = FeedStatus {
            last_run_ms: Some(now),
            last_import_ms: previous.last_import_ms,
            etag: previous.etag.clone(),
            last_modified: previous.last_modified.clone(),
            ..FeedStatus::default()
        };
        match self.import(&config, &previous, now, &mut status).await {
            Ok(()) => status.ok = true,
            Err(e) => {
                tracing::warn!("feed {id} ({}): {e}", config.source);
                status.error = Some(e);
            }
        }
        let doc = serde_json::to_value(&status).unwrap_or_default();
        self.bookings
            .store()
            .put_doc(FEED_STATUS_KIND, id, &doc)
            .await?;
        Ok(status)
    }

    async fn import(
        &self,
        config: &FeedConfig,
        previous: &FeedStatus,
        now: i64,
        status: &mut FeedStatus,
    ) -> Result<(), String> {
        let room = self
            .bookings
            .room(&config.site, &config.room)
            .await
            .map_err(|e| e.to_string())?;
        let bytes = match parse_source(&config.source)? {
            Source::File(path) => {
                let path = self.fetcher.check_file(&path)?;
                read_file(path, self.fetcher.max_bytes)
                    .await
                    .map_err(|e| e.to_string())?
            }
            Source::Url(url) => {
                let recent = previous.last_import_ms.is_some_and(|t| {
                    now.saturating_sub(t)
                        < i64::try_from(FULL_IMPORT_EVERY.as_millis()).unwrap_or(0)
                });
                let validators = Validators {
                    etag: previous.etag.clone(),
                    last_modified: previous.last_modified.clone(),
                };
                let conditional =
                    recent && (validators.etag.is_some() || validators.last_modified.is_some());
                match self
                    .fetcher
                    .fetch(&url, conditional.then_some(&validators))
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Fetched::NotModified => {
                        status.not_modified = true;
                        status.events = previous.events;
                        return Ok(());
                    }
                    Fetched::Body {
                        bytes,
                        etag,
                        last_modified,
                    } => {
                        status.etag = etag;
                        status.last_modified = last_modified;
                        bytes
                    }
                }
            }
        };
        let text = String::from_utf8(bytes).map_err(|e| {
            format!(
                "the calendar is not UTF-8 text (byte {})",
                e.utf8_error().valid_up_to()
            )
        })?;
        let limits = IcalLimits {
            max_bytes: self.fetcher.max_bytes,
            ..IcalLimits::default()
        };
        let feed =
            parse_ical(&text, &room.zone, jiff::tz::db(), &limits).map_err(|e| e.to_string())?;
        status.events = feed.events.len();
        status.malformed = feed
            .errors
            .iter()
            .map(|e| MalformedLine {
                line: e.line,
                uid: e.uid.clone(),
                reason: e.kind.to_string(),
            })
            .collect();
        let window = Window::new(ts(now), ts(now.saturating_add(HORIZON_DAYS * DAY_MS)));
        let source = format!("feed:{}", config.id);
        let outcome = self
            .bookings
            .import_feed(&room, &source, feed, window)
            .await
            .map_err(|e| e.to_string())?;
        status.created = outcome.created;
        status.updated = outcome.updated;
        status.cancelled = outcome.cancelled;
        status.refused = outcome.refused;
        status.last_import_ms = Some(now);
        Ok(())
    }

    /// Runs every enabled feed whose interval has passed since its last run; returns how many
    /// ran.
    pub async fn run_due(&self) -> Result<usize, FeedError> {
        let now = self.bookings.now_ms();
        let mut ran = 0;
        for (config, status) in self.list().await? {
            if due(&config, &status, now) {
                self.run(&config.id).await?;
                ran += 1;
            }
        }
        Ok(ran)
    }

    /// Checks for due feeds every `tick` (the hub binary starts it).
    pub fn spawn_scheduler(&self, tick: Duration) -> tokio::task::JoinHandle<()> {
        let feeds = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = feeds.run_due().await {
                    tracing::error!("calendar feeds: {e}");
                }
            }
        })
    }
}

/// Whether a feed should run at `now`.
fn due(config: &FeedConfig, status: &FeedStatus, now: i64) -> bool {
    config.enabled
        && status.last_run_ms.is_none_or(|last| {
            now.saturating_sub(last) >= i64::from(config.interval_minutes) * 60_000
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_files_or_http_urls() {
        assert_eq!(
            parse_source("/srv/cal/r1.ics"),
            Ok(Source::File("/srv/cal/r1.ics".into()))
        );
        assert_eq!(
            parse_source("file:///srv/cal/r1.ics"),
            Ok(Source::File("/srv/cal/r1.ics".into()))
        );
        assert!(matches!(
            parse_source("https://cal.example.com/r1.ics"),
            Ok(Source::Url(u)) if u.host() == Some("cal.example.com")
        ));
        assert_eq!(
            parse_source("cal/r1.ics"),
            Err("'cal/r1.ics' is not an absolute file path".into())
        );
        assert_eq!(
            parse_source("ftp://x/y.ics"),
            Err("'ftp://x/y.ics': only http://, https:// and file paths are supported".into())
        );
    }

    #[test]
    fn redirects_resolve_against_the_server() {
        let from: Uri = "http://127.0.0.1:8080/a/b.ics?x=1".parse().expect("uri");
        assert_eq!(
            redirect_target(&from, "/c.ics").expect("path").to_string(),
            "http://127.0.0.1:8080/c.ics"
        );
        assert_eq!(
            redirect_target(&from, "https://other.example/d.ics")
                .expect("absolute")
                .to_string(),
            "https://other.example/d.ics"
        );
        assert!(redirect_target(&from, "c.ics").is_err());
    }

    #[test]
    fn a_feed_is_due_after_its_interval() {
        let config = FeedConfig {
            id: "f-1".into(),
            site: "hq".into(),
            room: "r1".into(),
            source: "/x.ics".into(),
            interval_minutes: 15,
            enabled: true,
            created_ms: 0,
        };
        let mut status = FeedStatus::default();
        assert!(due(&config, &status, 0), "never ran: due");
        status.last_run_ms = Some(1_000_000);
        assert!(!due(&config, &status, 1_000_000 + 14 * 60_000));
        assert!(due(&config, &status, 1_000_000 + 15 * 60_000));
        let off = FeedConfig {
            enabled: false,
            ..config
        };
        assert!(!due(&off, &FeedStatus::default(), 0));
        assert!(check_interval(1).is_err());
        assert!(check_interval(60).is_ok());
    }
}
