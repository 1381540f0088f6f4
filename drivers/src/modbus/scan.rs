//! Modbus unit scans for the installer console: which unit ids answer on an RS-485 bus (through the bus's owner task) or behind a Modbus TCP address (a temporary connection).
//!
//! A scan sends one probe per unit id, a read of one coil, input or register (FC01-FC04,
//! count 1; Modbus Application Protocol V1.1b3 §6.1-6.4). A unit that answers is present, and an
//! exception answer (§7) counts too: the unit is there, it only refuses that address. Silence
//! until the per-unit timeout means absent. Exceptions 0x0A and 0x0B are the exception: a Modbus
//! TCP gateway answers them *for* a serial unit it could not reach (§7, "gateway path
//! unavailable" and "gateway target device failed to respond"), so they mean absent.
//!
//! * On a bus, [`RtuScanner::scan`] hands the scan to the bus's owner task, which sends the
//!   probes between its polls (one probe after each round of due polls, one poll per unit)
//!   so that the bus's regular traffic keeps its pace and the line stays one request at a
//!   time. A probe
//!   that gets no answer does not count as a bus timeout (absence is what a scan looks for)
//!   and never quarantines a configured unit. One scan at a time per bus.
//! * A line named in the site before any of its units is scanned by [`scan_line`], which
//!   starts an owner task for the scan alone.
//! * Over TCP, [`scan_tcp`] opens its own connection with tokio-modbus and wraps every call in
//!   a timeout (tokio-modbus has none). After a unit stayed silent the connection is opened
//!   again, so that a late answer cannot be taken for the next unit's.
//!
//! Every scan is bounded as a whole ([`ScanProbe::limit`], by default a margin above what the
//! probes can take); a scan that runs out of time says how far it got and what it found.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_modbus::client::{Client as _, Context};
use tokio_modbus::prelude::SlaveContext as _;
use tokio_modbus::{Request, Slave};

use super::rtu::{RtuBusConfig, RtuRequest};
use super::tcp::exception_name;
use crate::point::ModbusTable;

/// Per-unit timeout of a bus scan unless the probe says otherwise.
pub const RTU_PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// Per-unit timeout of a Modbus TCP scan unless the probe says otherwise.
pub const TCP_PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// The unit ids a scan covers unless told otherwise (RTU addresses 1..=247, §2.2 of Modbus
/// over serial line V1.02).
pub const DEFAULT_UNITS: RangeInclusive<u8> = 1..=247;
/// Exception 0x0A: a TCP gateway has no path to the unit.
const GATEWAY_PATH_UNAVAILABLE: u8 = 0x0a;
/// Exception 0x0B: a TCP gateway's unit did not answer it.
const GATEWAY_TARGET_FAILED: u8 = 0x0b;

/// What each unit is asked, and how long a scan may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanProbe {
    /// The table read (FC01 coils, FC02 discrete inputs, FC03 holding registers, FC04 input
    /// registers).
    pub table: ModbusTable,
    /// The address read (one coil or register).
    pub address: u16,
    /// Longest wait for one unit's answer; `None`: [`RTU_PROBE_TIMEOUT`] on a bus,
    /// [`TCP_PROBE_TIMEOUT`] over TCP.
    pub timeout: Option<Duration>,
    /// Longest the whole scan may take; `None`: [`ScanProbe::default_limit`].
    pub limit: Option<Duration>,
}

impl Default for ScanProbe {
    /// Holding register 0, the default timeouts and limit.
    fn default() -> Self {
        ScanProbe {
            table: ModbusTable::HoldingRegister,
            address: 0,
            timeout: None,
            limit: None,
        }
    }
}

impl ScanProbe {
    /// The probe as an RTU request (one element at `address`).
    #[must_use]
    pub fn request(&self) -> RtuRequest {
        RtuRequest::Read {
            function: self.table.read_function_code(),
            start: self.address,
            count: 1,
        }
    }

    /// The probe as a tokio-modbus request.
    fn tcp_request(&self) -> Request<'static> {
        match self.table {
            ModbusTable::Coil => Request::ReadCoils(self.address, 1),
            ModbusTable::DiscreteInput => Request::ReadDiscreteInputs(self.address, 1),
            ModbusTable::HoldingRegister => Request::ReadHoldingRegisters(self.address, 1),
            ModbusTable::InputRegister => Request::ReadInputRegisters(self.address, 1),
        }
    }

    /// A scan of `units` with `per_unit` per answer is allowed twice the time of every unit
    /// staying silent (a bus shares its time with its polls, TCP reconnects after a silence)
    /// plus 5 s.
    #[must_use]
    pub fn default_limit(units: &RangeInclusive<u8>, per_unit: Duration) -> Duration {
        let count = units.clone().count() as u32;
        (per_unit * 2 + Duration::from_millis(100)) * count + Duration::from_secs(5)
    }

    /// The per-unit timeout, `default` when none is set.
    #[must_use]
    pub fn timeout_or(&self, default: Duration) -> Duration {
        self.timeout.unwrap_or(default)
    }

    /// The whole scan's limit for `units`, with `per_unit` as the per-unit timeout.
    #[must_use]
    pub fn limit_for(&self, units: &RangeInclusive<u8>, per_unit: Duration) -> Duration {
        self.limit
            .unwrap_or_else(|| ScanProbe::default_limit(units, per_unit))
    }
}

