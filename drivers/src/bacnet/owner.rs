//! The owner task of one BACnet device: finding it (Who-Is/I-Am), COV subscriptions and their renewal, RPM/RP polling, the priority lane for handle requests, offline handling and backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bacnet_client::client::ReceivedCOVNotification;
use bacnet_encoding::primitives::encode_property_value;
use bacnet_services::who_is::DeviceInstanceRange;
use bacnet_types::constructed::{PropertyReference, ReadAccessSpecification};
use bacnet_types::enums::{AbortReason, ErrorClass};
use bacnet_types::error::{Error as BacnetError, RemoteError};
use bacnet_types::primitives::{ObjectIdentifier, PropertyValue};
use bytes::BytesMut;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Instant, sleep_until, timeout};

use super::network::{BacnetDeviceConfig, DeviceAddress, NetShared, addr_to_mac, decode_all};
use super::point::BacnetPoint;
use crate::device::{
    Backoff, DriverError, HandlesGone, HealthSender, LinkState, PointPublisher, PointUpdate,
    Request,
};
use crate::point::Value;

enum SessionEnd {
    LinkDown(DriverError),
    HandlesGone,
}

impl From<HandlesGone> for SessionEnd {
    fn from(_: HandlesGone) -> Self {
        SessionEnd::HandlesGone
    }
}

/// A failure that ends the session (timeout or transport).
struct LinkDown(DriverError);

impl From<LinkDown> for SessionEnd {
    fn from(LinkDown(e): LinkDown) -> Self {
        SessionEnd::LinkDown(e)
    }
}

/// COV state of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cov {
    /// Subscribed; notifications keep its points current.
    Active,
    /// The device refused; its points are polled.
    Refused,
}

pub(super) struct Setup {
    pub(super) net: Arc<NetShared>,
    pub(super) cfg: BacnetDeviceConfig,
    pub(super) points: Arc<[BacnetPoint]>,
    pub(super) usable: Vec<bool>,
    pub(super) process_id: u32,
    pub(super) updates: mpsc::Sender<PointUpdate>,
    pub(super) health: HealthSender,
    pub(super) commands: mpsc::Receiver<Request>,
}

pub(super) struct Owner {
    net: Arc<NetShared>,
    cfg: BacnetDeviceConfig,
    points: Arc<[BacnetPoint]>,
    usable: Vec<bool>,
    /// Wire identifiers of usable points.
    oids: Vec<Option<ObjectIdentifier>>,
    updates: PointPublisher,
    health: HealthSender,
    commands: mpsc::Receiver<Request>,
    backoff: Backoff,
    process_id: u32,
    /// RPM batch size now; 0 = ReadProperty only (configured, or the device refused RPM).
    rpm_batch: usize,
    cov: HashMap<ObjectIdentifier, Cov>,
    notifications: broadcast::Receiver<ReceivedCOVNotification>,
    /// Poll COV-covered points too in the next cycle (notifications were lost).
    resync: bool,
}

impl Owner {
    pub(super) fn new(setup: Setup) -> Self {
        let oids = setup
            .points
            .iter()
            .zip(&setup.usable)
            .map(|(p, &usable)| usable.then(|| p.object.identifier().ok()).flatten())
            .collect();
        let notifications = setup.net.client.cov_notifications();
        let names = setup.points.iter().map(|p| p.name.clone()).collect();
        Owner {
            backoff: Backoff::new(setup.cfg.backoff_min, setup.cfg.backoff_max),
            rpm_batch: setup.cfg.rpm_max_properties,
            updates: PointPublisher::new(&setup.cfg.device, names, setup.updates),
            net: setup.net,
            cfg: setup.cfg,
            points: setup.points,
            usable: setup.usable,
            oids,
            health: setup.health,
            commands: setup.commands,
            process_id: setup.process_id,
            cov: HashMap::new(),
            notifications,
            resync: false,
        }
    }

    /// Find, subscribe, poll, serve; fall offline, back off, look again; until stopped.
    pub(super) async fn run(&mut self) {
        loop {
            let error = match self.locate().await {
                Err(HandlesGone) => return,
                Ok(Err(error)) => error,
                Ok(Ok(())) => match self.session().await {
                    SessionEnd::HandlesGone => return,
                    SessionEnd::LinkDown(error) => error,
                },
            };
            self.go_offline(&error).await;
            if self.backoff.wait(&mut self.commands).await.is_err() {
                return;
            }
        }
    }

