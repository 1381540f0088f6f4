//! The room domain: rooms, bookings, policies, capability actions and scenes.
//!
//! These are domain types, not wire or config formats: the gateway converts its site file and
//! the hub's payloads into them at the edge.

use std::fmt;
use std::sync::Arc;

use crate::time::{Span, Timestamp};

/// A room's id as the site file names it (`"r101"`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomId(Arc<str>);

/// A booking's id, as the hub (or the gateway, for local bookings) assigned it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BookingId(Arc<str>);

macro_rules! string_id {
    ($t:ident) => {
        impl $t {
            pub fn new(s: impl Into<Arc<str>>) -> Self {
                $t(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<&str> for $t {
            fn from(s: &str) -> Self {
                $t(s.into())
            }
        }
    };
}
string_id!(RoomId);
string_id!(BookingId);

/// How a room is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    /// Booked through the hub or the door panel; the meeting lifecycle applies.
    Bookable,
    /// No booking needed: presence makes it occupied, absence frees it.
    InstantUse,
    /// Long-term occupied or out of service; refuses bookings, check-ins and automation.
    Closed,
}

/// A booking of one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    pub id: BookingId,
    pub room: RoomId,
    pub start: Timestamp,
    pub end: Timestamp,
    pub subject: String,
    /// The organizer's identity (an e-mail address, as the directory knows people).
    pub organizer: String,
    /// Invited people, by the same identity; they may open the door and check in.
    pub attendees: Vec<String>,
}

/// Someone who presented a credential at a room's reader, as the gateway's directory resolved
/// it: who they are (if known) and which groups they belong to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Presenter {
    pub person: Option<String>,
    pub groups: Vec<String>,
}

/// An air-quality measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AirMetric {
    Co2Ppm,
    Pm25,
    Voc,
    TemperatureC,
    HumidityPct,
}

impl fmt::Display for AirMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AirMetric::Co2Ppm => "CO2",
            AirMetric::Pm25 => "PM2.5",
            AirMetric::Voc => "VOC",
            AirMetric::TemperatureC => "temperature",
            AirMetric::HumidityPct => "humidity",
        })
    }
}

/// A threshold rule with hysteresis: above `on_above` run `on`, back below `off_below` run
/// `off`. Active only while the room is in use.
#[derive(Debug, Clone, PartialEq)]
pub struct AirRule {
    pub metric: AirMetric,
    pub on_above: f32,
    pub off_below: f32,
    pub on: Vec<Action>,
    pub off: Vec<Action>,
}

/// Who may open a room's door besides the meeting's organizer and attendees.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccessPolicy {
    /// Directory groups that may always enter (cleaning, facilities, security).
    pub staff_groups: Vec<String>,
    /// How long the lock stays open after a granted credential.
    pub unlock_for: Span,
}

/// The colour of the status light above the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusLight {
    Off,
    Green,
    Yellow,
    YellowBlinking,
    Red,
}

/// What a door sign shows (PRODUCT.md, "Room states").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomState {
    /// No meeting now or within the "starting soon" window.
    Free,
    /// A booking starts within the window, or has started and waits for check-in.
    StartingSoon,
    /// A booking is running (checked in, or check-in not required).
    InMeeting,
    /// An instant-use room with presence and no booking.
    Occupied,
    /// Not bookable.
    Closed,
}

impl RoomState {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomState::Free => "free",
            RoomState::StartingSoon => "starting_soon",
            RoomState::InMeeting => "in_meeting",
            RoomState::Occupied => "occupied",
            RoomState::Closed => "closed",
        }
    }
}

impl fmt::Display for RoomState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the room's presence sensors say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupancy {
    Occupied,
    Vacant,
    /// No sensor, or the sensor is unavailable: never release anything on missing data.
    Unknown,
}

/// HVAC operating modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HvacMode {
    Heat,
    Cool,
    Auto,
    Fan,
}

