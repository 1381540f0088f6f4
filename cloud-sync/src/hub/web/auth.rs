//! Admin accounts and sessions for the hub's dashboard: argon2id password hashes, session
//! cookies whose ids are stored only as SHA-256 hashes, a CSRF token per session, and a login
//! rate limiter per client address and per user name.
//!
//! Accounts are documents of kind [`USER_KIND`] keyed by user name; sessions are documents of
//! kind [`SESSION_KIND`] keyed by the hex SHA-256 of the random 32-byte session id (a stolen
//! store dump does not yield usable cookies). There is no default account: the first admin is
//! created on the hub's machine with `hub user add NAME` ([`add_user`]).
//!
//! The limiter lives in the memory of one hub process: with several replicas behind a load
//! balancer each counts on its own, which multiplies the allowed guesses by the replica count
//! and no more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use argon2::Params;
use serde::{Deserialize, Serialize};

pub use crate::webkit::auth::{
    CredentialError, LimiterConfig, LoginLimiter, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS,
    constant_time_eq, password_weakness, user_key,
};
use crate::webkit::auth::{hash_password, random_hex, sha256_hex, verify};

use crate::hub::store::{HubStore, HubStoreError};

/// Document kind of admin accounts (key: the user name).
pub const USER_KIND: &str = "admin_user";
/// Document kind of sessions (key: hex SHA-256 of the session id).
pub const SESSION_KIND: &str = "admin_session";
/// The session cookie's name.
pub const COOKIE: &str = "roomgate_session";
/// How long a session lasts after login.
pub const SESSION_LIFETIME_MS: i64 = 12 * 60 * 60 * 1000;

/// Why an account or session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("an admin named '{0}' already exists")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] HubStoreError),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("{kind} record '{key}' is unreadable: {reason}")]
    Corrupt {
        kind: &'static str,
        key: String,
        reason: String,
    },
}

/// An admin account as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredUser {
    name: String,
    /// The PHC string of the argon2id hash (algorithm, parameters and salt included).
    password: String,
    created_ms: i64,
}

/// A session as stored (under the hash of its id).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSession {
    user: String,
    csrf: String,
    created_ms: i64,
    expires_ms: i64,
}

/// A signed-in admin's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// The token every form of this session carries; POSTs without it are refused.
    pub csrf: String,
    pub expires_ms: i64,
}

/// A new session: the cookie value goes to the browser, nothing else keeps it.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub cookie_value: String,
    pub session: Session,
}

/// Creates an admin account. Refuses a bad name, an existing name, and an empty or weak
/// password, saying why.
pub async fn add_user(
    store: &HubStore,
    name: &str,
    password: &str,
    now_ms: i64,
) -> Result<(), AuthError> {
    add_user_with(store, name, password, now_ms, None).await
}

/// [`add_user`] with explicit argon2 parameters (tests use cheap ones; `None`: the defaults).
pub async fn add_user_with(
    store: &HubStore,
    name: &str,
    password: &str,
    now_ms: i64,
    params: Option<Params>,
) -> Result<(), AuthError> {
    let key = user_key(name)?;
    if let Some(why) = password_weakness(&key, password) {
        return Err(CredentialError::WeakPassword(why).into());
    }
    if store.doc(USER_KIND, &key).await?.is_some() {
        return Err(AuthError::Exists(key));
    }
    let password = password.to_owned();
    let phc = tokio::task::spawn_blocking(move || hash_password(&password, params.as_ref()))
        .await
        .map_err(|e| AuthError::Hash(e.to_string()))??;
    let user = StoredUser {
        name: key.clone(),
        password: phc,
        created_ms: now_ms,
    };
    let value = serde_json::to_value(&user).map_err(|e| AuthError::Hash(e.to_string()))?;
    store.put_doc(USER_KIND, &key, &value).await?;
    Ok(())
}

/// Whether any admin account exists (the login page explains how to create the first).
pub async fn has_users(store: &HubStore) -> Result<bool, AuthError> {
    Ok(!store.docs(USER_KIND).await?.is_empty())
}

