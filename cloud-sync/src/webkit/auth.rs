//! Credentials for the web sides (the hub's dashboard, the gateway's console): user names,
//! password rules and argon2id hashes, random tokens, constant-time comparison, cookie parsing
//! and the login limiter. Storage of accounts and sessions stays with each side.

use std::collections::HashMap;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use ring::rand::SecureRandom as _;

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest accepted password, in bytes (hashing cost is bounded).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a name, a password or a secret was refused or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("'{0}' is not a valid user name: use 1 to 64 of a-z, 0-9, '.', '_', '-' and '@'")]
    BadName(String),
    #[error("password refused: {0}")]
    WeakPassword(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the operating system gave no randomness: {0}")]
    Random(String),
}

/// Hex SHA-256 of `text` (how session ids and tokens are stored: a copy of the store does not
/// yield usable secrets).
pub fn sha256_hex(text: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref())
}

/// The value of cookie `name` in a `Cookie` header, if it is 64 hex digits (the shape of every
/// secret this module makes with `random_hex(32)`).
pub fn cookie_value<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Normalizes and checks a user name: lower case, 1 to 64 of a-z, 0-9, '.', '_', '-', '@'.
pub fn user_key(name: &str) -> Result<String, CredentialError> {
    let key = name.trim().to_ascii_lowercase();
    let ok = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-@".contains(&b));
    if ok {
        Ok(key)
    } else {
        Err(CredentialError::BadName(name.to_owned()))
    }
}

/// Passwords too common to accept whatever their length.
const COMMON: &[&str] = &[
    "password1234",
    "passwordpassword",
    "123456789012",
    "1234567890123",
    "12345678901234",
    "qwertyuiopasdf",
    "qwertyuiop123",
    "administrator",
    "adminadmin123",
    "roomgateadmin",
    "letmeinletmein",
    "changeme1234",
    "iloveyou1234",
    "welcome12345",
];

/// Why a password is too weak, if it is.
pub fn password_weakness(name: &str, password: &str) -> Option<String> {
    let chars = password.chars().count();
    if password.trim().is_empty() {
        return Some("it is empty".to_owned());
    }
    if chars < MIN_PASSWORD_CHARS {
        return Some(format!(
            "it has {chars} characters; use at least {MIN_PASSWORD_CHARS}"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Some(format!("it is longer than {MAX_PASSWORD_BYTES} bytes"));
    }
    let distinct: std::collections::BTreeSet<char> = password.chars().collect();
    if distinct.len() < 5 {
        return Some("it repeats too few different characters; use at least 5".to_owned());
    }
    let lower = password.to_lowercase();
    let name = name.trim().to_lowercase();
    if !name.is_empty() && lower.contains(&name) {
        return Some("it contains the user name".to_owned());
    }
    if COMMON.contains(&lower.as_str()) {
        return Some("it is a commonly used password".to_owned());
    }
    None
}

/// The hasher for new passwords: argon2id with the crate's default (OWASP) parameters.
fn hasher() -> Argon2<'static> {
    Argon2::default()
}

/// An argon2id PHC hash of `password` with a fresh salt (`params`: `None` for the defaults;
/// tests pass cheap ones).
pub fn hash_password(password: &str, params: Option<&Params>) -> Result<String, CredentialError> {
    let bytes = random_bytes(16)?;
    let salt = SaltString::encode_b64(&bytes).map_err(|e| CredentialError::Hash(e.to_string()))?;
    let argon = match params {
        Some(p) => Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            p.clone(),
        ),
        None => hasher(),
    };
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CredentialError::Hash(e.to_string()))
}

/// Whether `password` matches a stored PHC hash (the parameters come from the hash).
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// `n` bytes from the operating system's random source.
fn random_bytes(n: usize) -> Result<Vec<u8>, CredentialError> {
    let mut buf = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| CredentialError::Random("the system random source failed".to_owned()))?;
    Ok(buf)
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> Result<String, CredentialError> {
    Ok(hex(&random_bytes(n)?))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equality that takes the same time wherever the first difference is.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Settings of the login limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Consecutive failures (per address, and per user name) that lock it.
    pub max_failures: u32,
    /// The first lock; each further one doubles, up to `max_lock_ms`.
    pub first_lock_ms: i64,
    pub max_lock_ms: i64,
    /// A key with no failure for this long is forgotten (its lock count too).
    pub forget_after_ms: i64,
    /// Keys kept per map; the oldest unlocked ones go first.
    pub max_keys: usize,
}