/// One command to one room capability. The gateway maps it onto the room's bound points.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Lights on or off; `level` in percent where the room has dimmable lights.
    Lights {
        on: bool,
        level: Option<u8>,
    },
    Hvac {
        on: bool,
        mode: Option<HvacMode>,
        setpoint_c: Option<f32>,
    },
    /// Curtain position in percent open (0 closed, 100 open).
    Curtains {
        position: u8,
    },
    Sockets {
        on: bool,
    },
    StatusLight(StatusLight),
    /// Projector power relay.
    Projector {
        on: bool,
    },
    /// Motorised projection screen.
    Screen {
        down: bool,
    },
    /// Ventilation (fresh air) level in percent, 0 = off.
    Ventilation {
        level: u8,
    },
    /// Air purifier power.
    Purifier {
        on: bool,
    },
    /// HVAC fan level in percent.
    HvacFan {
        level: u8,
    },
    /// The door lock; an unlock is followed by a lock after the access policy's time.
    DoorLock {
        unlocked: bool,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Lights { on: false, .. } => f.write_str("lights off"),
            Action::Lights {
                on: true,
                level: Some(l),
            } => write!(f, "lights {l}%"),
            Action::Lights { on: true, .. } => f.write_str("lights on"),
            Action::Hvac { on: false, .. } => f.write_str("hvac off"),
            Action::Hvac {
                on: true,
                mode,
                setpoint_c,
            } => {
                f.write_str("hvac on")?;
                if let Some(m) = mode {
                    write!(f, " {m:?}")?;
                }
                if let Some(s) = setpoint_c {
                    write!(f, " {s:.1}C")?;
                }
                Ok(())
            }
            Action::Curtains { position } => write!(f, "curtains {position}%"),
            Action::Sockets { on } => write!(f, "sockets {}", if *on { "on" } else { "off" }),
            Action::StatusLight(c) => write!(f, "status light {c:?}"),
            Action::Projector { on } => write!(f, "projector {}", if *on { "on" } else { "off" }),
            Action::Screen { down } => write!(f, "screen {}", if *down { "down" } else { "up" }),
            Action::Ventilation { level: 0 } => f.write_str("ventilation off"),
            Action::Ventilation { level } => write!(f, "ventilation {level}%"),
            Action::Purifier { on } => write!(f, "purifier {}", if *on { "on" } else { "off" }),
            Action::HvacFan { level } => write!(f, "hvac fan {level}%"),
            Action::DoorLock { unlocked: true } => f.write_str("door unlocked"),
            Action::DoorLock { unlocked: false } => f.write_str("door locked"),
        }
    }
}

/// The kinds of equipment a room has, so the engine commands only what exists (a leave scene
/// says "projector off" only where there is a projector).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Equipment {
    pub lights: bool,
    pub hvac: bool,
    pub curtains: bool,
    pub sockets: bool,
    pub status_light: bool,
    pub projector: bool,
    pub screen: bool,
    pub ventilation: bool,
    pub purifier: bool,
    pub hvac_fan: bool,
    pub door_lock: bool,
}

impl Equipment {
    /// Every kind of equipment (the engine's default when a room does not say).
    pub const ALL: Equipment = Equipment {
        lights: true,
        hvac: true,
        curtains: true,
        sockets: true,
        status_light: true,
        projector: true,
        screen: true,
        ventilation: true,
        purifier: true,
        hvac_fan: true,
        door_lock: true,
    };
    /// No equipment at all.
    pub const NONE: Equipment = Equipment {
        lights: false,
        hvac: false,
        curtains: false,
        sockets: false,
        status_light: false,
        projector: false,
        screen: false,
        ventilation: false,
        purifier: false,
        hvac_fan: false,
        door_lock: false,
    };

    /// Whether the room has the equipment this action drives.
    pub fn has(&self, action: &Action) -> bool {
        match action {
            Action::Lights { .. } => self.lights,
            Action::Hvac { .. } => self.hvac,
            Action::Curtains { .. } => self.curtains,
            Action::Sockets { .. } => self.sockets,
            Action::StatusLight(_) => self.status_light,
            Action::Projector { .. } => self.projector,
            Action::Screen { .. } => self.screen,
            Action::Ventilation { .. } => self.ventilation,
            Action::Purifier { .. } => self.purifier,
            Action::HvacFan { .. } => self.hvac_fan,
            Action::DoorLock { .. } => self.door_lock,
        }
    }
}

/// One step of a scene.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Do(Action),
    /// Wait before the next step (curtains before projector).
    Wait(Span),
}

/// A named, ordered set of steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub name: String,
    pub steps: Vec<Step>,
}

impl Scene {
    pub fn new(name: impl Into<String>, steps: Vec<Step>) -> Self {
        Scene {
            name: name.into(),
            steps,
        }
    }

    /// The built-in meeting scene: lights full, sockets on, curtains open.
    pub fn default_meeting() -> Self {
        Scene::new(
            "meeting",
            vec![
                Step::Do(Action::Lights {
                    on: true,
                    level: Some(100),
                }),
                Step::Do(Action::Sockets { on: true }),
                Step::Do(Action::Curtains { position: 100 }),
            ],
        )
    }

