//! A changed site applied by the main loop without a restart: the field owners in the plan
//! stop and start (the others keep their connections and queues), then the bindings, the
//! rooms in the engine, the people directory and the `Site` the loop reads are swapped.
//!
//! Order: new owners are up before anything points at them; owners that are replaced stop
//! first (they hold the socket or serial line their successor opens). If an owner cannot
//! start, everything started for the change is stopped, the replaced owners are started again
//! from the old site, and the old configuration keeps running: the answer says why. The
//! engine and the bindings change only after the field did, and cannot fail on a validated
//! site.

use std::collections::HashMap;
use std::sync::Arc;

use scenes::{RoomId, Timestamp};

use super::{ApiError, Capability, MainLoop, PointRef, RECENT_ACTIVITY, spawn_writer, to_booking};
use crate::reload::{FieldChange, ReloadReport, field_change, plan_lines};
use crate::site::{ReloadAction, Site};
use crate::telemetry::Sampler;

impl MainLoop {
    /// Plans, and unless `dry_run` applies, the change from the running site to `new`.
    pub(super) async fn apply_site(
        &mut self,
        new: Site,
        dry_run: bool,
    ) -> Result<ReloadReport, ApiError> {
        let now = self.clock.now();
        let plan = crate::site::plan(&self.site, &new);
        let mut report = ReloadReport {
            applied: false,
            plan: plan_lines(&plan),
            kept_bookings: Vec::new(),
            pending_restart: Vec::new(),
        };
        if let Some(cloud) = &plan.cloud {
            // The agent's connection is made once, at start; telemetry is the loop's own.
            let connection: Vec<&String> = (cloud.reasons.iter())
                .filter(|r| r.as_str() != "telemetry changed")
                .collect();
            if cloud.action != ReloadAction::Restart || !connection.is_empty() {
                report.pending_restart.push(format!(
                    "the cloud agent: {} (its connection is made when the gateway starts)",
                    cloud.reasons.join("; ")
                ));
            }
        }
        if dry_run {
            return Ok(report);
        }
        if !plan.full_restart.is_empty() {
            return Err(ApiError::Refused(format!(
                "this change needs the gateway restarted, nothing was applied: {}",
                plan.full_restart.join("; ")
            )));
        }
        let change = field_change(&plan, &self.site, &new);
        if !change.is_empty() {
            self.change_field(&new, &change).await?;
        }

        // 4. Rooms: removed ones hand back their bookings (kept in the store), new ones get
        //    theirs from the store, changed ones keep their state under the new settings.
        self.engine.handle_timeout(now);
        self.drain(now);
        for (id, r) in &plan.rooms {
            let room = RoomId::from(id.as_str());
            match r.action {
                ReloadAction::Stop => match self.close_then_remove(now, &room) {
                    Ok(kept) => {
                        for b in kept {
                            tracing::warn!(
                                "room {id} removed: booking {} kept in the store, not run",
                                b.id
                            );
                            report.kept_bookings.push(self.booking_dto(&b, false));
                        }
                        self.recent.remove(&room);
                    }
                    Err(e) => tracing::warn!("room {id} not removed: {e}"),
                },
                ReloadAction::Start => {
                    let Some(rs) = new.room(id) else { continue };
                    if let Err(e) = self.engine.add_room(rs.config.clone()) {
                        tracing::warn!("room {id} not added: {e}");
                        continue;
                    }
                    self.restore_room(now, &room);
                    let text = format!("room added to the site: {}", r.reasons.join("; "));
                    self.log(&room, "config", text, now);
                }
                ReloadAction::Restart | ReloadAction::Reconfigure => {
                    let Some(rs) = new.room(id) else { continue };
                    if let Err(e) = self.engine.reconfigure_room(now, rs.config.clone()) {
                        tracing::warn!("room {id} not reconfigured: {e}");
                        continue;
                    }
                    let text = format!("room settings changed: {}", r.reasons.join("; "));
                    self.log(&room, "config", text, now);
                }
            }
        }
        // 5. Bindings, the directory and everything else the site says: swapped whole.
        self.inputs = inputs_of(&new);
        let telemetry_changed = (self.site.cloud.as_ref()).and_then(|c| c.telemetry.as_ref())
            != new.cloud.as_ref().and_then(|c| c.telemetry.as_ref());
        if telemetry_changed {
            // A new selection starts afresh, on the hub link as it is now.
            let link_up = self.sampler.as_ref().is_some_and(Sampler::link_up);
            self.sampler = (new.cloud.as_ref())
                .and_then(|c| c.telemetry.as_ref())
                .map(|cfg| {
                    let mut sampler = Sampler::new(cfg, now);
                    sampler.set_link(link_up);
                    sampler
                });
        }
        self.site = Arc::new(new);
        // Commands of reconfigured rooms go out through the new bindings.
        self.drain(now);
        report.applied = true;
        tracing::info!("site reloaded: {}", report.plan.join("; "));
        Ok(report)
    }