/// The store key of a session id (the cookie value).
fn session_key(cookie_value: &str) -> String {
    sha256_hex(cookie_value)
}

/// The value of the session cookie in a `Cookie` header, if it has the right shape.
pub fn session_cookie(header: Option<&str>) -> Option<&str> {
    crate::webkit::auth::cookie_value(header, COOKIE)
}

/// The `Set-Cookie` value for a new session.
pub fn session_set_cookie(value: &str) -> String {
    format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age={}",
        SESSION_LIFETIME_MS / 1000
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Secure; Path=/; Max-Age=0")
}

/// What the login side has done, for health pages and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthCounts {
    pub logins: u64,
    pub failures: u64,
    /// Attempts refused because the address or user name was locked.
    pub refused_locked: u64,
    /// Times an address or user name became locked.
    pub lockouts: u64,
    /// POSTs refused for a missing or wrong CSRF token or a foreign origin.
    pub csrf_refused: u64,
    pub logouts: u64,
}

/// How a login attempt ended.
#[derive(Debug)]
pub enum LoginOutcome {
    SignedIn(NewSession),
    /// Wrong user name or password (the same answer for both).
    Refused,
    /// Too many failures: refused without checking, until this time.
    Locked {
        until_ms: i64,
    },
}

/// Settings of the dashboard's login.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub limiter: LimiterConfig,
}

/// The login side of the dashboard: the limiter and counters of one hub process.
#[derive(Debug)]
pub struct Auth {
    limiter: Mutex<LoginLimiter>,
    logins: AtomicU64,
    failures: AtomicU64,
    refused_locked: AtomicU64,
    lockouts: AtomicU64,
    csrf_refused: AtomicU64,
    logouts: AtomicU64,
    /// Verified against when the user does not exist, so both cases take as long.
    dummy_hash: OnceLock<String>,
}

impl Auth {
    pub fn new(cfg: AuthConfig) -> Auth {
        Auth {
            limiter: Mutex::new(LoginLimiter::new(cfg.limiter)),
            logins: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            refused_locked: AtomicU64::new(0),
            lockouts: AtomicU64::new(0),
            csrf_refused: AtomicU64::new(0),
            logouts: AtomicU64::new(0),
            dummy_hash: OnceLock::new(),
        }
    }

