//! The only place the gateway reads time: the system clock, or a manual one for tests.

use std::time::Duration;

use scenes::Timestamp;
use tokio::sync::watch;

/// How long the main loop sleeps at most, so a clock set by NTP is noticed within a second
/// and the live status refreshes.
pub const MAX_SLEEP: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// Time moves only when the test says so (`ManualClock::set`).
    Manual(ManualClock),
}

/// A clock a test advances; the gateway's loop wakes whenever it moves.
#[derive(Debug, Clone)]
pub struct ManualClock {
    tx: watch::Sender<i64>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            tx: watch::Sender::new(start.as_millis()),
        }
    }
    pub fn set(&self, t: Timestamp) {
        self.tx.send_replace(t.as_millis());
    }
    pub fn now(&self) -> Timestamp {
        Timestamp::from_millis(*self.tx.borrow())
    }
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => system_now(),
            Clock::Manual(m) => m.now(),
        }
    }

    /// A waiter that resolves when `deadline` may have come (or `MAX_SLEEP` passed).
    pub fn waiter(&self) -> ClockWaiter {
        ClockWaiter {
            clock: self.clone(),
            rx: match self {
                Clock::System => None,
                Clock::Manual(m) => Some(m.tx.subscribe()),
            },
        }
    }
}

#[derive(Debug)]
pub struct ClockWaiter {
    clock: Clock,
    rx: Option<watch::Receiver<i64>>,
}

impl ClockWaiter {
    pub async fn wait(&mut self, deadline: Option<Timestamp>) {
        match &mut self.rx {
            None => {
                let left = deadline.map_or(MAX_SLEEP, |d| {
                    let ms = d.since(self.clock.now()).as_millis().max(0);
                    Duration::from_millis(ms.unsigned_abs()).min(MAX_SLEEP)
                });
                tokio::time::sleep(left).await;
            }
            Some(rx) => {
                tokio::select! {
                    _ = rx.changed() => {}
                    _ = tokio::time::sleep(MAX_SLEEP) => {}
                }
            }
        }
    }
}

pub fn system_now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp::from_millis(ms)
}