    /// The built-in leave scene (PRODUCT.md: curtains up, lights off, sockets off, HVAC off;
    /// also projector, screen and ventilation back to rest where a room has them).
    pub fn default_leave() -> Self {
        Scene::new(
            "leave",
            vec![
                Step::Do(Action::Projector { on: false }),
                Step::Do(Action::Screen { down: false }),
                Step::Do(Action::Ventilation { level: 0 }),
                Step::Do(Action::Purifier { on: false }),
                Step::Do(Action::Curtains { position: 100 }),
                Step::Do(Action::Lights {
                    on: false,
                    level: None,
                }),
                Step::Do(Action::Sockets { on: false }),
                Step::Do(Action::Hvac {
                    on: false,
                    mode: None,
                    setpoint_c: None,
                }),
            ],
        )
    }

    /// The light level this scene sets, used to restore lights after a vacancy step-down.
    pub fn light_action(&self) -> Option<&Action> {
        self.steps.iter().find_map(|s| match s {
            Step::Do(a @ Action::Lights { .. }) => Some(a),
            _ => None,
        })
    }
}

/// Per-room automation policy; defaults are PRODUCT.md's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// A booking within this window makes the room "starting soon".
    pub starting_soon: Span,
    /// HVAC switches on this long before start (pre-heat / pre-cool).
    pub hvac_lead: Span,
    /// Lights and sockets (the meeting scene) this long before start.
    pub lights_lead: Span,
    /// Check-in is accepted from this long before start.
    pub checkin_opens: Span,
    /// Whether a booking must be checked in at all; if not, it runs as booked.
    pub checkin_required: bool,
    /// Presence in the check-in window counts as check-in.
    pub checkin_on_presence: bool,
    /// Not checked in by start + this: the booking is released as a no-show.
    pub no_show_after: Span,
    /// Vacancy during a meeting for this long ends it early; `None` disables (unreliable sensors).
    pub vacancy_release: Option<Span>,
    /// Staged shutdown: lights step down after this much vacancy.
    pub dim_after: Span,
    /// The level lights step down to, in percent.
    pub dim_level: u8,
    /// Staged shutdown: everything off after this much vacancy (never above 20 min).
    pub off_after: Span,
    /// A following booking that starts within this gap of the end is back-to-back: no leave scene.
    pub back_to_back_gap: Span,
    /// HVAC setpoint and mode used when preparing a room.
    pub hvac_setpoint_c: f32,
    pub hvac_mode: HvacMode,
    /// What the status light shows while the room is closed.
    pub closed_light: StatusLight,
    /// A manual scene holds automation off for this long; then automation resumes.
    pub override_hold: Span,
    /// Presence must last this long before an instant-use room counts as occupied (a person
    /// walking past the door is not a walk-in).
    pub walk_in_confirm: Span,
    /// Whether a card or QR of the organizer or an attendee checks the meeting in.
    pub checkin_by_card: bool,
    /// Whether the door panel asks for the booking's PIN before a check-in (instead of a bare
    /// button). The engine does not use it: the gateway's panel checks the PIN.
    pub checkin_pin: bool,
}

/// Energy codes: lights off within 20 minutes of vacancy.
pub const MAX_LIGHTS_IN_EMPTY_ROOM: Span = Span::minutes(20);

impl Default for Policy {
    fn default() -> Self {
        Policy {
            starting_soon: Span::minutes(15),
            hvac_lead: Span::minutes(15),
            lights_lead: Span::minutes(2),
            checkin_opens: Span::minutes(15),
            checkin_required: true,
            checkin_on_presence: false,
            no_show_after: Span::minutes(10),
            vacancy_release: Some(Span::minutes(15)),
            dim_after: Span::minutes(5),
            dim_level: 30,
            off_after: Span::minutes(15),
            back_to_back_gap: Span::minutes(5),
            hvac_setpoint_c: 21.5,
            hvac_mode: HvacMode::Auto,
            closed_light: StatusLight::Red,
            override_hold: Span::minutes(60),
            walk_in_confirm: Span::seconds(30),
            checkin_by_card: true,
            checkin_pin: false,
        }
    }
}