    /// The task was told to stop: refuse further requests, cancel subscriptions (best effort,
    /// Clause 13.14.1: a SubscribeCOV without lifetime and confirmation flag cancels), report
    /// the link as down.
    pub(super) async fn stopped(&mut self) {
        self.commands.close();
        while let Ok(request) = self.commands.try_recv() {
            request.fail(DriverError::Closed);
        }
        let active: Vec<ObjectIdentifier> = self
            .cov
            .iter()
            .filter(|(_, c)| **c == Cov::Active)
            .map(|(oid, _)| *oid)
            .collect();
        for oid in active {
            let cancel =
                self.net
                    .client
                    .unsubscribe_cov_to_device(self.cfg.instance, self.process_id, oid);
            let _ = timeout(self.net.cfg.apdu_timeout, cancel).await;
        }
        self.cov.clear();
        self.health.set_state(LinkState::Offline, None);
        tracing::debug!(device = %self.cfg.device, "driver stopped");
    }

    /// Makes the device reachable by instance in the client's device table: a static address
    /// is entered as is; otherwise a Who-Is (Clause 16.10) is sent and its I-Am awaited.
    async fn locate(&mut self) -> Result<Result<(), DriverError>, HandlesGone> {
        let client = &self.net.client;
        let instance = self.cfg.instance;
        let target = match self.cfg.address {
            DeviceAddress::Static(addr) => {
                return Ok(client
                    .add_device(instance, &addr_to_mac(addr))
                    .await
                    .map_err(|e| DriverError::Transport(format!("static address {addr}: {e}"))));
            }
            DeviceAddress::Directed(addr) => Some(addr),
            DeviceAddress::Discover => None,
        };
        let first_attempt = self.health.state() == LinkState::Connecting;
        let mut events = client.device_events();
        let range = DeviceInstanceRange::new(instance, instance).ok();
        let sent = match target {
            Some(addr) => client.who_is_directed(&addr_to_mac(addr), range).await,
            None => client.who_is(range).await,
        };
        if let Err(error) = sent {
            self.health.count(|c| c.transport_errors += 1);
            return Ok(Err(DriverError::Transport(format!("Who-Is: {error}"))));
        }
        let deadline = Instant::now() + self.cfg.locate_timeout;
        loop {
            tokio::select! {
                biased;
                event = events.recv() => match event {
                    Ok(event) if event.device.object_identifier.instance_number() == instance
                        && event.kind != bacnet_client::client::DeviceEventKind::Lost => {
                        tracing::debug!(device = %self.cfg.device, instance, "I-Am received");
                        return Ok(Ok(()));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        // The I-Am may be among the skipped events.
                        if client.get_device(instance).await.is_some_and(|d| d.last_seen.elapsed() < self.cfg.locate_timeout) {
                            return Ok(Ok(()));
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(Err(DriverError::Closed)),
                },
                command = self.commands.recv(), if !first_attempt => match command {
                    Some(command) => command.fail(DriverError::Offline),
                    None => return Err(HandlesGone),
                },
                () = sleep_until(deadline) => {
                    self.health.count(|c| c.timeouts += 1);
                    let whom = target.map_or_else(|| "a broadcast".to_owned(), |a| a.to_string());
                    return Ok(Err(DriverError::Transport(format!(
                        "device {instance} did not answer Who-Is ({whom}) within {} ms",
                        self.cfg.locate_timeout.as_millis()
                    ))));
                }
            }
        }
    }

    async fn session(&mut self) -> SessionEnd {
        match self.session_inner().await {
            Ok(never) => match never {},
            Err(end) => end,
        }
    }

    async fn session_inner(&mut self) -> Result<std::convert::Infallible, SessionEnd> {
        // Notifications queued while the device was away are stale.
        self.notifications = self.notifications.resubscribe();
        self.cov.clear();
        if !self.has_polled_points() {
            self.health.set_online();
        }
        self.subscribe_all().await?;
        let mut next_poll = Instant::now();
        let mut next_renewal = self.cfg.cov_lifetime.map(|l| Instant::now() + l / 2);
        // The first cycle reads every point, covered ones included: the initial notification
        // may not be there yet.
        self.resync = true;
        loop {
            self.serve_queued().await?;
            let now = Instant::now();
            if let Some(renewal) = next_renewal
                && now >= renewal
            {
                self.subscribe_all().await?;
                next_renewal = self.cfg.cov_lifetime.map(|l| Instant::now() + l / 2);
                continue;
            }
            if now >= next_poll {
                let started = Instant::now();
                self.poll_cycle().await?;
                next_poll = started + self.cfg.poll_interval;
                continue;
            }
            let renewal = next_renewal.unwrap_or(next_poll + Duration::from_secs(3600));
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(command) => self.serve(command).await?,
                    None => return Err(SessionEnd::HandlesGone),
                },
                notification = self.notifications.recv() => self.on_notification(notification).await,
                () = sleep_until(next_poll.min(renewal)) => {}
            }
        }
    }

