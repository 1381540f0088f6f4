//! Who may use the gateway's web side: accounts with roles, the first-start setup code,
//! sessions, API and panel tokens, the login limiter, and the audit log.
//!
//! - There is no default password. While no account exists, the gateway keeps a one-time
//!   setup code in `<data>/setup-code` (mode 0600) and logs it; the first visitor of `/setup`
//!   who has it creates the installer account, and the file is removed.
//! - Passwords are argon2id hashes (`cloud_sync::webkit::auth`). Sessions, tokens and the setup
//!   code are random 256-bit (60-bit for the code) secrets; only their SHA-256 is stored, so a
//!   copy of the store yields nothing usable.
//! - Roles: an **installer** configures everything; an **operator** views, runs scenes and
//!   manages local bookings. Tokens carry a scope: the API with a role (integrations), metrics
//!   only (Prometheus), one room's door panel, or the lobby display.
//! - Every change of configuration or access is written to the audit log (`Store::append_audit`,
//!   kept 13 months) with who, when, from where and what.
//!
//! Time comes from the gateway's clock (`now_ms` arguments), so expiry is tested by advancing it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::Params;
use cloud_sync::webkit::auth::{
    CredentialError, LimiterConfig, LoginLimiter, MAX_PASSWORD_BYTES, constant_time_eq,
    hash_password, password_weakness, random_hex, sha256_hex, user_key, verify,
};
use serde::{Deserialize, Serialize};

use crate::store::{AuditRecord, Store, StoreError};

/// The session cookie.
pub const SESSION_COOKIE: &str = "rg_session";
/// The door panel's token cookie (set on the first visit with `?token=`).
pub const PANEL_COOKIE: &str = "rg_panel";
/// A session lasts this long after login.
pub const SESSION_LIFETIME_MS: i64 = 12 * 60 * 60 * 1000;
/// A session unused for this long ends.
pub const SESSION_IDLE_MS: i64 = 2 * 60 * 60 * 1000;
/// The setup code's file in the data directory.
pub const SETUP_CODE_FILE: &str = "setup-code";

const ACCOUNT: &str = "account";
const SESSION: &str = "session";
const TOKEN: &str = "token";

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Views, runs scenes, manages local bookings.
    Operator,
    /// Everything: devices, rooms, scenes, policies, settings, accounts, backups.
    Installer,
}

impl Role {
    pub fn key(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Installer => "installer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s.trim() {
            "operator" => Some(Role::Operator),
            "installer" => Some(Role::Installer),
            _ => None,
        }
    }
}

/// What a token opens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// The JSON API with a role (sent as `Authorization: Bearer`).
    Api { role: Role },
    /// `GET /metrics` only.
    Metrics,
    /// One room's door panel.
    Panel { room: String },
    /// The lobby display (every room, read only).
    Display,
}

impl Scope {
    /// Short words for lists and the audit log.
    pub fn describe(&self) -> String {
        match self {
            Scope::Api { role } => format!("API ({})", role.key()),
            Scope::Metrics => "metrics".into(),
            Scope::Panel { room } => format!("door panel of {room}"),
            Scope::Display => "lobby display".into(),
        }
    }
}

/// Why an account, token or session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("an account named '{0}' already exists")]
    Exists(String),
    #[error("there is no account named '{0}'")]
    NoAccount(String),
    #[error("the last installer account cannot be removed or demoted")]
    LastInstaller,
    #[error("the passwords do not match")]
    Mismatch,
    #[error("the setup code is wrong")]
    WrongSetupCode,
    #[error("setup is already done: sign in with an account")]
    SetupDone,
    #[error("too many attempts: try again in {0} s")]
    Locked(i64),
    #[error("a label must be 1 to 80 characters")]
    BadLabel,
    #[error("there is no token '{0}'")]
    NoToken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the setup code file {path}: {source}")]
    SetupFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredAccount {
    name: String,
    role: Role,
    /// PHC string of the argon2id hash.
    password: String,
    created_ms: i64,
    created_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSession {
    user: String,
    csrf: String,
    created_ms: i64,
    last_seen_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredToken {
    /// The first 12 hex digits of the secret's hash: how lists and revocation name it.
    id: String,
    label: String,
    scope: Scope,
    created_ms: i64,
    created_by: String,
}

/// An account as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountInfo {
    pub name: String,
    pub role: Role,
    pub created_ms: i64,
    pub created_by: String,
}

/// A token as the console lists it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub label: String,
    pub scope: Scope,
    pub created_ms: i64,
    pub created_by: String,
}

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A signed-in account; state changes need the session's CSRF token.
    Session {
        user: String,
        role: Role,
        csrf: String,
    },
    /// A bearer or panel token (no ambient credential: no CSRF token needed).
    Token {
        id: String,
        label: String,
        scope: Scope,
    },
}