impl Default for LimiterConfig {
    fn default() -> LimiterConfig {
        LimiterConfig {
            max_failures: 5,
            first_lock_ms: 60_000,
            max_lock_ms: 60 * 60_000,
            forget_after_ms: 24 * 60 * 60_000,
            max_keys: 10_000,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Strikes {
    failures: u32,
    lockouts: u32,
    locked_until: i64,
    last_failure: i64,
}

/// Counts failed logins per client address and per user name and locks a key after
/// `max_failures` in a row, for a time that doubles with each lock. Pure: time is an argument.
#[derive(Debug)]
pub struct LoginLimiter {
    cfg: LimiterConfig,
    by_addr: HashMap<String, Strikes>,
    by_user: HashMap<String, Strikes>,
}

impl LoginLimiter {
    pub fn new(cfg: LimiterConfig) -> LoginLimiter {
        LoginLimiter {
            cfg,
            by_addr: HashMap::new(),
            by_user: HashMap::new(),
        }
    }

    /// `Err(until_ms)` when the address or the user name is locked now.
    pub fn check(&mut self, now_ms: i64, addr: &str, user: &str) -> Result<(), i64> {
        let until = [self.by_addr.get(addr), self.by_user.get(user)]
            .into_iter()
            .flatten()
            .map(|s| s.locked_until)
            .filter(|&t| t > now_ms)
            .max();
        match until {
            Some(t) => Err(t),
            None => Ok(()),
        }
    }

    /// Notes a failed login; returns when the address or user name became locked, if so.
    pub fn failure(&mut self, now_ms: i64, addr: &str, user: &str) -> Option<i64> {
        let cfg = self.cfg;
        let mut locked = None;
        for (map, key) in [(&mut self.by_addr, addr), (&mut self.by_user, user)] {
            if !map.contains_key(key) && map.len() >= cfg.max_keys {
                evict(map, now_ms, &cfg);
            }
            let s = map.entry(key.to_owned()).or_default();
            if now_ms - s.last_failure > cfg.forget_after_ms && s.locked_until <= now_ms {
                *s = Strikes::default();
            }
            s.failures += 1;
            s.last_failure = now_ms;
            if s.failures >= cfg.max_failures {
                let factor = 1i64 << s.lockouts.min(20);
                let lock = cfg
                    .first_lock_ms
                    .saturating_mul(factor)
                    .min(cfg.max_lock_ms);
                s.locked_until = now_ms + lock;
                s.lockouts += 1;
                s.failures = 0;
                locked = locked.max(Some(s.locked_until));
            }
        }
        locked
    }

    /// A successful login clears both keys.
    pub fn success(&mut self, addr: &str, user: &str) {
        self.by_addr.remove(addr);
        self.by_user.remove(user);
    }
}

/// Drops forgotten keys, then the oldest unlocked ones until a tenth of the room is free.
fn evict(map: &mut HashMap<String, Strikes>, now_ms: i64, cfg: &LimiterConfig) {
    map.retain(|_, s| s.locked_until > now_ms || now_ms - s.last_failure <= cfg.forget_after_ms);
    if map.len() < cfg.max_keys {
        return;
    }
    let mut unlocked: Vec<(i64, String)> = map
        .iter()
        .filter(|(_, s)| s.locked_until <= now_ms)
        .map(|(k, s)| (s.last_failure, k.clone()))
        .collect();
    unlocked.sort();
    let excess = map.len() + cfg.max_keys / 10 - cfg.max_keys;
    for (_, k) in unlocked.into_iter().take(excess.max(1)) {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        assert_eq!(password_weakness("ada", "").as_deref(), Some("it is empty"));
        assert_eq!(
            password_weakness("ada", "short1!").as_deref(),
            Some("it has 7 characters; use at least 12")
        );
        assert_eq!(
            password_weakness("ada", "aaaaaaaaaaaaaaaa").as_deref(),
            Some("it repeats too few different characters; use at least 5")
        );
        assert_eq!(
            password_weakness("ada", "my-name-is-ADA-ok").as_deref(),
            Some("it contains the user name")
        );
        assert_eq!(
            password_weakness("bob", "Password1234").as_deref(),
            Some("it is a commonly used password")
        );
        assert_eq!(password_weakness("ada", "correct horse battery"), None);
        assert!(user_key("Ada.Lovelace@example").is_ok());
        assert!(matches!(user_key(""), Err(CredentialError::BadName(_))));
        assert!(matches!(user_key("a b"), Err(CredentialError::BadName(_))));
    }

    #[test]
    fn the_limiter_locks_after_five_failures_for_a_growing_time() {
        let mut l = LoginLimiter::new(LimiterConfig::default());
        let t0 = 1_000_000;
        for i in 0..4 {
            assert_eq!(l.failure(t0 + i, "10.0.0.1", "ada"), None);
        }
        assert_eq!(l.check(t0 + 4, "10.0.0.1", "ada"), Ok(()));
        assert_eq!(l.failure(t0 + 4, "10.0.0.1", "ada"), Some(t0 + 4 + 60_000));
        // Both the address (any user) and the user (any address) are locked.
        assert_eq!(l.check(t0 + 5, "10.0.0.1", "bob"), Err(t0 + 4 + 60_000));
        assert_eq!(l.check(t0 + 5, "10.0.0.2", "ada"), Err(t0 + 4 + 60_000));
        assert_eq!(l.check(t0 + 5, "10.0.0.2", "bob"), Ok(()));
        // After the lock, five more failures lock for twice as long.
        let t1 = t0 + 4 + 60_000;
        assert_eq!(l.check(t1, "10.0.0.1", "ada"), Ok(()));
        for i in 0..4 {
            assert_eq!(l.failure(t1 + i, "10.0.0.1", "ada"), None);
        }
        assert_eq!(l.failure(t1 + 4, "10.0.0.1", "ada"), Some(t1 + 4 + 120_000));
        // A success clears both keys.
        l.success("10.0.0.1", "ada");
        assert_eq!(l.check(t1 + 5, "10.0.0.1", "ada"), Ok(()));
        // The lock never exceeds the maximum.
        let mut l = LoginLimiter::new(LimiterConfig::default());
        let mut t = 0;
        let mut last = None;
        for _ in 0..200 {
            if let Some(until) = l.failure(t, "a", "u") {
                last = Some(until - t);
                t = until;
            }
            t += 1;
        }
        assert_eq!(last, Some(60 * 60_000));
    }

    #[test]
    fn the_limiter_keeps_a_bounded_number_of_keys() {
        let cfg = LimiterConfig {
            max_keys: 100,
            ..LimiterConfig::default()
        };
        let mut l = LoginLimiter::new(cfg);
        for i in 0..1000 {
            l.failure(i, &format!("addr-{i}"), "u");
        }
        assert!(l.by_addr.len() <= 100, "{}", l.by_addr.len());
    }

    #[test]
    fn hashes_verify_and_cookies_parse_strictly() {
        let cheap = Params::new(1024, 1, 1, None).expect("params");
        let phc = hash_password("correct horse battery", Some(&cheap)).expect("hash");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterz", &phc));
        assert!(!verify("anything", "not a hash"));
        let v = "b".repeat(64);
        let header = format!("a=1; sid={v}; x=y");
        assert_eq!(cookie_value(Some(&header), "sid"), Some(v.as_str()));
        assert_eq!(cookie_value(Some("sid=short"), "sid"), None);
        assert_eq!(cookie_value(Some(&header), "other"), None);
        assert_eq!(sha256_hex("abc").len(), 64);
        assert_ne!(sha256_hex("abc"), sha256_hex("abd"));
    }
}