    /// The priority lane: serve every queued handle request, then any waiting notification.
    async fn serve_queued(&mut self) -> Result<(), SessionEnd> {
        loop {
            match self.commands.try_recv() {
                Ok(command) => self.serve(command).await?,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return Err(HandlesGone.into()),
            }
        }
        loop {
            match self.notifications.try_recv() {
                Ok(n) => self.on_notification(Ok(n)).await,
                Err(
                    broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed,
                ) => {
                    return Ok(());
                }
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    self.on_notification(Err(broadcast::error::RecvError::Lagged(n)))
                        .await;
                }
            }
        }
    }

    /// Subscribes (or renews) COV on every object with a COV-eligible point, Clause 13.14.
    async fn subscribe_all(&mut self) -> Result<(), SessionEnd> {
        let Some(lifetime) = self.cfg.cov_lifetime else {
            return Ok(());
        };
        let lifetime = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
        let mut objects: Vec<ObjectIdentifier> = Vec::new();
        for (i, point) in self.points.iter().enumerate() {
            if let Some(oid) = self.oids[i]
                && point.cov_eligible()
                && !objects.contains(&oid)
                && self.cov.get(&oid) != Some(&Cov::Refused)
            {
                objects.push(oid);
            }
        }
        for oid in objects {
            self.serve_queued().await?;
            let net = Arc::clone(&self.net);
            let request = net.client.subscribe_cov_to_device(
                self.cfg.instance,
                self.process_id,
                oid,
                true,
                Some(lifetime),
            );
            match self.exchange("SubscribeCOV", request).await {
                Ok(()) => {
                    self.cov.insert(oid, Cov::Active);
                }
                Err(error) if error.is_link_failure() => return Err(LinkDown(error).into()),
                Err(error) => {
                    tracing::info!(device = %self.cfg.device, object = %oid_text(oid), %error, "COV refused; polling this object");
                    self.cov.insert(oid, Cov::Refused);
                }
            }
        }
        Ok(())
    }

    async fn on_notification(
        &mut self,
        notification: Result<ReceivedCOVNotification, broadcast::error::RecvError>,
    ) {
        let n = match notification {
            Ok(n) => n.notification,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(device = %self.cfg.device, missed, "COV notifications lost; reading covered points again");
                self.resync = true;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        // Clause 13.6/13.7: the notification names its subscriber process and device.
        if n.subscriber_process_identifier != self.process_id
            || n.initiating_device_identifier.instance_number() != self.cfg.instance
        {
            return;
        }
        let object = n.monitored_object_identifier;
        for value in &n.list_of_values {
            if value.property_array_index.is_some() {
                continue;
            }
            let decoded = decode_all(&value.value).into_iter().next();
            for i in 0..self.points.len() {
                let point = &self.points[i];
                if self.oids[i] == Some(object)
                    && point.property == value.property_identifier
                    && point.array_index.is_none()
                    && point.access.can_read()
                {
                    let v = decoded.as_ref().and_then(|d| point.kind.to_value(d));
                    self.updates.publish(i, v).await;
                }
            }
        }
    }

    /// Whether a point is kept current by a COV subscription.
    fn covered(&self, i: usize) -> bool {
        self.points[i].cov_eligible()
            && self.oids[i].is_some_and(|oid| self.cov.get(&oid) == Some(&Cov::Active))
    }

    fn is_polled(&self, i: usize) -> bool {
        self.usable.get(i).copied().unwrap_or(false)
            && self.oids.get(i).copied().flatten().is_some()
            && self.points[i].access.can_read()
    }

    fn has_polled_points(&self) -> bool {
        (0..self.points.len()).any(|i| self.is_polled(i))
    }

    /// Reads every polled point once (and the covered ones after a resync), in RPM batches.
    async fn poll_cycle(&mut self) -> Result<(), SessionEnd> {
        let all = std::mem::take(&mut self.resync);
        let due: Vec<usize> = (0..self.points.len())
            .filter(|&i| self.is_polled(i) && (all || !self.covered(i)))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut rest = due.as_slice();
        while !rest.is_empty() {
            self.serve_queued().await?;
            if self.rpm_batch == 0 {
                let (&i, tail) = rest.split_first().unwrap_or((&0, &[]));
                rest = tail;
                self.poll_single(i).await?;
                continue;
            }
            let take = self.rpm_batch.min(rest.len());
            let (batch, tail) = rest.split_at(take);
            rest = tail;
            self.poll_batch(batch).await?;
        }
        Ok(())
    }

    /// One ReadPropertyMultiple (Clause 15.7) for `batch`; on refusal the same points one by one.
    async fn poll_batch(&mut self, batch: &[usize]) -> Result<(), SessionEnd> {
        let mut specs: Vec<ReadAccessSpecification> = Vec::new();
        for &i in batch {
            let Some(oid) = self.oids[i] else { continue };
            let reference = PropertyReference {
                property_identifier: self.points[i].property,
                property_array_index: self.points[i].array_index,
            };
            match specs.iter_mut().find(|s| s.object_identifier == oid) {
                Some(spec) => spec.list_of_property_references.push(reference),
                None => specs.push(ReadAccessSpecification {
                    object_identifier: oid,
                    list_of_property_references: vec![reference],
                }),
            }
        }
        let net = Arc::clone(&self.net);
        let request = net
            .client
            .read_property_multiple_from_device(self.cfg.instance, specs);
        match self.exchange("ReadPropertyMultiple", request).await {
            Ok(ack) => {
                for &i in batch {
                    let point = &self.points[i];
                    let element = ack
                        .list_of_read_access_results
                        .iter()
                        .filter(|r| Some(r.object_identifier) == self.oids[i])
                        .flat_map(|r| r.list_of_results.iter())
                        .find(|e| {
                            e.property_identifier == point.property
                                && e.property_array_index == point.array_index
                        });
                    let value = match element {
                        Some(e) => match (&e.property_value, e.error) {
                            (Some(bytes), None) => {
                                let decoded = decode_all(bytes).into_iter().next();
                                decoded.as_ref().and_then(|d| point.kind.to_value(d))
                            }
                            (_, error) => {
                                if let Some((class, code)) = error {
                                    tracing::debug!(device = %self.cfg.device, point = %point.name,
                                        error = %super::error_text(class.to_raw(), code.to_raw()), "point unreadable");
                                }
                                None
                            }
                        },
                        None => None,
                    };
                    if value.is_none() {
                        tracing::debug!(device = %self.cfg.device, point = %self.points[i].name, "no usable value in the RPM answer");
                    }
                    self.updates.publish(i, value).await;
                }
                Ok(())
            }
            Err(error) if error.is_link_failure() => Err(LinkDown(error).into()),
            Err(error) => {
                match &error {
                    DriverError::BacnetReject { .. } => self.refuse_rpm(&error),
                    DriverError::BacnetError { class, .. }
                        if *class == ErrorClass::SERVICES.to_raw() =>
                    {
                        self.refuse_rpm(&error);
                    }
                    DriverError::BacnetAbort { .. } if self.rpm_batch > 1 => {
                        self.rpm_batch /= 2;
                        tracing::info!(device = %self.cfg.device, %error, batch = self.rpm_batch, "RPM answer too long; smaller batches from now on");
                    }
                    DriverError::BacnetAbort { .. } => self.refuse_rpm(&error),
                    _ => {
                        tracing::debug!(device = %self.cfg.device, %error, "RPM failed; reading its points one by one");
                    }
                }
                for &i in batch {
                    self.serve_queued().await?;
                    self.poll_single(i).await?;
                }
                Ok(())
            }
        }
    }

    fn refuse_rpm(&mut self, error: &DriverError) {
        tracing::warn!(device = %self.cfg.device, %error, "the device refuses ReadPropertyMultiple; reading point by point from now on");
        self.rpm_batch = 0;
    }

    async fn poll_single(&mut self, i: usize) -> Result<(), SessionEnd> {
        match self.read_point(i).await {
            Ok(value) => self.updates.publish(i, Some(value)).await,
            Err(error) if error.is_link_failure() => return Err(LinkDown(error).into()),
            Err(error) => {
                tracing::debug!(device = %self.cfg.device, point = %self.points[i].name, %error, "point unavailable");
                self.updates.publish(i, None).await;
            }
        }
        Ok(())
    }

    /// ReadProperty (Clause 15.5) of one point.
    async fn read_point(&mut self, i: usize) -> Result<Value, DriverError> {
        let oid = self
            .oids
            .get(i)
            .copied()
            .flatten()
            .ok_or(DriverError::Closed)?;
        let point = self.points[i].clone();
        let net = Arc::clone(&self.net);
        let request = net.client.read_property_from_device(
            self.cfg.instance,
            oid,
            point.property,
            point.array_index,
        );
        let ack = self.exchange("ReadProperty", request).await?;
        let decoded = decode_all(&ack.property_value).into_iter().next();
        decoded
            .as_ref()
            .and_then(|d| point.kind.to_value(d))
            .ok_or_else(|| DriverError::BacnetValue {
                point: point.name.clone(),
                message: format!(
                    "{} {} is not a {} value: {decoded:?}",
                    point.object,
                    super::point::kebab(&point.property.to_string()),
                    point.kind
                ),
            })
    }

    /// WriteProperty (Clause 15.9) of `value` at the point's priority; `None` relinquishes
    /// (NULL at that priority, Clause 19.2.1).
    async fn write_point(&mut self, i: usize, value: Option<Value>) -> Result<(), DriverError> {
        let oid = self
            .oids
            .get(i)
            .copied()
            .flatten()
            .ok_or(DriverError::Closed)?;
        let point = self.points[i].clone();
        let property_value = match value {
            Some(value) => {
                point
                    .kind
                    .to_property_value(value)
                    .map_err(|e| DriverError::BacnetValue {
                        point: point.name.clone(),
                        message: e.to_string(),
                    })?
            }
            None => PropertyValue::Null,
        };
        let mut encoded = BytesMut::new();
        encode_property_value(&mut encoded, &property_value).map_err(|e| {
            DriverError::BacnetValue {
                point: point.name.clone(),
                message: format!("cannot encode {property_value:?}: {e}"),
            }
        })?;
        let net = Arc::clone(&self.net);
        let request = net.client.write_property_to_device(
            self.cfg.instance,
            oid,
            point.property,
            point.array_index,
            encoded.to_vec(),
            Some(point.priority),
        );
        self.exchange("WriteProperty", request).await
    }

    async fn serve(&mut self, command: Request) -> Result<(), LinkDown> {
        match command {
            Request::Write {
                index,
                value,
                reply,
            } => {
                let result = self.write_point(index, Some(value)).await;
                self.after_write(index, result, reply).await
            }
            Request::Relinquish { index, reply } => {
                let result = self.write_point(index, None).await;
                self.after_write(index, result, reply).await
            }
            Request::Read { index, reply } => {
                let result = self.read_point(index).await;
                let link = result
                    .as_ref()
                    .err()
                    .filter(|e| e.is_link_failure())
                    .cloned();
                let value = result.as_ref().ok().copied();
                let _ = reply.send(result);
                if let Some(error) = link {
                    return Err(LinkDown(error));
                }
                if let (Some(value), true) = (value, self.is_polled(index)) {
                    self.updates.publish(index, Some(value)).await;
                }
                Ok(())
            }
        }
    }

    async fn after_write(
        &mut self,
        index: usize,
        result: Result<(), DriverError>,
        reply: tokio::sync::oneshot::Sender<Result<(), DriverError>>,
    ) -> Result<(), LinkDown> {
        let link = result
            .as_ref()
            .err()
            .filter(|e| e.is_link_failure())
            .cloned();
        let written = result.is_ok();
        let _ = reply.send(result);
        if let Some(error) = link {
            return Err(LinkDown(error));
        }
        if written && self.is_polled(index) {
            // Show the effect at once (after a relinquish, the value the device fell back to).
            match self.read_point(index).await {
                Ok(value) => self.updates.publish(index, Some(value)).await,
                Err(error) if error.is_link_failure() => return Err(LinkDown(error)),
                Err(error) => {
                    tracing::debug!(device = %self.cfg.device, index, %error, "read-back after write failed");
                }
            }
        }
        Ok(())
    }

    /// Runs one confirmed request, bounded by every attempt's timeout; keeps the counters, and
    /// treats any answer (Error, Reject and Abort PDUs included) as proof that the device lives.
    async fn exchange<T>(
        &mut self,
        service: &'static str,
        request: impl Future<Output = Result<T, BacnetError>>,
    ) -> Result<T, DriverError> {
        self.health.count(|c| c.requests += 1);
        let answer = match timeout(self.net.cfg.request_deadline(), request).await {
            Err(_) => Err(DriverError::Timeout),
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(driver_error(service, error)),
        };
        match &answer {
            Ok(_) => {
                self.health.count(|c| c.responses += 1);
                self.answered();
            }
            Err(DriverError::Timeout) => self.health.count(|c| c.timeouts += 1),
            Err(
                error @ (DriverError::BacnetError { .. }
                | DriverError::BacnetReject { .. }
                | DriverError::BacnetAbort { .. }),
            ) => {
                self.health.count(|c| {
                    c.responses += 1;
                    c.exceptions += 1;
                });
                self.answered();
                self.health.set_last_error(error.to_string());
            }
            Err(_) => self.health.count(|c| c.transport_errors += 1),
        }
        answer
    }

    fn answered(&mut self) {
        self.backoff.reset();
        self.health.set_online();
    }

    async fn go_offline(&mut self, error: &DriverError) {
        let message = match error {
            DriverError::Timeout => format!(
                "device {} did not answer within {} ms ({} attempts)",
                self.cfg.instance,
                self.net.cfg.apdu_timeout.as_millis(),
                u32::from(self.net.cfg.apdu_retries) + 1
            ),
            other => other.to_string(),
        };
        self.health.set_offline(message);
        // Subscriptions are re-made when the device is back (it may have restarted).
        self.cov.clear();
        for index in 0..self.points.len() {
            if self.is_polled(index) {
                self.updates.publish(index, None).await;
            }
        }
    }
}