/// A policy that cannot be honoured, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "{field} must not exceed 20 min: energy codes require lights off within 20 min of vacancy (got {got})"
    )]
    LightsTooLongInEmptyRoom { field: &'static str, got: Span },
    #[error(
        "dim_after ({dim}) must be shorter than off_after ({off}): lights step down before everything goes off"
    )]
    DimAfterOff { dim: Span, off: Span },
    #[error("{field} must be greater than zero")]
    Zero { field: &'static str },
    #[error("dim_level must be between 1 and 99 percent (got {0})")]
    DimLevel(u8),
    #[error("hvac_setpoint_c must be between 5 and 35 degrees C (got {0})")]
    Setpoint(String),
    #[error(
        "an air rule for {metric} must switch off below the level it switches on above ({off_below} is not below {on_above})"
    )]
    AirHysteresis {
        metric: AirMetric,
        on_above: String,
        off_below: String,
    },
}

impl Policy {
    /// Checks the policy against the product's hard limits.
    pub fn validate(&self) -> Result<(), Vec<PolicyError>> {
        let mut errors = Vec::new();
        let limit = MAX_LIGHTS_IN_EMPTY_ROOM;
        if self.off_after > limit {
            errors.push(PolicyError::LightsTooLongInEmptyRoom {
                field: "off_after",
                got: self.off_after,
            });
        }
        if let Some(v) = self.vacancy_release
            && v > limit
        {
            errors.push(PolicyError::LightsTooLongInEmptyRoom {
                field: "vacancy_release",
                got: v,
            });
        }
        if self.dim_after >= self.off_after {
            errors.push(PolicyError::DimAfterOff {
                dim: self.dim_after,
                off: self.off_after,
            });
        }
        if self.no_show_after <= Span::ZERO {
            errors.push(PolicyError::Zero {
                field: "no_show_after",
            });
        }
        if self.off_after <= Span::ZERO {
            errors.push(PolicyError::Zero { field: "off_after" });
        }
        if self.vacancy_release.is_some_and(|v| v <= Span::ZERO) {
            errors.push(PolicyError::Zero {
                field: "vacancy_release",
            });
        }
        if !(1..=99).contains(&self.dim_level) {
            errors.push(PolicyError::DimLevel(self.dim_level));
        }
        if !(5.0..=35.0).contains(&self.hvac_setpoint_c) {
            errors.push(PolicyError::Setpoint(self.hvac_setpoint_c.to_string()));
        }
        if self.override_hold <= Span::ZERO {
            errors.push(PolicyError::Zero {
                field: "override_hold",
            });
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl AirRule {
    /// Hysteresis needs a gap: off below a level strictly under the on level.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.off_below.is_finite() && self.on_above.is_finite() && self.off_below < self.on_above
        {
            Ok(())
        } else {
            Err(PolicyError::AirHysteresis {
                metric: self.metric,
                on_above: self.on_above.to_string(),
                off_below: self.off_below.to_string(),
            })
        }
    }
}

/// Everything the engine needs to know about one room. Scenes are shared (`Arc`) between
/// rooms built from the same template.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    pub id: RoomId,
    pub name: String,
    pub kind: RoomKind,
    pub policy: Policy,
    /// Run when a meeting is prepared (lights lead) or starts.
    pub meeting_scene: Arc<Scene>,
    /// Run when the room is left: meeting end, release, staged shutdown.
    pub leave_scene: Arc<Scene>,
    /// Run when an instant-use room becomes occupied.
    pub walk_in_scene: Arc<Scene>,
    /// Other scenes that may be run by name (manual, from the panel or the web).
    pub extra_scenes: Vec<Arc<Scene>>,
    /// Who may open the door.
    pub access: AccessPolicy,
    /// Air-quality rules, active while the room is in use.
    pub air: Vec<AirRule>,
    /// What the room has; commands for anything else are not emitted.
    pub equipment: Equipment,
}

impl RoomConfig {
    pub fn new(id: &str, name: &str, kind: RoomKind) -> Self {
        RoomConfig {
            id: RoomId::from(id),
            name: name.to_owned(),
            kind,
            policy: Policy::default(),
            meeting_scene: Arc::new(Scene::default_meeting()),
            leave_scene: Arc::new(Scene::default_leave()),
            walk_in_scene: Arc::new(Scene::default_meeting()),
            extra_scenes: Vec::new(),
            access: AccessPolicy {
                staff_groups: Vec::new(),
                unlock_for: Span::seconds(5),
            },
            air: Vec::new(),
            equipment: Equipment::ALL,
        }
    }

    /// Finds a scene by name among every scene the room knows.
    pub fn scene(&self, name: &str) -> Option<&Arc<Scene>> {
        [&self.meeting_scene, &self.leave_scene, &self.walk_in_scene]
            .into_iter()
            .chain(self.extra_scenes.iter())
            .find(|s| s.name == name)
    }
}