impl Caller {
    /// The name that goes into the audit log.
    pub fn who(&self) -> String {
        match self {
            Caller::Session { user, .. } => user.clone(),
            Caller::Token { label, .. } => format!("token:{label}"),
        }
    }

    /// The role this caller acts with on the console and the API, if any.
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Session { role, .. } => Some(*role),
            Caller::Token {
                scope: Scope::Api { role },
                ..
            } => Some(*role),
            Caller::Token { .. } => None,
        }
    }

    /// Whether this caller may use `room`'s door panel.
    pub fn may_use_panel(&self, room: &str) -> bool {
        match self {
            Caller::Session { .. } => true,
            Caller::Token { scope, .. } => match scope {
                Scope::Api { .. } => true,
                Scope::Panel { room: r } => r == room,
                Scope::Metrics | Scope::Display => false,
            },
        }
    }

    /// Whether this caller may see the lobby display.
    pub fn may_see_display(&self) -> bool {
        match self {
            Caller::Session { .. } => true,
            Caller::Token { scope, .. } => !matches!(scope, Scope::Metrics | Scope::Panel { .. }),
        }
    }

    /// Whether this caller may scrape `/metrics`.
    pub fn may_scrape(&self) -> bool {
        match self {
            Caller::Session { .. } => true,
            Caller::Token { scope, .. } => matches!(scope, Scope::Metrics | Scope::Api { .. }),
        }
    }
}

/// A new session: the cookie value goes to the browser and nowhere else.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub cookie_value: String,
    pub user: String,
    pub role: Role,
}

/// How a login ended.
#[derive(Debug)]
pub enum LoginOutcome {
    SignedIn(NewSession),
    /// Wrong name or password (one answer for both).
    Refused,
    /// Too many failures from this address or for this name.
    Locked {
        until_ms: i64,
    },
}

/// What the login side has done (for `/metrics` and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AuthCounts {
    pub logins: u64,
    pub failures: u64,
    pub refused_locked: u64,
    pub lockouts: u64,
    pub csrf_refused: u64,
    pub unauthenticated: u64,
    pub forbidden: u64,
}

/// Settings of the console's security.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub limiter: LimiterConfig,
    /// argon2 parameters for new hashes (`None`: the OWASP defaults; tests pass cheap ones).
    pub argon: Option<Params>,
}

/// The console's accounts, sessions and tokens over the gateway's store, with the login
/// limiter and counters of this process.
pub struct Accounts {
    store: Arc<Store>,
    setup_path: PathBuf,
    cfg: AuthConfig,
    limiter: Mutex<LoginLimiter>,
    /// The setup code while no account exists (`None` once setup is done).
    setup_code: Mutex<Option<String>>,
    logins: AtomicU64,
    failures: AtomicU64,
    refused_locked: AtomicU64,
    lockouts: AtomicU64,
    csrf_refused: AtomicU64,
    unauthenticated: AtomicU64,
    forbidden: AtomicU64,
    dummy_hash: OnceLock<String>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

/// The alphabet of setup codes: no 0/O, 1/I/L to misread from a console screen.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

fn new_setup_code() -> Result<String, AuthError> {
    let hex = random_hex(12)?;
    let mut out = String::new();
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let byte = std::str::from_utf8(pair)
            .ok()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(|| AuthError::Internal("random hex".into()))?;
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(char::from(
            CODE_ALPHABET[usize::from(byte) % CODE_ALPHABET.len()],
        ));
    }
    Ok(out)
}

/// The code as typed: upper case, separators and spaces ignored.
fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn encode<T: Serialize>(v: &T) -> Result<serde_json::Value, AuthError> {
    serde_json::to_value(v).map_err(|e| AuthError::Internal(e.to_string()))
}