fn oid_text(oid: ObjectIdentifier) -> String {
    super::point::ObjectRef::from_identifier(oid).to_string()
}

/// Maps a rusty-bacnet error onto the device face's error: device answers (Error, Reject,
/// Abort PDUs, Clause 20.1.5-7) stay apart from timeouts and transport failures.
pub(super) fn driver_error(service: &'static str, error: BacnetError) -> DriverError {
    match error {
        BacnetError::Remote(RemoteError::Error { class, code })
        | BacnetError::Structured { class, code, .. } => DriverError::BacnetError {
            service,
            class: class.to_raw(),
            code: code.to_raw(),
        },
        BacnetError::Remote(RemoteError::Reject { reason }) => DriverError::BacnetReject {
            service,
            reason: reason.to_raw(),
        },
        // rusty-bacnet reports its own transaction timeout (retries exhausted) as an Abort
        // with reason tsm-timeout rather than as `Error::Timeout`.
        BacnetError::Remote(RemoteError::Abort { reason })
            if reason == AbortReason::TSM_TIMEOUT =>
        {
            DriverError::Timeout
        }
        BacnetError::Remote(RemoteError::Abort { reason }) => DriverError::BacnetAbort {
            service,
            reason: reason.to_raw(),
        },
        BacnetError::Timeout(_) => DriverError::Timeout,
        other => DriverError::Transport(format!("{service}: {other}")),
    }
}
