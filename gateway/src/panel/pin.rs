//! Booking PINs for door-panel check-in: derived from the booking id with a per-gateway key
//! (HMAC-SHA-256), so nothing per booking is stored, and wrong guesses lock the room's panel.
//!
//! The key is 32 random bytes in `<data>/panel-pin.key` (mode 0600), made on first start and
//! kept across restarts, so a PIN given out with a booking stays valid.

use std::collections::HashMap;
use std::path::Path;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use scenes::{Span, Timestamp};

/// The key file's name in the gateway's data directory.
pub const KEY_FILE: &str = "panel-pin.key";
/// Wrong PINs at one room's panel before it locks.
pub const MAX_WRONG: u32 = 5;
/// How long the panel stays locked after the last of `MAX_WRONG` wrong PINs.
pub const LOCKOUT: Span = Span::minutes(5);

/// Why the PIN key could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum PinKeyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: a PIN key is 32 bytes, this file has {len}")]
    Length { path: String, len: usize },
    #[error("no system randomness for a new PIN key")]
    Random,
}

/// The gateway's secret for booking PINs.
pub struct PinKey(hmac::Key);

impl std::fmt::Debug for PinKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinKey(..)")
    }
}

impl PinKey {
    /// A key from 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> PinKey {
        PinKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// Reads `<data>/panel-pin.key`, or makes it (random, mode 0600) when it does not exist.
    pub fn load_or_create(data: &Path) -> Result<PinKey, PinKeyError> {
        let path = data.join(KEY_FILE);
        let shown = path.display().to_string();
        let io = |source| PinKeyError::Io {
            path: shown.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 32] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| PinKeyError::Length {
                            path: shown.clone(),
                            len: bytes.len(),
                        })?;
                Ok(PinKey::from_bytes(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| PinKeyError::Random)?;
                write_private(&path, &key).map_err(io)?;
                Ok(PinKey::from_bytes(&key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The 4-digit PIN of a booking.
    pub fn pin(&self, booking: &str) -> String {
        let tag = hmac::sign(&self.0, booking.as_bytes());
        let b = tag.as_ref();
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) % 10_000;
        format!("{n:04}")
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Wrong PINs per room, on the gateway's clock.
#[derive(Debug, Default)]
pub struct Attempts {
    rooms: HashMap<String, (u32, Timestamp)>,
}

impl Attempts {
    /// Until when the room's panel refuses PINs, if it does now.
    pub fn locked_until(&self, room: &str, now: Timestamp) -> Option<Timestamp> {
        let (wrong, last) = self.rooms.get(room)?;
        let until = *last + LOCKOUT;
        (*wrong >= MAX_WRONG && now < until).then_some(until)
    }

    /// Counts a wrong PIN; a pause of `LOCKOUT` since the last one starts the count afresh.
    pub fn wrong(&mut self, room: &str, now: Timestamp) {
        let entry = self.rooms.entry(room.to_owned()).or_insert((0, now));
        if now >= entry.1 + LOCKOUT {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
    }

    /// A right PIN clears the count.
    pub fn right(&mut self, room: &str) {
        self.rooms.remove(room);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_four_digits_stable_and_differ_per_booking_and_key() {
        let key = PinKey::from_bytes(&[7; 32]);
        let a = key.pin("b-1");
        assert_eq!(a.len(), 4);
        assert!(a.chars().all(|c| c.is_ascii_digit()));
        assert_eq!(a, key.pin("b-1"), "the same booking, the same PIN");
        let distinct: std::collections::BTreeSet<String> =
            (0..50).map(|i| key.pin(&format!("b-{i}"))).collect();
        assert!(distinct.len() > 40, "PINs spread: {}", distinct.len());
        let other = PinKey::from_bytes(&[8; 32]);
        let same = (0..50)
            .filter(|i| key.pin(&format!("b-{i}")) == other.pin(&format!("b-{i}")))
            .count();
        assert!(same < 5, "another key gives other PINs");
    }

    #[test]
    fn the_key_file_is_made_once_kept_private_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = PinKey::load_or_create(dir.path()).expect("made");
        let again = PinKey::load_or_create(dir.path()).expect("read");
        assert_eq!(first.pin("x"), again.pin("x"), "the key survives a restart");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "only the gateway's user reads the key");
        }
        std::fs::write(dir.path().join(KEY_FILE), b"short").expect("write");
        let err = PinKey::load_or_create(dir.path()).expect_err("a short key");
        assert!(err.to_string().contains("32 bytes"), "{err}");
    }

    #[test]
    fn five_wrong_pins_lock_the_panel_for_five_minutes() {
        let t0 = Timestamp::from_millis(1_000_000);
        let mut a = Attempts::default();
        for i in 0..4 {
            a.wrong("r1", t0 + Span::seconds(i));
            assert_eq!(a.locked_until("r1", t0 + Span::seconds(i)), None);
        }
        let last = t0 + Span::seconds(10);
        a.wrong("r1", last);
        assert_eq!(a.locked_until("r1", last), Some(last + LOCKOUT));
        assert_eq!(
            a.locked_until("r2", last),
            None,
            "other rooms are not locked"
        );
        assert_eq!(a.locked_until("r1", last + LOCKOUT), None, "unlocked after");
        // After the pause the count starts again.
        a.wrong("r1", last + LOCKOUT);
        assert_eq!(a.locked_until("r1", last + LOCKOUT), None);
        a.right("r1");
        assert_eq!(a.locked_until("r1", last + LOCKOUT), None);
    }
}