    /// The field part of a reload: owners stop and start, then their writers follow.
    async fn change_field(&mut self, new: &Site, change: &FieldChange) -> Result<(), ApiError> {
        let field = Arc::clone(&self.field);
        let mut field = field.lock().await;
        // 1. Owners that replace nothing: a failure here has touched nothing running.
        let mut started = match field.start_parts(new, &change.fresh, &self.outputs).await {
            Ok(ids) => ids,
            Err(e) => {
                field.stop_parts(&change.fresh).await;
                return Err(ApiError::Unavailable(format!(
                    "the new site could not start, nothing was changed: {e}"
                )));
            }
        };
        // 2. Replaced and removed owners stop; their successors start from the new site.
        let stopped = field.stop_parts(&change.stop).await;
        let failed = match field.start_parts(new, &change.restart, &self.outputs).await {
            Ok(ids) => {
                started.extend(ids);
                None
            }
            Err(e) => {
                // Back to the old configuration: what started goes, what stopped returns.
                field.stop_parts(&change.restart).await;
                field.stop_parts(&change.fresh).await;
                let site = Arc::clone(&self.site);
                let back = field.start_parts(&site, &change.stop, &self.outputs).await;
                let old = match back {
                    Ok(ids) => {
                        started = ids;
                        "the previous configuration runs again".to_owned()
                    }
                    Err(e2) => {
                        started = Vec::new();
                        format!("the previous configuration could not start again either: {e2}")
                    }
                };
                Some(format!("the new site could not start: {e}; {old}"))
            }
        };
        // 3. Writers follow the owners; values and link states of stopped owners are gone.
        for id in &stopped {
            self.writers.remove(id);
            self.device_states.remove(id);
            self.values.retain(|p, _| &p.device != id);
        }
        for id in &started {
            if let Some(handle) = field.devices.get(id) {
                let writer = spawn_writer(handle.clone(), self.failures_tx.clone());
                self.writers.insert(id.clone(), writer);
            }
        }
        self.devices = field.devices.clone();
        let site = if failed.is_some() { &*self.site } else { new };
        self.buses = (site.buses.iter())
            .filter_map(|b| field.buses.get(&b.id))
            .map(drivers::modbus::rtu::RtuBus::watch_stats)
            .collect();
        match failed {
            Some(why) => {
                tracing::error!("site reload refused: {why}");
                Err(ApiError::Unavailable(why))
            }
            None => Ok(()),
        }
    }

    /// A room leaving the site is first closed through its old bindings, so its devices go to
    /// rest and a running meeting ends once; then the engine lets it go and hands back its
    /// bookings still to come.
    fn close_then_remove(
        &mut self,
        now: Timestamp,
        room: &RoomId,
    ) -> Result<Vec<scenes::Booking>, scenes::EngineError> {
        if let Some(rs) = self.site.room(room.as_str()) {
            let mut cfg = rs.config.clone();
            cfg.kind = scenes::RoomKind::Closed;
            self.engine.reconfigure_room(now, cfg)?;
            self.drain(now);
        }
        self.engine.remove_room(room)
    }

    /// A room added by a reload takes its stored unfinished bookings (it may have been in the
    /// site before) and its recent activity.
    fn restore_room(&mut self, now: Timestamp, room: &RoomId) {
        let stored = match self.store.bookings() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("bookings of room {room} not loaded: {e}");
                return;
            }
        };
        for b in stored.iter().filter(|b| b.room == room.as_str()) {
            if b.end_ms <= now.as_millis() || b.finished_ms.is_some() {
                continue;
            }
            let checked_in = b.checked_in_ms.map(Timestamp::from_millis);
            if let Err(e) = self.engine.restore_booking(to_booking(b), checked_in) {
                tracing::warn!("stored booking {} not restored: {e}", b.id);
            }
        }
        match self.store.activity(room.as_str(), RECENT_ACTIVITY) {
            Ok(rows) => {
                let recent = rows.into_iter().map(|a| self.activity_dto(a)).collect();
                self.recent.insert(room.clone(), recent);
            }
            Err(e) => tracing::error!("activity of room {room} not loaded: {e}"),
        }
    }
}

/// Points the engine listens to: presence and air quality, per room (a sensor may serve more
/// than one room).
pub(super) fn inputs_of(site: &Site) -> HashMap<PointRef, Vec<(RoomId, Capability)>> {
    let mut inputs: HashMap<PointRef, Vec<(RoomId, Capability)>> = HashMap::new();
    for r in &site.rooms {
        for (cap, p) in &r.bindings {
            if *cap == Capability::Occupancy || cap.air_metric().is_some() {
                inputs
                    .entry(p.clone())
                    .or_default()
                    .push((r.config.id.clone(), *cap));
            }
        }
    }
    inputs
}
