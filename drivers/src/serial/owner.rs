//! The owner task of one serial line device: opens the port, feeds the decoder, publishes occupancy and credentials, tracks liveness, reopens with backoff.

use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::SerialDeviceConfig;
use super::codec::{Decoded, Decoder, FrameEvent};
use super::transport::SerialTransport;
use crate::device::{
    Backoff, CredentialRead, DriverError, HandlesGone, HealthSender, LinkState, PointPublisher,
    PointUpdate, Request,
};
use crate::point::Value;

/// Why a session ended.
enum SessionEnd {
    PortLost(String),
    HandlesGone,
}

pub(super) struct Owner<T> {
    cfg: SerialDeviceConfig,
    transport: T,
    decoder: Decoder,
    /// Occupancy points, in the handle's index order.
    points: Vec<String>,
    /// Latest value per point since the device was last online.
    values: Vec<Option<bool>>,
    updates: PointPublisher,
    credentials: mpsc::Sender<CredentialRead>,
    health: HealthSender,
    commands: mpsc::Receiver<Request>,
    backoff: Backoff,
}

impl<T: SerialTransport> Owner<T> {
    pub(super) fn new(
        cfg: SerialDeviceConfig,
        transport: T,
        updates: mpsc::Sender<PointUpdate>,
        credentials: mpsc::Sender<CredentialRead>,
        health: HealthSender,
        commands: mpsc::Receiver<Request>,
    ) -> Self {
        let points = cfg.profile.points().to_vec();
        Owner {
            decoder: Decoder::new(&cfg.profile),
            values: vec![None; points.len()],
            updates: PointPublisher::new(&cfg.device, points.clone(), updates),
            backoff: Backoff::new(cfg.backoff_min, cfg.backoff_max),
            points,
            cfg,
            transport,
            credentials,
            health,
            commands,
        }
    }

    /// Open, read, lose the port, back off, reopen; until the handles are gone.
    pub(super) async fn run(&mut self) {
        loop {
            let reason = match self.open().await {
                Err(HandlesGone) => return,
                Ok(Err(reason)) => reason,
                Ok(Ok(port)) => match self.session(port).await {
                    SessionEnd::HandlesGone => return,
                    SessionEnd::PortLost(reason) => reason,
                },
            };
            self.health.count(|c| c.transport_errors += 1);
            self.go_offline(reason).await;
            if self.backoff.wait(&mut self.commands).await.is_err() {
                return;
            }
        }
    }

    /// Called once the task is told to stop: refuse further requests, report the link as down.
    pub(super) fn stopped(&mut self) {
        self.commands.close();
        self.health.set_state(LinkState::Offline, None);
        tracing::debug!(device = %self.cfg.device, "serial driver stopped");
    }

    async fn open(&mut self) -> Result<Result<T::Port, String>, HandlesGone> {
        let what = self.transport.describe();
        let attempt = self.transport.open();
        tokio::pin!(attempt);
        loop {
            tokio::select! {
                biased;
                result = &mut attempt => {
                    return Ok(result.map_err(|error| format!("cannot open {what}: {error}")));
                }
                request = self.commands.recv() => match request {
                    // Opening a tty takes no time; a request arriving meanwhile is refused.
                    Some(request) => request.fail(DriverError::Offline),
                    None => return Err(HandlesGone),
                },
            }
        }
    }