/// A unit that answered a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitAnswer {
    /// The unit id.
    pub unit: u8,
    /// The exception code it answered with (§7), `None` for a normal answer.
    pub exception: Option<u8>,
    /// From the probe on the wire to the answer.
    pub elapsed: Duration,
}

impl UnitAnswer {
    /// The exception's name ("illegal data address"), if it answered with one.
    #[must_use]
    pub fn exception_name(&self) -> Option<&'static str> {
        self.exception.map(exception_name)
    }
}

/// Why a scan failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScanError {
    /// Unit ids outside what the transport can address.
    #[error("unit ids {low} to {high} cannot be scanned: {why}")]
    BadUnits {
        /// First id asked for.
        low: u8,
        /// Last id asked for.
        high: u8,
        /// What is wrong.
        why: &'static str,
    },
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {message}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        message: String,
    },
    /// Another scan of the bus runs.
    #[error("bus `{bus}` is being scanned already; try again when that scan ends")]
    Busy {
        /// Bus name.
        bus: String,
    },
    /// The bus's port is closed or failed.
    #[error("bus `{bus}` cannot be scanned, its port is not open: {message}")]
    PortDown {
        /// Bus name.
        bus: String,
        /// The port's error.
        message: String,
    },
    /// The scan took longer than its limit.
    #[error(
        "the scan did not finish within {} ms; units before {next} were probed, found: {}",
        limit.as_millis(),
        found_list(found)
    )]
    OutOfTime {
        /// The limit.
        limit: Duration,
        /// The first unit not probed.
        next: u8,
        /// What answered until then.
        found: Vec<UnitAnswer>,
    },
    /// The bus has stopped.
    #[error("bus `{bus}` has stopped")]
    Closed {
        /// Bus name.
        bus: String,
    },
}

fn found_list(found: &[UnitAnswer]) -> String {
    if found.is_empty() {
        return "none".to_owned();
    }
    let units: Vec<String> = found.iter().map(|a| a.unit.to_string()).collect();
    units.join(", ")
}

/// Checks the unit ids of a scan: not empty, and on a bus within 1..=247 (0 is broadcast,
/// which nobody answers; 248-255 are reserved). Over TCP any id may be asked (255 is "the
/// device itself" for devices addressed by IP alone).
pub fn check_units(units: &RangeInclusive<u8>, on_bus: bool) -> Result<(), ScanError> {
    let bad = |why| ScanError::BadUnits {
        low: *units.start(),
        high: *units.end(),
        why,
    };
    if units.is_empty() {
        return Err(bad("the range is empty"));
    }
    if on_bus && (*units.start() == 0 || *units.end() > 247) {
        return Err(bad("RTU unit ids run from 1 to 247"));
    }
    Ok(())
}

/// Whether an exception answer shows the unit is present (anything but a TCP gateway's own
/// "could not reach it", 0x0A and 0x0B).
#[must_use]
pub fn exception_means_present(code: u8) -> bool {
    !matches!(code, GATEWAY_PATH_UNAVAILABLE | GATEWAY_TARGET_FAILED)
}

/// A scan handed to a bus's owner task.
#[derive(Debug)]
pub(crate) struct ScanRequest {
    pub(crate) units: RangeInclusive<u8>,
    pub(crate) request: RtuRequest,
    pub(crate) timeout: Duration,
    pub(crate) deadline: Instant,
    pub(crate) limit: Duration,
    pub(crate) reply: oneshot::Sender<Result<Vec<UnitAnswer>, ScanError>>,
}

/// A scan in progress in a bus's owner task: what is left and what answered.
#[derive(Debug)]
pub(crate) struct ScanJob {
    pub(crate) units: RangeInclusive<u8>,
    pub(crate) request: RtuRequest,
    pub(crate) timeout: Duration,
    pub(crate) deadline: Instant,
    pub(crate) limit: Duration,
    pub(crate) found: Vec<UnitAnswer>,
    pub(crate) reply: oneshot::Sender<Result<Vec<UnitAnswer>, ScanError>>,
}

impl ScanJob {
    pub(crate) fn new(request: ScanRequest) -> ScanJob {
        ScanJob {
            units: request.units,
            request: request.request,
            timeout: request.timeout,
            deadline: request.deadline,
            limit: request.limit,
            found: Vec::new(),
            reply: request.reply,
        }
    }