fn decode<T: for<'de> Deserialize<'de>>(
    kind: &str,
    key: &str,
    v: serde_json::Value,
) -> Result<T, AuthError> {
    serde_json::from_value(v).map_err(|e| {
        AuthError::Store(StoreError::Corrupt {
            table: "console",
            key: format!("{kind}/{key}"),
            reason: e.to_string(),
        })
    })
}

impl Accounts {
    /// The console's security over `store`. While no account exists, a setup code is made (or
    /// the one from a previous start reused) and written to `<data>/setup-code` (mode 0600).
    pub fn open(store: Arc<Store>, data: &Path, cfg: AuthConfig) -> Result<Accounts, AuthError> {
        let accounts = Accounts {
            store,
            setup_path: data.join(SETUP_CODE_FILE),
            limiter: Mutex::new(LoginLimiter::new(cfg.limiter)),
            cfg,
            setup_code: Mutex::new(None),
            logins: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            refused_locked: AtomicU64::new(0),
            lockouts: AtomicU64::new(0),
            csrf_refused: AtomicU64::new(0),
            unauthenticated: AtomicU64::new(0),
            forbidden: AtomicU64::new(0),
            dummy_hash: OnceLock::new(),
        };
        if accounts.store.console_all(ACCOUNT)?.is_empty() {
            let code = match std::fs::read_to_string(&accounts.setup_path) {
                Ok(text) if normalize_code(&text).len() == 12 => text.trim().to_owned(),
                _ => {
                    let code = new_setup_code()?;
                    write_private(&accounts.setup_path, &format!("{code}\n")).map_err(
                        |source| AuthError::SetupFile {
                            path: accounts.setup_path.clone(),
                            source,
                        },
                    )?;
                    code
                }
            };
            *accounts.lock_code() = Some(code);
        } else if accounts.setup_path.exists() {
            // Setup is done (a restored store, say): the old code must not linger.
            let _ = std::fs::remove_file(&accounts.setup_path);
        }
        Ok(accounts)
    }

