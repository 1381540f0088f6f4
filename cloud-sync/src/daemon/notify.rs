//! The systemd notify protocol (`sd_notify(3)`) without a C library: readiness, status,
//! watchdog pings and stopping, sent as datagrams to `$NOTIFY_SOCKET`.
//!
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op, so the binary behaves the same
//! under a terminal, in tests and in a unit with `Type=notify`. A socket name starting with
//! `@` is in Linux's abstract namespace.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A connection to the service manager, or nothing when not run by one.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` and `$WATCHDOG_USEC` (and `$WATCHDOG_PID`: a watchdog meant for
    /// another process is ignored).
    pub fn from_env() -> Notifier {
        let socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty())
            .and_then(|path| match UnixDatagram::unbound() {
                Ok(s) => Some((s, path)),
                Err(e) => {
                    tracing::warn!("NOTIFY_SOCKET is set but no datagram socket: {e}");
                    None
                }
            });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|us| *us > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            socket: None,
            watchdog: None,
        }
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog interval the unit asked for (`WatchdogSec=`), if any. Ping at half of it.
    pub fn watchdog(&self) -> Option<Duration> {
        self.socket.as_ref().and(self.watchdog)
    }

    /// `READY=1` with a status line: startup finished.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STATUS=...`: a line `systemctl status` shows.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={}", one_line(status)));
    }

    /// `WATCHDOG=1`: the service is alive and making progress.
    pub fn watchdog_ping(&self) {
        self.send("WATCHDOG=1");
    }

    /// `STOPPING=1`: a graceful stop has begun.
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    fn send(&self, message: &str) {
        let Some((socket, path)) = &self.socket else {
            return;
        };
        if let Err(e) = send_to(socket, path, message.as_bytes()) {
            tracing::warn!("notifying systemd at {path}: {e}");
        }
    }
}

fn send_to(socket: &UnixDatagram, path: &str, message: &[u8]) -> io::Result<usize> {
    if let Some(name) = path.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            return socket.send_to_addr(message, &addr);
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract sockets are Linux-only",
            ));
        }
    }
    socket.send_to(message, path)
}

/// Status text is one line of the protocol's `KEY=value` list.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_to_an_abstract_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier {
            socket: Some((
                UnixDatagram::unbound().expect("socket"),
                path.display().to_string(),
            )),
            watchdog: Some(Duration::from_secs(10)),
        };
        n.ready("serving 3 rooms\nwith a newline");
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).expect("recv");
        assert_eq!(
            std::str::from_utf8(&buf[..len]).expect("utf8"),
            "READY=1\nSTATUS=serving 3 rooms with a newline"
        );

        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt as _;
            let name = format!("roomgate-notify-test-{}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .expect("abstract name");
            let abstract_listener = UnixDatagram::bind_addr(&addr).expect("bind abstract");
            let n = Notifier {
                socket: Some((UnixDatagram::unbound().expect("socket"), format!("@{name}"))),
                watchdog: None,
            };
            n.watchdog_ping();
            let len = abstract_listener.recv(&mut buf).expect("recv");
            assert_eq!(&buf[..len], b"WATCHDOG=1");
        }
    }

    #[test]
    fn without_a_socket_nothing_is_sent_and_no_watchdog_applies() {
        let n = Notifier::disabled();
        assert!(!n.enabled());
        assert_eq!(n.watchdog(), None);
        n.ready("x");
    }
}