    /// Answers with what was found (or with an error) and ends the job.
    pub(crate) fn finish(self, result: Result<Vec<UnitAnswer>, ScanError>) {
        // The caller may have stopped waiting: nothing to do then.
        let _ = self.reply.send(result);
    }

    /// Ends the job as out of time, naming the first unit not probed.
    pub(crate) fn out_of_time(mut self) {
        let next = self.units.next().unwrap_or(u8::MAX);
        let error = ScanError::OutOfTime {
            limit: self.limit,
            next,
            found: std::mem::take(&mut self.found),
        };
        self.finish(Err(error));
    }
}

/// Cloneable access to the scan lane of one RS-485 bus's owner task.
#[derive(Debug, Clone)]
pub struct RtuScanner {
    pub(crate) bus: String,
    pub(crate) scans: mpsc::Sender<ScanRequest>,
}

impl RtuScanner {
    /// The bus's name.
    #[must_use]
    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// Probes every unit id in `units` (within 1..=247) on the bus, between the bus's polls;
    /// returns the units that answered, in id order. Refused while another scan of the bus
    /// runs and while the bus's port is not open.
    pub async fn scan(
        &self,
        units: RangeInclusive<u8>,
        probe: &ScanProbe,
    ) -> Result<Vec<UnitAnswer>, ScanError> {
        check_units(&units, true)?;
        let per_unit = probe.timeout_or(RTU_PROBE_TIMEOUT);
        let limit = probe.limit_for(&units, per_unit);
        let (reply, answer) = oneshot::channel();
        let request = ScanRequest {
            units,
            request: probe.request(),
            timeout: per_unit,
            deadline: Instant::now() + limit,
            limit,
            reply,
        };
        let closed = || ScanError::Closed {
            bus: self.bus.clone(),
        };
        self.scans.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ScanError::Busy {
                bus: self.bus.clone(),
            },
            mpsc::error::TrySendError::Closed(_) => closed(),
        })?;
        answer.await.map_err(|_| closed())?
    }
}

/// Scans a line that has no owner task yet (a bus whose units are not configured): an owner
/// task is started for the scan alone and stopped after it. The line must be free.
pub async fn scan_line(
    cfg: RtuBusConfig,
    units: RangeInclusive<u8>,
    probe: &ScanProbe,
) -> Result<Vec<UnitAnswer>, ScanError> {
    check_units(&units, true)?;
    let (scanner, stop, task) = super::rtu::spawn_scan_only(cfg);
    let result = scanner.scan(units, probe).await;
    stop.send_replace(true);
    if let Err(error) = task.await {
        tracing::debug!(bus = %scanner.bus, %error, "scan-only bus owner ended badly");
    }
    result
}