    async fn session(&mut self, mut port: T::Port) -> SessionEnd {
        tracing::info!(device = %self.cfg.device, port = %self.transport.describe(), "serial port open");
        self.decoder = Decoder::new(&self.cfg.profile);
        self.set_online();
        let mut buf = vec![0u8; 1024];
        let mut out = Vec::new();
        let mut last_byte = Instant::now();
        let mut last_frame = Instant::now();
        let mut silent = false;
        loop {
            let gap_armed = self.decoder.is_mid_frame();
            let gap_deadline = last_byte + self.cfg.frame_gap;
            let silence = self.cfg.silence_timeout.filter(|_| !silent);
            let silence_deadline = last_frame + silence.unwrap_or_default();
            tokio::select! {
                biased;
                request = self.commands.recv() => match request {
                    Some(request) => self.serve(request),
                    None => return SessionEnd::HandlesGone,
                },
                read = port.read(&mut buf) => match read {
                    Ok(0) => return SessionEnd::PortLost(format!("{} closed: end of stream (device unplugged?)", self.transport.describe())),
                    Ok(n) => {
                        last_byte = Instant::now();
                        self.decoder.feed(buf.get(..n).unwrap_or_default(), &mut out);
                        if self.handle(&mut out).await {
                            last_frame = last_byte;
                            if silent {
                                silent = false;
                                tracing::info!(device = %self.cfg.device, "device talks again");
                                self.set_online();
                            }
                        }
                    }
                    Err(error) => {
                        return SessionEnd::PortLost(format!("{} lost: {error}", self.transport.describe()));
                    }
                },
                () = sleep_until(gap_deadline), if gap_armed => {
                    self.decoder.idle(&mut out);
                    self.handle(&mut out).await;
                }
                () = sleep_until(silence_deadline), if silence.is_some() => {
                    silent = true;
                    self.health.count(|c| c.timeouts += 1);
                    let quiet = silence.unwrap_or_default();
                    self.go_offline(format!("no frame from the device for {} ms", quiet.as_millis())).await;
                }
            }
        }
    }

    /// Publishes what the decoder produced; says whether a well-formed frame was among it.
    async fn handle(&mut self, out: &mut Vec<Decoded>) -> bool {
        let mut frame_seen = false;
        for item in out.drain(..) {
            if item.is_frame() {
                frame_seen = true;
                self.health.count(|c| c.responses += 1);
            }
            match item {
                Decoded::Event(FrameEvent::Occupancy { point, occupied }) => {
                    let Some(index) = self.points.iter().position(|p| *p == point) else {
                        continue;
                    };
                    if let Some(value) = self.values.get_mut(index) {
                        *value = Some(occupied);
                    }
                    self.updates
                        .publish(index, Some(Value::Bool(occupied)))
                        .await;
                }
                Decoded::Event(FrameEvent::Credential {
                    reader,
                    kind,
                    credential,
                }) => {
                    let read = CredentialRead {
                        device: self.cfg.device.clone(),
                        reader,
                        kind,
                        credential,
                    };
                    // Nobody listening for credentials is not an error of the device.
                    let _ = self.credentials.send(read).await;
                }
                Decoded::Event(FrameEvent::Heartbeat) => {}
                Decoded::Bad(bad) => {
                    tracing::debug!(device = %self.cfg.device, ?bad, "bad frame dropped");
                    self.health.count(|c| c.bad_frames += 1);
                }
            }
        }
        if frame_seen {
            self.backoff.reset();
        }
        frame_seen
    }

    fn serve(&mut self, request: Request) {
        match request {
            Request::Read { index, reply } => {
                let answer = match self.values.get(index) {
                    Some(Some(value)) => Ok(Value::Bool(*value)),
                    Some(None) => Err(DriverError::Unsupported(
                        "a read before the device has reported the point since it came online",
                    )),
                    None => Err(DriverError::UnknownPoint(index.to_string())),
                };
                let _ = reply.send(answer);
            }
            Request::Write { index, reply, .. } | Request::Relinquish { index, reply } => {
                let name = self.points.get(index).cloned().unwrap_or_default();
                let _ = reply.send(Err(DriverError::NotWritable(name)));
            }
        }
    }

    /// Online without the generic "device online" line: the port opening and the device
    /// talking again are logged where they happen.
    fn set_online(&mut self) {
        self.health.set_state(LinkState::Online, None);
    }

    async fn go_offline(&mut self, reason: String) {
        tracing::warn!(device = %self.cfg.device, %reason, "serial device offline");
        self.health.set_state(LinkState::Offline, Some(reason));
        self.values.iter_mut().for_each(|v| *v = None);
        for index in 0..self.points.len() {
            self.updates.publish(index, None).await;
        }
    }
}