    fn lock_code(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.setup_code
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, LoginLimiter> {
        self.limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The setup code while setup is pending (for the start-up log line).
    pub fn setup_code(&self) -> Option<String> {
        self.lock_code().clone()
    }

    /// Where the setup code is written.
    pub fn setup_path(&self) -> &Path {
        &self.setup_path
    }

    /// Whether the first account is still to be made.
    pub fn setup_pending(&self) -> bool {
        self.lock_code().is_some()
    }

    pub fn counts(&self) -> AuthCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AuthCounts {
            logins: get(&self.logins),
            failures: get(&self.failures),
            refused_locked: get(&self.refused_locked),
            lockouts: get(&self.lockouts),
            csrf_refused: get(&self.csrf_refused),
            unauthenticated: get(&self.unauthenticated),
            forbidden: get(&self.forbidden),
        }
    }

    pub fn note_csrf_refused(&self) {
        self.csrf_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn note_unauthenticated(&self) {
        self.unauthenticated.fetch_add(1, Ordering::Relaxed);
    }

    pub fn note_forbidden(&self) {
        self.forbidden.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes an audit record; a store failure is logged, never loses the caller's change.
    pub fn audit(
        &self,
        now_ms: i64,
        who: &str,
        from: &str,
        action: &str,
        target: &str,
        detail: &str,
    ) {
        let rec = AuditRecord {
            at_ms: now_ms,
            who: who.to_owned(),
            from: from.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            detail: detail.to_owned(),
        };
        if let Err(e) = self.store.append_audit(&rec) {
            tracing::error!("audit log: {e}; the record was: {rec:?}");
        }
    }

    /// Audit records from `since_ms`, newest first.
    pub fn audit_log(&self, since_ms: i64, limit: usize) -> Result<Vec<AuditRecord>, AuthError> {
        Ok(self.store.audit(since_ms, limit)?)
    }

    /// Completes the first-start setup: with the right code, creates the installer account
    /// and signs it in. Attempts count against the login limiter (as name `setup`).
    pub fn complete_setup(
        &self,
        now_ms: i64,
        addr: &str,
        code: &str,
        name: &str,
        password: &str,
        repeat: &str,
    ) -> Result<NewSession, AuthError> {
        let expected = self.lock_code().clone().ok_or(AuthError::SetupDone)?;
        if let Err(until) = self.limiter().check(now_ms, addr, "setup") {
            self.refused_locked.fetch_add(1, Ordering::Relaxed);
            return Err(AuthError::Locked((until - now_ms + 999) / 1000));
        }
        if !constant_time_eq(&normalize_code(code), &normalize_code(&expected)) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            if self.limiter().failure(now_ms, addr, "setup").is_some() {
                self.lockouts.fetch_add(1, Ordering::Relaxed);
            }
            self.audit(
                now_ms,
                "setup",
                addr,
                "setup.failed",
                "",
                "wrong setup code",
            );
            return Err(AuthError::WrongSetupCode);
        }
        if password != repeat {
            return Err(AuthError::Mismatch);
        }
        self.add_account_unchecked(now_ms, "setup", name, Role::Installer, password)?;
        *self.lock_code() = None;
        if let Err(e) = std::fs::remove_file(&self.setup_path) {
            tracing::warn!("removing {}: {e}", self.setup_path.display());
        }
        let key = user_key(name)?;
        self.audit(
            now_ms,
            "setup",
            addr,
            "setup.done",
            &key,
            "first installer account created",
        );
        self.open_session(now_ms, &key, Role::Installer)
    }

    fn add_account_unchecked(
        &self,
        now_ms: i64,
        by: &str,
        name: &str,
        role: Role,
        password: &str,
    ) -> Result<AccountInfo, AuthError> {
        let key = user_key(name)?;
        if let Some(why) = password_weakness(&key, password) {
            return Err(CredentialError::WeakPassword(why).into());
        }
        if self.store.console_get(ACCOUNT, &key)?.is_some() {
            return Err(AuthError::Exists(key));
        }
        let phc = hash_password(password, self.cfg.argon.as_ref())?;
        let stored = StoredAccount {
            name: key.clone(),
            role,
            password: phc,
            created_ms: now_ms,
            created_by: by.to_owned(),
        };
        self.store
            .console_write(&[(ACCOUNT, &key, &encode(&stored)?)], &[])?;
        Ok(AccountInfo {
            name: key,
            role,
            created_ms: now_ms,
            created_by: by.to_owned(),
        })
    }

    /// Creates an account (an installer's action; audited). The arguments are the form's
    /// fields and who sent it from where.
    #[allow(clippy::too_many_arguments)]
    pub fn add_account(
        &self,
        now_ms: i64,
        by: &Caller,
        from: &str,
        name: &str,
        role: Role,
        password: &str,
        repeat: &str,
    ) -> Result<AccountInfo, AuthError> {
        if password != repeat {
            return Err(AuthError::Mismatch);
        }
        let info = self.add_account_unchecked(now_ms, &by.who(), name, role, password)?;
        *self.lock_code() = None;
        self.audit(
            now_ms,
            &by.who(),
            from,
            "account.add",
            &info.name,
            role.key(),
        );
        Ok(info)
    }

    /// Creates an account from the gateway's own command line (the store of a stopped gateway;
    /// audited as `local command line`). Setup, if pending, is then done.
    pub fn add_local(
        &self,
        now_ms: i64,
        name: &str,
        role: Role,
        password: &str,
    ) -> Result<AccountInfo, AuthError> {
        let info =
            self.add_account_unchecked(now_ms, "local command line", name, role, password)?;
        *self.lock_code() = None;
        let _ = std::fs::remove_file(&self.setup_path);
        self.audit(
            now_ms,
            "local command line",
            "",
            "account.add",
            &info.name,
            role.key(),
        );
        Ok(info)
    }

    /// Every account, by name.
    pub fn accounts(&self) -> Result<Vec<AccountInfo>, AuthError> {
        self.store
            .console_all(ACCOUNT)?
            .into_iter()
            .map(|(k, v)| {
                let a: StoredAccount = decode(ACCOUNT, &k, v)?;
                Ok(AccountInfo {
                    name: a.name,
                    role: a.role,
                    created_ms: a.created_ms,
                    created_by: a.created_by,
                })
            })
            .collect()
    }

    /// Removes an account and its sessions; the last installer stays.
    pub fn remove_account(
        &self,
        now_ms: i64,
        by: &Caller,
        from: &str,
        name: &str,
    ) -> Result<(), AuthError> {
        let key = user_key(name)?;
        let all = self.accounts()?;
        let target = all
            .iter()
            .find(|a| a.name == key)
            .ok_or_else(|| AuthError::NoAccount(key.clone()))?;
        let installers = all.iter().filter(|a| a.role == Role::Installer).count();
        if target.role == Role::Installer && installers <= 1 {
            return Err(AuthError::LastInstaller);
        }
        let sessions: Vec<String> = self
            .store
            .console_all(SESSION)?
            .into_iter()
            .filter(|(_, v)| v.get("user").and_then(|u| u.as_str()) == Some(key.as_str()))
            .map(|(k, _)| k)
            .collect();
        let mut deletes: Vec<(&str, &str)> = vec![(ACCOUNT, key.as_str())];
        deletes.extend(sessions.iter().map(|k| (SESSION, k.as_str())));
        self.store.console_write(&[], &deletes)?;
        self.audit(now_ms, &by.who(), from, "account.remove", &key, "");
        Ok(())
    }

    /// Sets an account's password (the account itself, or an installer); its other sessions end.
    pub fn set_password(
        &self,
        now_ms: i64,
        by: &Caller,
        from: &str,
        name: &str,
        password: &str,
        repeat: &str,
    ) -> Result<(), AuthError> {
        if password != repeat {
            return Err(AuthError::Mismatch);
        }
        let key = user_key(name)?;
        let v = self
            .store
            .console_get(ACCOUNT, &key)?
            .ok_or_else(|| AuthError::NoAccount(key.clone()))?;
        let mut a: StoredAccount = decode(ACCOUNT, &key, v)?;
        if let Some(why) = password_weakness(&key, password) {
            return Err(CredentialError::WeakPassword(why).into());
        }
        a.password = hash_password(password, self.cfg.argon.as_ref())?;
        let keep = match by {
            Caller::Session { user, csrf, .. } if *user == key => Some(csrf.clone()),
            _ => None,
        };
        let sessions: Vec<String> = self
            .store
            .console_all(SESSION)?
            .into_iter()
            .filter(|(_, v)| {
                v.get("user").and_then(|u| u.as_str()) == Some(key.as_str())
                    && keep.as_deref() != v.get("csrf").and_then(|c| c.as_str())
            })
            .map(|(k, _)| k)
            .collect();
        let deletes: Vec<(&str, &str)> = sessions.iter().map(|k| (SESSION, k.as_str())).collect();
        self.store
            .console_write(&[(ACCOUNT, &key, &encode(&a)?)], &deletes)?;
        self.audit(now_ms, &by.who(), from, "account.password", &key, "");
        Ok(())
    }

    /// Whether `password` is `name`'s current password, asked before an account changes its
    /// own password. Failures count against the login limiter, as a login's do.
    pub fn check_password(
        &self,
        now_ms: i64,
        addr: &str,
        name: &str,
        password: &str,
    ) -> Result<bool, AuthError> {
        let key = user_key(name)?;
        if let Err(until_ms) = self.limiter().check(now_ms, addr, &key) {
            self.refused_locked.fetch_add(1, Ordering::Relaxed);
            return Err(AuthError::Locked((until_ms - now_ms + 999) / 1000));
        }
        let v = self
            .store
            .console_get(ACCOUNT, &key)?
            .ok_or_else(|| AuthError::NoAccount(key.clone()))?;
        let a: StoredAccount = decode(ACCOUNT, &key, v)?;
        let pw: String = password.chars().take(MAX_PASSWORD_BYTES).collect();
        if verify(&pw, &a.password) {
            self.limiter().success(addr, &key);
            return Ok(true);
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        if self.limiter().failure(now_ms, addr, &key).is_some() {
            self.lockouts.fetch_add(1, Ordering::Relaxed);
        }
        Ok(false)
    }

    /// Checks a login and opens a session when it is right.
    pub fn login(
        &self,
        now_ms: i64,
        addr: &str,
        name: &str,
        password: &str,
    ) -> Result<LoginOutcome, AuthError> {
        let limiter_name: String = name.trim().to_ascii_lowercase().chars().take(64).collect();
        if let Err(until_ms) = self.limiter().check(now_ms, addr, &limiter_name) {
            self.refused_locked.fetch_add(1, Ordering::Relaxed);
            return Ok(LoginOutcome::Locked { until_ms });
        }
        let stored = match user_key(name) {
            Ok(key) => match self.store.console_get(ACCOUNT, &key)? {
                Some(v) => Some(decode::<StoredAccount>(ACCOUNT, &key, v)?),
                None => None,
            },
            Err(_) => None,
        };
        let phc = match &stored {
            Some(a) => a.password.clone(),
            None => self.dummy_hash()?,
        };
        let pw: String = password.chars().take(MAX_PASSWORD_BYTES).collect();
        let account = match stored {
            Some(a) if verify(&pw, &phc) => a,
            _ => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                // Who tried which name from where (bounded by the limiter: attempts while
                // locked are refused above, unrecorded).
                self.audit(
                    now_ms,
                    &limiter_name,
                    addr,
                    "login.failed",
                    &limiter_name,
                    "wrong user name or password",
                );
                if let Some(until) = self.limiter().failure(now_ms, addr, &limiter_name) {
                    self.lockouts.fetch_add(1, Ordering::Relaxed);
                    self.audit(
                        now_ms,
                        &limiter_name,
                        addr,
                        "login.locked",
                        &limiter_name,
                        &format!(
                            "locked for {} s after repeated failures",
                            (until - now_ms) / 1000
                        ),
                    );
                }
                return Ok(LoginOutcome::Refused);
            }
        };
        self.limiter().success(addr, &limiter_name);
        let new = self.open_session(now_ms, &account.name, account.role)?;
        self.logins.fetch_add(1, Ordering::Relaxed);
        self.audit(now_ms, &account.name, addr, "login", &account.name, "");
        Ok(LoginOutcome::SignedIn(new))
    }

    fn dummy_hash(&self) -> Result<String, AuthError> {
        if let Some(h) = self.dummy_hash.get() {
            return Ok(h.clone());
        }
        let h = hash_password(&random_hex(16)?, self.cfg.argon.as_ref())?;
        Ok(self.dummy_hash.get_or_init(|| h).clone())
    }

    fn open_session(&self, now_ms: i64, user: &str, role: Role) -> Result<NewSession, AuthError> {
        let expired: Vec<String> = self
            .store
            .console_all(SESSION)?
            .into_iter()
            .filter(|(_, v)| {
                let created = v.get("created_ms").and_then(serde_json::Value::as_i64);
                let seen = v.get("last_seen_ms").and_then(serde_json::Value::as_i64);
                !matches!((created, seen), (Some(c), Some(s)) if live(now_ms, c, s))
            })
            .map(|(k, _)| k)
            .collect();
        let cookie_value = random_hex(32)?;
        let stored = StoredSession {
            user: user.to_owned(),
            csrf: random_hex(32)?,
            created_ms: now_ms,
            last_seen_ms: now_ms,
        };
        let key = sha256_hex(&cookie_value);
        let deletes: Vec<(&str, &str)> = expired.iter().map(|k| (SESSION, k.as_str())).collect();
        self.store
            .console_write(&[(SESSION, &key, &encode(&stored)?)], &deletes)?;
        Ok(NewSession {
            cookie_value,
            user: user.to_owned(),
            role,
        })
    }

    /// The caller a session cookie names, if the session is live and its account exists.
    pub fn session(&self, now_ms: i64, cookie_value: &str) -> Result<Option<Caller>, AuthError> {
        let key = sha256_hex(cookie_value);
        let Some(v) = self.store.console_get(SESSION, &key)? else {
            return Ok(None);
        };
        let Ok(mut s) = serde_json::from_value::<StoredSession>(v) else {
            self.store.console_write(&[], &[(SESSION, &key)])?;
            return Ok(None);
        };
        if !live(now_ms, s.created_ms, s.last_seen_ms) {
            self.store.console_write(&[], &[(SESSION, &key)])?;
            return Ok(None);
        }
        let Some(account) = self.store.console_get(ACCOUNT, &s.user)? else {
            return Ok(None);
        };
        let account: StoredAccount = decode(ACCOUNT, &s.user, account)?;
        // Sliding idle timeout, written at most once a minute.
        if now_ms - s.last_seen_ms > 60_000 {
            s.last_seen_ms = now_ms;
            self.store
                .console_write(&[(SESSION, &key, &encode(&s)?)], &[])?;
        }
        Ok(Some(Caller::Session {
            user: s.user,
            role: account.role,
            csrf: s.csrf,
        }))
    }

    /// Ends a session.
    pub fn logout(&self, now_ms: i64, from: &str, cookie_value: &str) -> Result<(), AuthError> {
        let key = sha256_hex(cookie_value);
        if let Some(v) = self.store.console_get(SESSION, &key)? {
            let user = v
                .get("user")
                .and_then(|u| u.as_str())
                .unwrap_or("")
                .to_owned();
            self.store.console_write(&[], &[(SESSION, &key)])?;
            self.audit(now_ms, &user, from, "logout", &user, "");
        }
        Ok(())
    }

    /// Creates a token; the secret is returned once and never stored.
    pub fn create_token(
        &self,
        now_ms: i64,
        by: &str,
        from: &str,
        label: &str,
        scope: Scope,
    ) -> Result<(String, TokenInfo), AuthError> {
        let label = label.trim();
        if label.is_empty() || label.chars().count() > 80 {
            return Err(AuthError::BadLabel);
        }
        let secret = random_hex(32)?;
        let hash = sha256_hex(&secret);
        let stored = StoredToken {
            id: hash[..12].to_owned(),
            label: label.to_owned(),
            scope,
            created_ms: now_ms,
            created_by: by.to_owned(),
        };
        self.store
            .console_write(&[(TOKEN, &hash, &encode(&stored)?)], &[])?;
        self.audit(
            now_ms,
            by,
            from,
            "token.create",
            &stored.id,
            &format!("{}: {}", stored.label, stored.scope.describe()),
        );
        Ok((secret, token_info(stored)))
    }

    /// Every token, by label.
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, AuthError> {
        let mut out: Vec<TokenInfo> = self
            .store
            .console_all(TOKEN)?
            .into_iter()
            .map(|(k, v)| decode::<StoredToken>(TOKEN, &k, v).map(token_info))
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| a.label.cmp(&b.label).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Revokes a token by its id.
    pub fn revoke_token(
        &self,
        now_ms: i64,
        by: &Caller,
        from: &str,
        id: &str,
    ) -> Result<(), AuthError> {
        let found = self
            .store
            .console_all(TOKEN)?
            .into_iter()
            .find(|(k, _)| k.starts_with(id) && id.len() >= 12);
        let Some((hash, v)) = found else {
            return Err(AuthError::NoToken(id.to_owned()));
        };
        let t: StoredToken = decode(TOKEN, &hash, v)?;
        self.store.console_write(&[], &[(TOKEN, &hash)])?;
        self.audit(
            now_ms,
            &by.who(),
            from,
            "token.revoke",
            &t.id,
            &format!("{}: {}", t.label, t.scope.describe()),
        );
        Ok(())
    }

    /// The caller a token secret names, if any.
    pub fn token(&self, secret: &str) -> Result<Option<Caller>, AuthError> {
        let secret = secret.trim();
        if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let hash = sha256_hex(&secret.to_ascii_lowercase());
        let Some(v) = self.store.console_get(TOKEN, &hash)? else {
            return Ok(None);
        };
        let t: StoredToken = decode(TOKEN, &hash, v)?;
        Ok(Some(Caller::Token {
            id: t.id,
            label: t.label,
            scope: t.scope,
        }))
    }
}

fn token_info(t: StoredToken) -> TokenInfo {
    TokenInfo {
        id: t.id,
        label: t.label,
        scope: t.scope,
        created_ms: t.created_ms,
        created_by: t.created_by,
    }
}

fn live(now_ms: i64, created_ms: i64, last_seen_ms: i64) -> bool {
    now_ms < created_ms + SESSION_LIFETIME_MS && now_ms < last_seen_ms + SESSION_IDLE_MS
}

/// Writes `text` to a new file readable by its owner only (replacing any older one).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> AuthConfig {
        AuthConfig {
            argon: Some(Params::new(1024, 1, 1, None).expect("params")),
            ..AuthConfig::default()
        }
    }

    fn open() -> (tempfile::TempDir, Accounts) {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let a = Accounts::open(store, dir.path(), cheap()).expect("accounts");
        (dir, a)
    }

    #[test]
    fn setup_code_makes_the_first_installer_once() {
        let (dir, a) = open();
        let code = a.setup_code().expect("pending");
        assert_eq!(normalize_code(&code).len(), 12);
        let path = dir.path().join(SETUP_CODE_FILE);
        let meta = std::fs::metadata(&path).expect("code file");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let err = a
            .complete_setup(
                0,
                "10.0.0.9",
                "AAAA-BBBB-CCCC",
                "ada",
                "correct horse battery",
                "correct horse battery",
            )
            .expect_err("wrong code");
        assert!(matches!(err, AuthError::WrongSetupCode));
        let err = a
            .complete_setup(
                0,
                "10.0.0.9",
                &code.to_lowercase(),
                "ada",
                "correct horse battery",
                "correct horse batterx",
            )
            .expect_err("mismatch");
        assert!(matches!(err, AuthError::Mismatch));
        let s = a
            .complete_setup(
                0,
                "10.0.0.9",
                &code.to_lowercase(),
                "Ada",
                "correct horse battery",
                "correct horse battery",
            )
            .expect("setup");
        assert_eq!((s.user.as_str(), s.role), ("ada", Role::Installer));
        assert!(!path.exists(), "the code file is removed");
        assert!(!a.setup_pending());
        let err = a
            .complete_setup(
                1,
                "10.0.0.9",
                &code,
                "eve",
                "correct horse battery",
                "correct horse battery",
            )
            .expect_err("done");
        assert!(matches!(err, AuthError::SetupDone));
        let log = a.audit_log(0, 10).expect("audit");
        let actions: Vec<&str> = log.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["setup.done", "setup.failed"]);
    }