/// Probes every unit id in `units` at a Modbus TCP address over a connection of its own;
/// returns the units that answered, in id order.
pub async fn scan_tcp(
    addr: SocketAddr,
    units: RangeInclusive<u8>,
    probe: &ScanProbe,
) -> Result<Vec<UnitAnswer>, ScanError> {
    check_units(&units, false)?;
    let per_unit = probe.timeout_or(TCP_PROBE_TIMEOUT);
    let limit = probe.limit_for(&units, per_unit);
    let deadline = Instant::now() + limit;
    // A connection gets the probe's time, but at least a second: a slow gateway still takes
    // connections.
    let connect_timeout = per_unit.max(Duration::from_secs(1));
    let mut found = Vec::new();
    let mut context: Option<Context> = None;
    let out_of_time = |next: u8, found: &mut Vec<UnitAnswer>| ScanError::OutOfTime {
        limit,
        next,
        found: std::mem::take(found),
    };
    for unit in units {
        // One fresh connection per unit at most: a unit answering rubbish is tried twice.
        let mut fresh = false;
        loop {
            let ctx = match context.as_mut() {
                Some(ctx) => ctx,
                None => {
                    let connect = tokio_modbus::client::tcp::connect_slave(addr, Slave(unit));
                    let connected = timeout_at(deadline, timeout(connect_timeout, connect))
                        .await
                        .map_err(|_| out_of_time(unit, &mut found))?
                        .map_err(|_| ScanError::Connect {
                            addr,
                            message: format!("no answer within {} ms", connect_timeout.as_millis()),
                        })?
                        .map_err(|e| ScanError::Connect {
                            addr,
                            message: e.to_string(),
                        })?;
                    fresh = true;
                    context.insert(connected)
                }
            };
            ctx.set_slave(Slave(unit));
            let sent = Instant::now();
            let answer = timeout_at(deadline, timeout(per_unit, ctx.call(probe.tcp_request())))
                .await
                .map_err(|_| out_of_time(unit, &mut found))?;
            let elapsed = sent.elapsed();
            match answer {
                // Silence: absent. The connection may still carry its late answer.
                Err(_) => {
                    context = None;
                    break;
                }
                Ok(Ok(Ok(_))) => {
                    found.push(UnitAnswer {
                        unit,
                        exception: None,
                        elapsed,
                    });
                    break;
                }
                Ok(Ok(Err(code))) => {
                    let code = u8::from(code);
                    if exception_means_present(code) {
                        found.push(UnitAnswer {
                            unit,
                            exception: Some(code),
                            elapsed,
                        });
                    }
                    break;
                }
                // A broken or mismatched answer (a late one of an earlier unit, say): once
                // more on a new connection, then the unit counts as absent.
                Ok(Err(error)) => {
                    tracing::debug!(%addr, unit, %error, "scan probe failed");
                    context = None;
                    if fresh {
                        break;
                    }
                }
            }
        }
    }
    if let Some(mut ctx) = context {
        let _ = timeout(Duration::from_millis(100), ctx.disconnect()).await;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimDevice, SimKind};

    #[test]
    fn unit_ranges_are_checked_per_transport() {
        assert!(check_units(&(1..=247), true).is_ok());
        assert!(check_units(&(0..=10), true).is_err());
        assert!(check_units(&(240..=248), true).is_err());
        assert!(check_units(&(0..=255), false).is_ok());
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 5..=4;
        let error = check_units(&empty, false).expect_err("empty");
        assert_eq!(
            error.to_string(),
            "unit ids 5 to 4 cannot be scanned: the range is empty"
        );
    }

    #[test]
    fn gateway_exceptions_mean_absent() {
        assert!(exception_means_present(0x01));
        assert!(exception_means_present(0x02));
        assert!(!exception_means_present(0x0a));
        assert!(!exception_means_present(0x0b));
    }

    #[test]
    fn probes_read_one_element_with_the_table_function() {
        let probe = ScanProbe {
            table: ModbusTable::Coil,
            address: 7,
            ..ScanProbe::default()
        };
        assert_eq!(
            probe.request(),
            RtuRequest::Read {
                function: 0x01,
                start: 7,
                count: 1
            }
        );
        assert_eq!(
            ScanProbe::default().request().function(),
            0x03,
            "holding register 0 by default"
        );
        let limit = ScanProbe::default().limit_for(&(1..=10), Duration::from_millis(200));
        assert_eq!(limit, Duration::from_millis(10 * 500 + 5000));
    }

    #[test]
    fn out_of_time_names_the_next_unit_and_what_was_found() {
        let error = ScanError::OutOfTime {
            limit: Duration::from_secs(2),
            next: 9,
            found: vec![UnitAnswer {
                unit: 3,
                exception: Some(2),
                elapsed: Duration::from_millis(4),
            }],
        };
        assert_eq!(
            error.to_string(),
            "the scan did not finish within 2000 ms; units before 9 were probed, found: 3"
        );
    }

    #[tokio::test]
    async fn a_tcp_scan_finds_the_units_a_gateway_serves() {
        let sim = SimDevice::spawn(SimKind::HvacController, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("simulator");
        sim.set_units(Some(vec![3, 7]));
        let probe = ScanProbe {
            timeout: Some(Duration::from_millis(100)),
            ..ScanProbe::default()
        };
        let found = scan_tcp(sim.addr(), 1..=9, &probe).await.expect("scan");
        let units: Vec<(u8, Option<u8>)> = found.iter().map(|a| (a.unit, a.exception)).collect();
        assert_eq!(units, [(3, None), (7, None)]);

        // An address the device does not map: exception 02, and still present.
        let unmapped = ScanProbe {
            address: 900,
            ..probe.clone()
        };
        let found = scan_tcp(sim.addr(), 6..=7, &unmapped).await.expect("scan");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].exception, Some(2));
        assert_eq!(found[0].exception_name(), Some("illegal data address"));

        // Out of time: says so, with what it found.
        let short = ScanProbe {
            limit: Some(Duration::from_millis(250)),
            ..probe
        };
        match scan_tcp(sim.addr(), 3..=9, &short).await {
            Err(ScanError::OutOfTime { found, next, .. }) => {
                assert_eq!(found.first().map(|a| a.unit), Some(3));
                assert!(next > 3 && next <= 9, "{next}");
            }
            other => panic!("expected out of time, got {other:?}"),
        }
        sim.shutdown();
    }

    #[tokio::test]
    async fn a_tcp_scan_of_nothing_says_it_cannot_connect() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let error = scan_tcp(addr, 1..=2, &ScanProbe::default())
            .await
            .expect_err("nobody listens");
        assert!(
            matches!(error, ScanError::Connect { .. }),
            "{error:?}: {error}"
        );
    }
}