    pub fn counts(&self) -> AuthCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AuthCounts {
            logins: get(&self.logins),
            failures: get(&self.failures),
            refused_locked: get(&self.refused_locked),
            lockouts: get(&self.lockouts),
            csrf_refused: get(&self.csrf_refused),
            logouts: get(&self.logouts),
        }
    }

    /// Counts a POST refused for its CSRF token or origin.
    pub fn note_csrf_refused(&self) {
        self.csrf_refused.fetch_add(1, Ordering::Relaxed);
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, LoginLimiter> {
        self.limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks a login and, when it is right, opens a session. `addr` is the client's address.
    pub async fn login(
        &self,
        store: &HubStore,
        addr: &str,
        name: &str,
        password: &str,
        now_ms: i64,
    ) -> Result<LoginOutcome, AuthError> {
        // Any name counts for the limiter, existing or not, so locks reveal nothing.
        let limiter_name: String = name.trim().to_ascii_lowercase().chars().take(64).collect();
        if let Err(until_ms) = self.limiter().check(now_ms, addr, &limiter_name) {
            self.refused_locked.fetch_add(1, Ordering::Relaxed);
            return Ok(LoginOutcome::Locked { until_ms });
        }
        let stored = match user_key(name) {
            Ok(key) => match store.doc(USER_KIND, &key).await? {
                Some(v) => Some(serde_json::from_value::<StoredUser>(v).map_err(|e| {
                    AuthError::Corrupt {
                        kind: USER_KIND,
                        key: key.clone(),
                        reason: e.to_string(),
                    }
                })?),
                None => None,
            },
            Err(_) => None,
        };
        let phc = match &stored {
            Some(u) => u.password.clone(),
            None => self.dummy_hash()?,
        };
        let pw = password
            .chars()
            .take(MAX_PASSWORD_BYTES)
            .collect::<String>();
        let matches = tokio::task::spawn_blocking(move || verify(&pw, &phc))
            .await
            .unwrap_or(false);
        let user = match stored {
            Some(u) if matches => u,
            _ => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if self
                    .limiter()
                    .failure(now_ms, addr, &limiter_name)
                    .is_some()
                {
                    self.lockouts.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(LoginOutcome::Refused);
            }
        };
        self.limiter().success(addr, &limiter_name);
        let new = open_session(store, &user.name, now_ms).await?;
        self.logins.fetch_add(1, Ordering::Relaxed);
        Ok(LoginOutcome::SignedIn(new))
    }

    fn dummy_hash(&self) -> Result<String, AuthError> {
        if let Some(h) = self.dummy_hash.get() {
            return Ok(h.clone());
        }
        let h = hash_password(&random_hex(16)?, None)?;
        Ok(self.dummy_hash.get_or_init(|| h).clone())
    }

    /// Ends a session (logout).
    pub async fn logout(&self, store: &HubStore, cookie_value: &str) -> Result<(), AuthError> {
        store
            .delete_doc(SESSION_KIND, &session_key(cookie_value))
            .await?;
        self.logouts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Stores a new session for `user` and removes expired ones.
async fn open_session(store: &HubStore, user: &str, now_ms: i64) -> Result<NewSession, AuthError> {
    for (key, value) in store.docs(SESSION_KIND).await? {
        let expired = value
            .get("expires_ms")
            .and_then(serde_json::Value::as_i64)
            .is_none_or(|t| t <= now_ms);
        if expired {
            store.delete_doc(SESSION_KIND, &key).await?;
        }
    }
    let cookie_value = random_hex(32)?;
    let stored = StoredSession {
        user: user.to_owned(),
        csrf: random_hex(32)?,
        created_ms: now_ms,
        expires_ms: now_ms + SESSION_LIFETIME_MS,
    };
    let value = serde_json::to_value(&stored).map_err(|e| AuthError::Hash(e.to_string()))?;
    store
        .put_doc(SESSION_KIND, &session_key(&cookie_value), &value)
        .await?;
    Ok(NewSession {
        cookie_value,
        session: Session {
            user: stored.user,
            csrf: stored.csrf,
            expires_ms: stored.expires_ms,
        },
    })
}

/// The live session a cookie value names, if any (expired ones are removed; a session of a
/// deleted account is void).
pub async fn session(
    store: &HubStore,
    cookie_value: &str,
    now_ms: i64,
) -> Result<Option<Session>, AuthError> {
    let key = session_key(cookie_value);
    let Some(value) = store.doc(SESSION_KIND, &key).await? else {
        return Ok(None);
    };
    let Ok(s) = serde_json::from_value::<StoredSession>(value) else {
        store.delete_doc(SESSION_KIND, &key).await?;
        return Ok(None);
    };
    if s.expires_ms <= now_ms {
        store.delete_doc(SESSION_KIND, &key).await?;
        return Ok(None);
    }
    if store.doc(USER_KIND, &s.user).await?.is_none() {
        return Ok(None);
    }
    Ok(Some(Session {
        user: s.user,
        csrf: s.csrf,
        expires_ms: s.expires_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Params {
        Params::new(1024, 1, 1, None).expect("params")
    }

    fn store() -> (tempfile::TempDir, HubStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = HubStore::open_embedded(dir.path()).expect("store");
        (dir, store)
    }

    #[test]
    fn cookies_are_parsed_strictly_and_set_with_safe_attributes() {
        let v = "a".repeat(64);
        let header = format!("theme=dark; {COOKIE}={v}; x=y");
        assert_eq!(session_cookie(Some(&header)), Some(v.as_str()));
        assert_eq!(session_cookie(Some(&format!("{COOKIE}=short"))), None);
        assert_eq!(session_cookie(None), None);
        let set = session_set_cookie(&v);
        for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(set.contains(attr), "{set}");
        }
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }

    #[tokio::test]
    async fn accounts_sessions_and_logout() {
        let (_dir, store) = store();
        let auth = Auth::new(AuthConfig::default());
        assert!(!has_users(&store).await.expect("users"));
        let err = add_user(&store, "ada", "short", 0).await.expect_err("weak");
        assert_eq!(
            err.to_string(),
            "password refused: it has 5 characters; use at least 12"
        );
        add_user_with(&store, "Ada", "correct horse battery", 0, Some(cheap()))
            .await
            .expect("add");
        assert!(has_users(&store).await.expect("users"));
        let err = add_user_with(&store, "ada", "another good phrase", 0, Some(cheap()))
            .await
            .expect_err("exists");
        assert_eq!(err.to_string(), "an admin named 'ada' already exists");
        // The stored hash is argon2id and does not contain the password.
        let doc = store
            .doc(USER_KIND, "ada")
            .await
            .expect("doc")
            .expect("user");
        let phc = doc["password"].as_str().expect("hash");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(!doc.to_string().contains("horse"));

        let wrong = auth
            .login(&store, "127.0.0.1", "ada", "wrong password!", 10)
            .await
            .expect("login");
        assert!(matches!(wrong, LoginOutcome::Refused));
        let unknown = auth
            .login(&store, "127.0.0.1", "nobody", "whatever at all", 10)
            .await
            .expect("login");
        assert!(matches!(unknown, LoginOutcome::Refused));
        let LoginOutcome::SignedIn(new) = auth
            .login(&store, "127.0.0.1", " ADA ", "correct horse battery", 20)
            .await
            .expect("login")
        else {
            panic!("the right password signs in");
        };
        assert_eq!(new.cookie_value.len(), 64);
        assert_eq!(new.session.user, "ada");
        assert_eq!(new.session.expires_ms, 20 + SESSION_LIFETIME_MS);
        // Only the hash of the session id is stored.
        let sessions = store.docs(SESSION_KIND).await.expect("sessions");
        assert_eq!(sessions.len(), 1);
        assert_ne!(sessions[0].0, new.cookie_value);
        assert!(!sessions[0].1.to_string().contains(&new.cookie_value));
        let s = session(&store, &new.cookie_value, 30)
            .await
            .expect("session")
            .expect("live");
        assert_eq!(s, new.session);
        // Expired: gone, and removed.
        assert_eq!(
            session(&store, &new.cookie_value, 20 + SESSION_LIFETIME_MS)
                .await
                .expect("session"),
            None
        );
        assert!(store.docs(SESSION_KIND).await.expect("docs").is_empty());
        // Logout removes it.
        let LoginOutcome::SignedIn(again) = auth
            .login(&store, "127.0.0.1", "ada", "correct horse battery", 40)
            .await
            .expect("login")
        else {
            panic!("signs in again");
        };
        auth.logout(&store, &again.cookie_value)
            .await
            .expect("logout");
        assert_eq!(
            session(&store, &again.cookie_value, 41).await.expect("s"),
            None
        );
        let c = auth.counts();
        assert_eq!((c.logins, c.failures, c.logouts), (2, 2, 1));
    }

    #[tokio::test]
    async fn a_locked_login_is_refused_even_with_the_right_password() {
        let (_dir, store) = store();
        let auth = Auth::new(AuthConfig::default());
        add_user_with(&store, "ada", "correct horse battery", 0, Some(cheap()))
            .await
            .expect("add");
        for _ in 0..5 {
            let o = auth
                .login(&store, "10.1.1.1", "ada", "not the password", 100)
                .await
                .expect("login");
            assert!(matches!(o, LoginOutcome::Refused));
        }
        let o = auth
            .login(&store, "10.1.1.1", "ada", "correct horse battery", 101)
            .await
            .expect("login");
        assert!(matches!(o, LoginOutcome::Locked { until_ms } if until_ms == 100 + 60_000));
        let o = auth
            .login(
                &store,
                "10.1.1.1",
                "ada",
                "correct horse battery",
                100 + 60_000,
            )
            .await
            .expect("login");
        assert!(matches!(o, LoginOutcome::SignedIn(_)));
        let c = auth.counts();
        assert_eq!((c.failures, c.lockouts, c.refused_locked), (5, 1, 1));
    }
}