    #[test]
    fn the_setup_code_is_guarded_by_the_limiter() {
        let (_dir, a) = open();
        let code = a.setup_code().expect("pending");
        for _ in 0..5 {
            let _ = a.complete_setup(0, "10.0.0.9", "WRONG-CODE-0000", "ada", "x", "x");
        }
        let err = a
            .complete_setup(
                1,
                "10.0.0.9",
                &code,
                "ada",
                "correct horse battery",
                "correct horse battery",
            )
            .expect_err("locked");
        assert!(matches!(err, AuthError::Locked(60)), "{err}");
    }

    #[test]
    fn sessions_roles_tokens_and_expiry() {
        let (_dir, a) = open();
        let code = a.setup_code().expect("pending");
        let s = a
            .complete_setup(
                0,
                "ip",
                &code,
                "ada",
                "correct horse battery",
                "correct horse battery",
            )
            .expect("setup");
        let ada = a.session(1, &s.cookie_value).expect("s").expect("live");
        assert_eq!(ada.role(), Some(Role::Installer));
        a.add_account(
            2,
            &ada,
            "ip",
            "olga",
            Role::Operator,
            "another long phrase",
            "another long phrase",
        )
        .expect("operator");
        assert!(matches!(
            a.add_account(
                2,
                &ada,
                "ip",
                "olga",
                Role::Operator,
                "another long phrase",
                "another long phrase"
            ),
            Err(AuthError::Exists(_))
        ));
        let LoginOutcome::SignedIn(o) = a
            .login(3, "ip", "OLGA", "another long phrase")
            .expect("login")
        else {
            panic!("olga signs in");
        };
        assert_eq!(o.role, Role::Operator);
        assert!(matches!(
            a.login(3, "ip", "olga", "wrong").expect("login"),
            LoginOutcome::Refused
        ));
        // Idle sessions end; active ones slide until the lifetime.
        assert!(
            a.session(3 + SESSION_IDLE_MS, &o.cookie_value)
                .expect("s")
                .is_none()
        );
        // Tokens: only the hash is stored, scopes decide.
        let (secret, info) = a
            .create_token(
                4,
                "ada",
                "ip",
                "tablet r101",
                Scope::Panel {
                    room: "r101".into(),
                },
            )
            .expect("token");
        let t = a.token(&secret).expect("t").expect("known");
        assert!(t.may_use_panel("r101") && !t.may_use_panel("r102"));
        assert!(!t.may_scrape() && t.role().is_none());
        assert!(a.token(&"0".repeat(64)).expect("t").is_none());
        a.revoke_token(5, &ada, "ip", &info.id).expect("revoke");
        assert!(a.token(&secret).expect("t").is_none());
        // The last installer stays.
        assert!(matches!(
            a.remove_account(6, &ada, "ip", "ada"),
            Err(AuthError::LastInstaller)
        ));
        a.remove_account(6, &ada, "ip", "olga").expect("remove");
        assert!(matches!(
            a.login(7, "ip2", "olga", "another long phrase").expect("l"),
            LoginOutcome::Refused
        ));
        // Nothing secret in the store.
        let dump = format!("{:?}", a.store.console_all(SESSION).expect("all"));
        assert!(!dump.contains(&s.cookie_value));
    }
}
