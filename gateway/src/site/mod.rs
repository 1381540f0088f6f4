//! The site file: the floor's rooms, devices, points, bindings, scenes and policies.
//!
//! `SiteFile` is the TOML wire format; `Site` is the validated model the gateway runs. Loading
//! either returns a whole `Site` or every error found, each with its line, column and path,
//! so bad configuration never half-loads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use drivers::bacnet::BacnetNetworkConfig;
use drivers::point::Access;
use drivers::serial::ProfileSpec;
use std::sync::Arc;

use scenes::{
    AccessPolicy, Action, AirMetric, AirRule, Equipment, HvacMode, Policy, RoomConfig, RoomId,
    RoomKind, Scene, StatusLight, Step,
};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::duration::parse_span;

mod csv;
mod devices;
mod diff;
pub mod edit;
mod export;
mod telemetry;

pub use self::csv::{
    CsvError, ImportedPoint, PointImport, PointsCsvError, export_points, import_points,
};
pub use devices::{Bus, Device, DeviceKind, PointDef, PointProtocol};
pub use diff::{
    Change, ChangeKind, Reload, ReloadAction, ReloadPlan, Section, SiteDiff, diff, plan,
};
pub use export::{ExportError, SiteDocument};

// ---------------------------------------------------------------------------------------
// Wire format (what installers write)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    site: SiteSection,
    #[serde(default, skip_serializing_if = "DefaultsSection::is_empty")]
    defaults: DefaultsSection,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    devices: Vec<devices::DeviceFile>,
    /// RS-485 lines (or serial servers) carrying Modbus RTU units.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    buses: Vec<devices::BusFile>,
    /// The BACnet/IP network settings (defaults suit a flat network).
    bacnet: Option<devices::BacnetFile>,
    /// Serial line profiles by name (see the drivers' `serial` docs for the format). Not
    /// serialized: `export::SiteDocument` keeps them as written.
    #[serde(default, skip_serializing)]
    serial_profiles: BTreeMap<String, ProfileSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scenes: Vec<SceneFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    templates: Vec<TemplateFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    rooms: Vec<RoomFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    people: Vec<PersonFile>,
    /// The connection to the central hub (optional: without it the gateway runs alone).
    cloud: Option<CloudFile>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CloudFile {
    /// The broker, "host:port" (8883 for MQTT over TLS).
    broker: Spanned<String>,
    /// This gateway's identity: its site and id (the client certificate's CN is "site/gateway").
    site: Spanned<String>,
    gateway: Spanned<String>,
    /// PEM files: the CA that signed the broker's certificate, this gateway's certificate, key.
    ca: Option<Spanned<String>>,
    cert: Option<Spanned<String>>,
    key: Option<Spanned<String>>,
    /// Plain TCP without TLS: only for a lab, and only when said explicitly.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    tls: bool,
    /// Point values sent to the hub (`[cloud.telemetry]`); without it, none.
    telemetry: Option<Spanned<telemetry::TelemetryFile>>,
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

/// Where and as whom the gateway syncs with the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct Cloud {
    pub host: String,
    pub port: u16,
    pub id: cloud_sync::topics::GatewayId,
    /// CA, certificate and key files; `None` only when `tls = false`.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)>,
    /// Which point values go up to the hub, and how often (`[cloud.telemetry]`).
    pub telemetry: Option<crate::telemetry::TelemetryConfig>,
}

/// Someone the door readers and panels may recognise. (The hub will provide the directory;
/// the site file keeps a local one for offline operation and small sites.)
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonFile {
    /// The identity bookings use (organizer, attendees): usually an e-mail address.
    id: Spanned<String>,
    name: Option<String>,
    /// Card numbers and QR payloads, as the readers send them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    credentials: Vec<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
}

/// Settings shared by rooms of one type; a room names it with `template` and overrides any.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    id: Spanned<String>,
    meeting_scene: Option<Spanned<String>>,
    leave_scene: Option<Spanned<String>>,
    walk_in_scene: Option<Spanned<String>>,
    scenes: Option<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "PolicyFile::is_empty")]
    policy: PolicyFile,
    access: Option<AccessFile>,
    air: Option<Vec<Spanned<AirRuleFile>>>,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct AccessFile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    staff_groups: Vec<String>,
    unlock_for: Option<Spanned<String>>,
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum MetricFile {
    Co2,
    Pm25,
    Voc,
    Temperature,
    Humidity,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct AirRuleFile {
    metric: MetricFile,
    on_above: f64,
    off_below: f64,
    on: Vec<Spanned<StepFile>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    off: Vec<Spanned<StepFile>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteSection {
    name: String,
    timezone: Option<Spanned<String>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsSection {
    #[serde(default, skip_serializing_if = "PolicyFile::is_empty")]
    policy: PolicyFile,
}

impl DefaultsSection {
    fn is_empty(&self) -> bool {
        self.policy.is_empty()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SceneFile {
    name: Spanned<String>,
    steps: Vec<Spanned<StepFile>>,
}

/// One scene step; exactly one of the action keys (or `wait`) must be set.
#[derive(Debug, Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct StepFile {
    lights: Option<OnOffOrLevel>,
    sockets: Option<OnOffOrLevel>,
    curtains: Option<i64>,
    hvac: Option<OnOffOrLevel>,
    mode: Option<HvacModeFile>,
    setpoint: Option<f64>,
    projector: Option<OnOffOrLevel>,
    /// "down" or "up".
    screen: Option<String>,
    /// 0..=100 %, or "off".
    ventilation: Option<OnOffOrLevel>,
    purifier: Option<OnOffOrLevel>,
    /// HVAC fan level 0..=100 %.
    fan: Option<i64>,
    wait: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
#[serde(untagged)]
enum OnOffOrLevel {
    Word(String),
    Level(i64),
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum HvacModeFile {
    Heat,
    Cool,
    Auto,
    Fan,
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum KindFile {
    Bookable,
    InstantUse,
    Closed,
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum ClosedLightFile {
    Red,
    Off,
}

#[derive(Debug, Default, Serialize, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    starting_soon: Option<Spanned<String>>,
    hvac_lead: Option<Spanned<String>>,
    lights_lead: Option<Spanned<String>>,
    checkin_opens: Option<Spanned<String>>,
    checkin_required: Option<bool>,
    checkin_on_presence: Option<bool>,
    no_show_after: Option<Spanned<String>>,
    /// A duration, or "off" for rooms with unreliable sensors.
    vacancy_release: Option<Spanned<String>>,
    dim_after: Option<Spanned<String>>,
    dim_level: Option<Spanned<i64>>,
    off_after: Option<Spanned<String>>,
    back_to_back_gap: Option<Spanned<String>>,
    hvac_setpoint: Option<Spanned<f64>>,
    hvac_mode: Option<HvacModeFile>,
    closed_light: Option<ClosedLightFile>,
    override_hold: Option<Spanned<String>>,
    walk_in_confirm: Option<Spanned<String>>,
    checkin_by_card: Option<bool>,
    checkin_pin: Option<bool>,
}

impl PolicyFile {
    /// Whether nothing is set (then the section is left out of an exported file).
    fn is_empty(&self) -> bool {
        toml::Table::try_from(self).is_ok_and(|t| t.is_empty())
    }

    /// `self` where set, else `base`: a room's policy over its template's.
    fn over(&self, base: &PolicyFile) -> PolicyFile {
        macro_rules! pick {
            ($($f:ident),*) => { PolicyFile { $($f: self.$f.clone().or_else(|| base.$f.clone())),* } };
        }
        pick!(
            starting_soon,
            hvac_lead,
            lights_lead,
            checkin_opens,
            checkin_required,
            checkin_on_presence,
            no_show_after,
            vacancy_release,
            dim_after,
            dim_level,
            off_after,
            back_to_back_gap,
            hvac_setpoint,
            hvac_mode,
            closed_light,
            override_hold,
            walk_in_confirm,
            checkin_by_card,
            checkin_pin
        )
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomFile {
    id: Spanned<String>,
    name: String,
    /// 0 (the default) means "not given": the site file leaves it out when written back.
    #[serde(default, skip_serializing_if = "is_zero")]
    capacity: u32,
    kind: KindFile,
    template: Option<Spanned<String>>,
    access: Option<AccessFile>,
    air: Option<Vec<Spanned<AirRuleFile>>>,
    meeting_scene: Option<Spanned<String>>,
    leave_scene: Option<Spanned<String>>,
    walk_in_scene: Option<Spanned<String>>,
    /// Extra scenes offered on this room's panel and page (default: every site scene).
    scenes: Option<Vec<Spanned<String>>>,
    #[serde(default, skip_serializing_if = "PolicyFile::is_empty")]
    policy: PolicyFile,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    bindings: BTreeMap<String, Spanned<String>>,
}

// ---------------------------------------------------------------------------------------
// The validated model
// ---------------------------------------------------------------------------------------

/// A validated site.
#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    pub timezone: jiff::tz::TimeZone,
    pub timezone_name: String,
    pub devices: Vec<Device>,
    pub buses: Vec<Bus>,
    /// Present when the site has BACnet devices.
    pub bacnet: Option<BacnetNetworkConfig>,
    pub rooms: Vec<RoomSite>,
    pub people: Directory,
    pub cloud: Option<Cloud>,
}

/// A person the readers may recognise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: String,
    pub name: String,
    pub groups: Vec<String>,
}

/// The local directory: credentials (card numbers, QR payloads) to people.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    people: Vec<Person>,
    by_credential: HashMap<String, usize>,
}

impl Directory {
    /// Readers differ in case and padding; `04a1b2 ` and `04A1B2` are the same card.
    fn normalize(credential: &str) -> String {
        credential.trim().to_ascii_uppercase()
    }

    /// Who a credential belongs to, if anyone.
    pub fn lookup(&self, credential: &str) -> Option<&Person> {
        self.by_credential
            .get(&Self::normalize(credential))
            .and_then(|&i| self.people.get(i))
    }

    pub fn len(&self) -> usize {
        self.people.len()
    }

    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }
}

/// A point as the rest of the gateway names it: `device/point`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PointRef {
    pub device: String,
    pub point: String,
}

impl fmt::Display for PointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.device, self.point)
    }
}

/// The room capabilities a point can be bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    Light,
    LightLevel,
    HvacPower,
    HvacMode,
    HvacSetpoint,
    Curtain,
    Socket,
    StatusLight,
    Occupancy,
    Temperature,
    Co2,
    Projector,
    Screen,
    Ventilation,
    Purifier,
    HvacFan,
    DoorLock,
    Humidity,
    Pm25,
    Voc,
    /// A card/QR/PIN reader at the door (a serial device's reader).
    Reader,
}

impl Capability {
    pub const ALL: [Capability; 21] = [
        Capability::Light,
        Capability::LightLevel,
        Capability::HvacPower,
        Capability::HvacMode,
        Capability::HvacSetpoint,
        Capability::Curtain,
        Capability::Socket,
        Capability::StatusLight,
        Capability::Occupancy,
        Capability::Temperature,
        Capability::Co2,
        Capability::Projector,
        Capability::Screen,
        Capability::Ventilation,
        Capability::Purifier,
        Capability::HvacFan,
        Capability::DoorLock,
        Capability::Humidity,
        Capability::Pm25,
        Capability::Voc,
        Capability::Reader,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Capability::Light => "light",
            Capability::LightLevel => "light_level",
            Capability::HvacPower => "hvac_power",
            Capability::HvacMode => "hvac_mode",
            Capability::HvacSetpoint => "hvac_setpoint",
            Capability::Curtain => "curtain",
            Capability::Socket => "socket",
            Capability::StatusLight => "status_light",
            Capability::Occupancy => "occupancy",
            Capability::Temperature => "temperature",
            Capability::Co2 => "co2",
            Capability::Projector => "projector",
            Capability::Screen => "screen",
            Capability::Ventilation => "ventilation",
            Capability::Purifier => "purifier",
            Capability::HvacFan => "hvac_fan",
            Capability::DoorLock => "door_lock",
            Capability::Humidity => "humidity",
            Capability::Pm25 => "pm25",
            Capability::Voc => "voc",
            Capability::Reader => "reader",
        }
    }

    fn from_key(key: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.key() == key)
    }

    /// Whether the gateway writes this capability (else it only reads it).
    pub fn is_output(self) -> bool {
        self.air_metric().is_none() && !matches!(self, Capability::Occupancy | Capability::Reader)
    }

    fn wants_bool(self) -> bool {
        matches!(
            self,
            Capability::Light
                | Capability::HvacPower
                | Capability::Socket
                | Capability::Occupancy
                | Capability::Projector
                | Capability::Screen
                | Capability::Purifier
                | Capability::DoorLock
        )
    }

    /// The air-quality measure a read capability feeds, if it is one.
    pub fn air_metric(self) -> Option<AirMetric> {
        Some(match self {
            Capability::Co2 => AirMetric::Co2Ppm,
            Capability::Temperature => AirMetric::TemperatureC,
            Capability::Humidity => AirMetric::HumidityPct,
            Capability::Pm25 => AirMetric::Pm25,
            Capability::Voc => AirMetric::Voc,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct RoomSite {
    pub config: RoomConfig,
    pub capacity: u32,
    pub bindings: BTreeMap<Capability, PointRef>,
}

/// One problem in a site file, with where it is and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteError {
    /// 1-based line and column in the file, where known.
    pub line_col: Option<(usize, usize)>,
    /// The path of the offending value, e.g. `rooms[r101].bindings.light`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for SiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((l, c)) = self.line_col {
            write!(f, "{l}:{c}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every error found in a site file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SiteErrors(pub Vec<SiteError>);

impl fmt::Display for SiteErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

struct Checker<'a> {
    src: &'a str,
    errors: Vec<SiteError>,
    /// `device/point` of points that failed their own checks, so bindings to them say so.
    invalid_points: HashSet<String>,
    /// Policy errors already reported for the site defaults, not repeated for every room.
    default_policy_errors: HashSet<String>,
}

impl Checker<'_> {
    fn new(src: &str) -> Checker<'_> {
        Checker {
            src,
            errors: Vec::new(),
            invalid_points: HashSet::new(),
            default_policy_errors: HashSet::new(),
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.src[..offset.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.len(), |n| before.len() - n - 1)
            + 1;
        (line, col)
    }

    fn err<T>(&mut self, at: &Spanned<T>, path: impl Into<String>, message: impl Into<String>) {
        let lc = self.line_col(at.span().start);
        self.errors.push(SiteError {
            line_col: Some(lc),
            path: path.into(),
            message: message.into(),
        });
    }

    fn span_duration(
        &mut self,
        v: &Option<Spanned<String>>,
        path: &str,
        default: scenes::Span,
    ) -> scenes::Span {
        match v {
            None => default,
            Some(s) => match parse_span(s.get_ref()) {
                Ok(d) if d >= scenes::Span::ZERO => d,
                Ok(_) => {
                    self.err(s, path, "must not be negative");
                    default
                }
                Err(e) => {
                    self.err(s, path, e);
                    default
                }
            },
        }
    }
}

/// Parses and validates a site file; on failure returns every error found.
pub fn load(src: &str) -> Result<Site, SiteErrors> {
    load_file(src).map(|(_, site)| site)
}

/// [`load`], keeping the wire form too (for export, diffs and edits).
fn load_file(src: &str) -> Result<(SiteFile, Site), SiteErrors> {
    let file: SiteFile = toml::from_str(src).map_err(|e| {
        let mut ck = Checker::new(src);
        let lc = e.span().map(|s| ck.line_col(s.start));
        ck.errors.push(SiteError {
            line_col: lc,
            path: String::new(),
            message: e.message().trim().to_owned(),
        });
        SiteErrors(ck.errors)
    })?;
    let mut ck = Checker::new(src);
    let site = build(&mut ck, &file);
    if ck.errors.is_empty() {
        Ok((file, site))
    } else {
        // In file order; errors without a position (none today) last.
        ck.errors
            .sort_by_key(|e| e.line_col.unwrap_or((usize::MAX, usize::MAX)));
        Err(SiteErrors(ck.errors))
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A template with its access and air rules already checked.
type BuiltTemplate<'a> = (&'a TemplateFile, Option<AccessPolicy>, Option<Vec<AirRule>>);

fn build(ck: &mut Checker<'_>, file: &SiteFile) -> Site {
    let (timezone, timezone_name) = match &file.site.timezone {
        None => (jiff::tz::TimeZone::UTC, "UTC".to_owned()),
        Some(tz) => match jiff::tz::TimeZone::get(tz.get_ref()) {
            Ok(z) => (z, tz.get_ref().clone()),
            Err(_) => {
                ck.err(
                    tz,
                    "site.timezone",
                    format!(
                        "unknown time zone '{}': use an IANA name such as \"Europe/Berlin\"",
                        tz.get_ref()
                    ),
                );
                (jiff::tz::TimeZone::UTC, "UTC".to_owned())
            }
        },
    };

    let field = devices::build_field(
        ck,
        &file.devices,
        &file.buses,
        file.bacnet.as_ref(),
        &file.serial_profiles,
    );
    let devices = field.devices;
    let point_index: HashMap<(&str, &str), &PointDef> = devices
        .iter()
        .flat_map(|d| {
            d.points
                .iter()
                .map(move |p| ((d.id.as_str(), p.id.as_str()), p))
        })
        .collect();

    // Site scenes, then the built-ins where the site does not redefine them.
    let mut scenes: BTreeMap<String, Arc<Scene>> = BTreeMap::new();
    for (i, s) in file.scenes.iter().enumerate() {
        let name = s.name.get_ref();
        let path = format!("scenes[{name}]");
        if !valid_id(name) {
            ck.err(&s.name, format!("scenes[{i}].name"), id_rule(name));
        }
        let steps = s
            .steps
            .iter()
            .enumerate()
            .filter_map(|(j, st)| build_step(ck, st, &format!("{path}.steps[{j}]")))
            .collect();
        let scene = Arc::new(Scene::new(name.clone(), steps));
        if scenes.insert(name.clone(), scene).is_some() {
            ck.err(&s.name, path, format!("scene '{name}' is defined twice"));
        }
    }
    for builtin in [Scene::default_meeting(), Scene::default_leave()] {
        scenes
            .entry(builtin.name.clone())
            .or_insert_with(|| Arc::new(builtin));
    }

    let defaults = build_policy(
        ck,
        &file.defaults.policy,
        Policy::default(),
        "defaults.policy",
        None,
    );

    // Templates are checked once, on their own, whether rooms use them or not.
    let mut templates: HashMap<&str, BuiltTemplate<'_>> = HashMap::new();
    for t in &file.templates {
        let id = t.id.get_ref();
        let path = format!("templates[{id}]");
        if !valid_id(id) {
            ck.err(&t.id, format!("{path}.id"), id_rule(id));
        }
        let access = t.access.as_ref().map(|a| build_access(ck, Some(a), &path));
        let air = t
            .air
            .as_ref()
            .map(|rules| build_air_rules(ck, rules, &path));
        if templates.insert(id, (t, access, air)).is_some() {
            ck.err(&t.id, &path, format!("template '{id}' is defined twice"));
        }
    }

    let mut rooms = Vec::new();
    let mut room_ids = HashSet::new();
    let none = TemplateFile {
        id: Spanned::new(0..0, String::new()),
        meeting_scene: None,
        leave_scene: None,
        walk_in_scene: None,
        scenes: None,
        policy: PolicyFile::default(),
        access: None,
        air: None,
    };
    for r in &file.rooms {
        let id = r.id.get_ref();
        let path = format!("rooms[{id}]");
        if !valid_id(id) {
            ck.err(&r.id, format!("{path}.id"), id_rule(id));
        }
        if !room_ids.insert(id.clone()) {
            ck.err(&r.id, &path, format!("room id '{id}' is used twice"));
        }
        let (t, t_access, t_air) = match &r.template {
            None => (&none, None, None),
            Some(name) => match templates.get(name.get_ref().as_str()) {
                Some((t, access, air)) => (*t, access.clone(), air.clone()),
                None => {
                    let known: Vec<&str> = templates.keys().copied().collect();
                    ck.err(
                        name,
                        format!("{path}.template"),
                        format!(
                            "unknown template '{}' (defined: {})",
                            name.get_ref(),
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                    (&none, None, None)
                }
            },
        };
        let kind = match r.kind {
            KindFile::Bookable => RoomKind::Bookable,
            KindFile::InstantUse => RoomKind::InstantUse,
            KindFile::Closed => RoomKind::Closed,
        };
        let room_at = Some(ck.line_col(r.id.span().start));
        let policy = build_policy(
            ck,
            &r.policy.over(&t.policy),
            defaults,
            &format!("{path}.policy"),
            room_at,
        );
        let mut pick = |v: &Option<Spanned<String>>, field: &str, default: &str| -> Arc<Scene> {
            let (name, at) = match v {
                Some(s) => (s.get_ref().as_str(), Some(s)),
                None => (default, None),
            };
            match (scenes.get(name), at) {
                (Some(s), _) => Arc::clone(s),
                (None, Some(at)) => {
                    ck.err(at, format!("{path}.{field}"), unknown_scene(name, &scenes));
                    Arc::new(Scene::new(name, Vec::new()))
                }
                (None, None) => Arc::new(Scene::new(name, Vec::new())),
            }
        };
        let meeting_scene = pick(
            &r.meeting_scene.clone().or(t.meeting_scene.clone()),
            "meeting_scene",
            "meeting",
        );
        let leave_scene = pick(
            &r.leave_scene.clone().or(t.leave_scene.clone()),
            "leave_scene",
            "leave",
        );
        let walk_in_scene = pick(
            &r.walk_in_scene.clone().or(t.walk_in_scene.clone()),
            "walk_in_scene",
            "meeting",
        );
        let extra_scenes = match r.scenes.as_ref().or(t.scenes.as_ref()) {
            None => scenes.values().cloned().collect(),
            Some(names) => names
                .iter()
                .filter_map(|n| match scenes.get(n.get_ref()) {
                    Some(s) => Some(Arc::clone(s)),
                    None => {
                        ck.err(
                            n,
                            format!("{path}.scenes"),
                            unknown_scene(n.get_ref(), &scenes),
                        );
                        None
                    }
                })
                .collect(),
        };
        let mut bindings = BTreeMap::new();
        for (key, target) in &r.bindings {
            let bpath = format!("{path}.bindings.{key}");
            let Some(cap) = Capability::from_key(key) else {
                let known: Vec<&str> = Capability::ALL.iter().map(|c| c.key()).collect();
                ck.err(
                    target,
                    bpath,
                    format!("unknown capability '{key}' (known: {})", known.join(", ")),
                );
                continue;
            };
            let bound = if cap == Capability::Reader {
                check_reader(ck, target, &bpath, &field.readers)
            } else {
                check_binding(ck, cap, target, &bpath, &point_index, &devices)
            };
            if let Some(pr) = bound {
                bindings.insert(cap, pr);
            }
        }
        let access = match &r.access {
            Some(a) => build_access(ck, Some(a), &path),
            None => t_access.unwrap_or_else(|| build_access(ck, None, &path)),
        };
        let air = match &r.air {
            Some(rules) => build_air_rules(ck, rules, &path),
            None => t_air.unwrap_or_default(),
        };
        let equipment = equipment_of(&bindings);
        rooms.push(RoomSite {
            config: RoomConfig {
                id: RoomId::from(id.as_str()),
                name: r.name.clone(),
                kind,
                policy,
                meeting_scene,
                leave_scene,
                walk_in_scene,
                extra_scenes,
                access,
                air,
                equipment,
            },
            capacity: r.capacity,
            bindings,
        });
    }
    let people = build_people(ck, &file.people);
    let cloud = file
        .cloud
        .as_ref()
        .and_then(|c| build_cloud(ck, c, &devices));
    Site {
        name: file.site.name.clone(),
        timezone,
        timezone_name,
        devices,
        buses: field.buses,
        bacnet: field.bacnet,
        rooms,
        people,
        cloud,
    }
}

fn build_cloud(ck: &mut Checker<'_>, c: &CloudFile, devices: &[Device]) -> Option<Cloud> {
    let telemetry = c
        .telemetry
        .as_ref()
        .and_then(|t| telemetry::build_telemetry(ck, t, devices));
    let (host, port) = match c.broker.get_ref().rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => match p.parse::<u16>() {
            Ok(port) if port > 0 => (h.to_owned(), port),
            _ => {
                ck.err(&c.broker, "cloud.broker", format!("'{p}' is not a port"));
                return None;
            }
        },
        _ => {
            ck.err(
                &c.broker,
                "cloud.broker",
                "write the broker as \"host:port\", e.g. \"mqtt.example.com:8883\"",
            );
            return None;
        }
    };
    let id = match cloud_sync::topics::GatewayId::new(c.site.get_ref(), c.gateway.get_ref()) {
        Ok(id) => id,
        Err(e) => {
            ck.err(&c.site, "cloud.site", e.to_string());
            return None;
        }
    };
    let tls = match (c.tls, &c.ca, &c.cert, &c.key) {
        (true, Some(ca), Some(cert), Some(key)) => Some((
            ca.get_ref().into(),
            cert.get_ref().into(),
            key.get_ref().into(),
        )),
        (true, ..) => {
            ck.err(
                &c.broker,
                "cloud",
                "TLS needs `ca`, `cert` and `key` (or `tls = false` for a lab broker)",
            );
            return None;
        }
        (false, ..) => None,
    };
    Some(Cloud {
        host,
        port,
        id,
        tls,
        telemetry,
    })
}

/// What a room has, from what is bound: the engine commands nothing else.
fn equipment_of(b: &BTreeMap<Capability, PointRef>) -> Equipment {
    let has = |c: Capability| b.contains_key(&c);
    Equipment {
        lights: has(Capability::Light) || has(Capability::LightLevel),
        hvac: has(Capability::HvacPower)
            || has(Capability::HvacMode)
            || has(Capability::HvacSetpoint),
        curtains: has(Capability::Curtain),
        sockets: has(Capability::Socket),
        status_light: has(Capability::StatusLight),
        projector: has(Capability::Projector),
        screen: has(Capability::Screen),
        ventilation: has(Capability::Ventilation),
        purifier: has(Capability::Purifier),
        hvac_fan: has(Capability::HvacFan),
        door_lock: has(Capability::DoorLock),
    }
}

fn build_access(ck: &mut Checker<'_>, a: Option<&AccessFile>, path: &str) -> AccessPolicy {
    let default_unlock = scenes::Span::seconds(5);
    let Some(a) = a else {
        return AccessPolicy {
            staff_groups: Vec::new(),
            unlock_for: default_unlock,
        };
    };
    let unlock_for = ck.span_duration(
        &a.unlock_for,
        &format!("{path}.access.unlock_for"),
        default_unlock,
    );
    if let Some(at) = &a.unlock_for
        && unlock_for > scenes::Span::minutes(5)
    {
        ck.err(
            at,
            format!("{path}.access.unlock_for"),
            "a door stays unlocked at most 5 min",
        );
    }
    AccessPolicy {
        staff_groups: a.staff_groups.clone(),
        unlock_for,
    }
}

fn build_air_rules(
    ck: &mut Checker<'_>,
    rules: &[Spanned<AirRuleFile>],
    path: &str,
) -> Vec<AirRule> {
    rules
        .iter()
        .enumerate()
        .filter_map(|(i, a)| build_air_rule(ck, a, &format!("{path}.air[{i}]")))
        .collect()
}

fn build_air_rule(ck: &mut Checker<'_>, a: &Spanned<AirRuleFile>, path: &str) -> Option<AirRule> {
    let f = a.get_ref();
    let actions = |ck: &mut Checker<'_>, steps: &[Spanned<StepFile>], which: &str| -> Vec<Action> {
        steps
            .iter()
            .enumerate()
            .filter_map(
                |(i, st)| match build_step(ck, st, &format!("{path}.{which}[{i}]"))? {
                    Step::Do(action) => Some(action),
                    Step::Wait(_) => {
                        ck.err(
                            st,
                            format!("{path}.{which}[{i}]"),
                            "air rules take actions, not waits",
                        );
                        None
                    }
                },
            )
            .collect()
    };
    let on = actions(ck, &f.on, "on");
    let off = actions(ck, &f.off, "off");
    let rule = AirRule {
        metric: match f.metric {
            MetricFile::Co2 => AirMetric::Co2Ppm,
            MetricFile::Pm25 => AirMetric::Pm25,
            MetricFile::Voc => AirMetric::Voc,
            MetricFile::Temperature => AirMetric::TemperatureC,
            MetricFile::Humidity => AirMetric::HumidityPct,
        },
        on_above: f.on_above as f32,
        off_below: f.off_below as f32,
        on,
        off,
    };
    if let Err(e) = rule.validate() {
        ck.err(a, path, e.to_string());
        return None;
    }
    Some(rule)
}

fn build_people(ck: &mut Checker<'_>, files: &[PersonFile]) -> Directory {
    let mut dir = Directory::default();
    for p in files {
        let id = p.id.get_ref().trim().to_owned();
        let path = format!("people[{id}]");
        if id.is_empty() {
            ck.err(
                &p.id,
                &path,
                "a person needs an id (the identity bookings use)",
            );
            continue;
        }
        for c in &p.credentials {
            let key = Directory::normalize(c.get_ref());
            if key.is_empty() {
                ck.err(c, format!("{path}.credentials"), "empty credential");
            } else if let Some(other) = dir.by_credential.get(&key) {
                let other = dir.people[*other].id.clone();
                ck.err(
                    c,
                    format!("{path}.credentials"),
                    format!("credential '{}' already belongs to {other}", c.get_ref()),
                );
            } else {
                dir.by_credential.insert(key, dir.people.len());
            }
        }
        dir.people.push(Person {
            name: p.name.clone().unwrap_or_else(|| id.clone()),
            id,
            groups: p.groups.clone(),
        });
    }
    dir
}

fn id_rule(id: &str) -> String {
    format!("'{id}' is not a valid id: use 1 to 64 letters, digits, '-' or '_'")
}

fn unknown_scene(name: &str, scenes: &BTreeMap<String, Arc<Scene>>) -> String {
    let known: Vec<&str> = scenes.keys().map(String::as_str).collect();
    format!("unknown scene '{name}' (defined: {})", known.join(", "))
}

/// A `reader` binding names a serial device's reader: `"device/reader"`.
fn check_reader(
    ck: &mut Checker<'_>,
    target: &Spanned<String>,
    path: &str,
    readers: &HashMap<String, Vec<String>>,
) -> Option<PointRef> {
    let text = target.get_ref();
    let found = text.split_once('/').and_then(|(dev, reader)| {
        let names = readers.get(dev)?;
        names.iter().any(|r| r == reader).then(|| PointRef {
            device: dev.to_owned(),
            point: reader.to_owned(),
        })
    });
    if found.is_none() {
        let known: Vec<String> = readers
            .iter()
            .flat_map(|(d, rs)| rs.iter().map(move |r| format!("{d}/{r}")))
            .collect();
        ck.err(
            target,
            path,
            format!(
                "'{text}' is not a reader of a serial device (readers: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        );
    }
    found
}

fn check_binding(
    ck: &mut Checker<'_>,
    cap: Capability,
    target: &Spanned<String>,
    path: &str,
    index: &HashMap<(&str, &str), &PointDef>,
    devices: &[Device],
) -> Option<PointRef> {
    let text = target.get_ref();
    let Some((dev, point)) = text.split_once('/') else {
        ck.err(
            target,
            path,
            format!("'{text}' is not a point reference: write \"device/point\""),
        );
        return None;
    };
    let Some(def) = index.get(&(dev, point)) else {
        if ck.invalid_points.contains(text) {
            ck.err(
                target,
                path,
                format!("point '{text}' is invalid (see its own error)"),
            );
            return None;
        }
        let msg = match devices.iter().find(|d| d.id == dev) {
            None => format!("unknown point '{text}': there is no device '{dev}'"),
            Some(d) => {
                let ids: Vec<&str> = d.points.iter().map(|p| p.id.as_str()).collect();
                format!(
                    "unknown point '{text}': device '{dev}' has {}",
                    if ids.is_empty() {
                        "no points".to_owned()
                    } else {
                        ids.join(", ")
                    }
                )
            }
        };
        ck.err(target, path, msg);
        return None;
    };
    if let Err(message) = binding_fits(cap, def, text) {
        ck.err(target, path, message);
        return None;
    }
    Some(PointRef {
        device: dev.to_owned(),
        point: point.to_owned(),
    })
}

/// Whether point `def` (named `text`, `device/point`) can be bound to `cap`: a written
/// capability needs a writable point, a read one a readable point, and the on/off ones a bool
/// point. `Err` says why not. (The console offers only the points that fit.)
fn binding_fits(cap: Capability, def: &PointDef, text: &str) -> Result<(), String> {
    let access: Access = def.access;
    if cap.is_output() && !access.can_write() {
        return Err(format!(
            "point '{text}' is read-only, but {} is written by the gateway",
            cap.key()
        ));
    }
    if !cap.is_output() && !access.can_read() {
        return Err(format!(
            "point '{text}' is write-only, but {} must be read",
            cap.key()
        ));
    }
    if cap.wants_bool() != def.is_bool {
        return Err(format!(
            "{} needs a {} point, but '{text}' is {}",
            cap.key(),
            if cap.wants_bool() { "bool" } else { "numeric" },
            if def.is_bool { "bool" } else { "numeric" },
        ));
    }
    Ok(())
}

fn on_off(v: &OnOffOrLevel) -> Result<(bool, Option<u8>), String> {
    match v {
        OnOffOrLevel::Word(w) if w == "on" => Ok((true, None)),
        OnOffOrLevel::Word(w) if w == "off" => Ok((false, None)),
        OnOffOrLevel::Word(w) => Err(format!("'{w}': write \"on\", \"off\" or a level 0..=100")),
        OnOffOrLevel::Level(l) => match u8::try_from(*l) {
            Ok(0) => Ok((false, None)),
            Ok(v) if v <= 100 => Ok((true, Some(v))),
            _ => Err(format!("level {l} is out of range 0..=100")),
        },
    }
}

fn on_off_only(v: &OnOffOrLevel, what: &str) -> Result<bool, String> {
    match on_off(v) {
        Ok((on, None)) => Ok(on),
        Ok(_) => Err(format!("{what} is \"on\" or \"off\"")),
        Err(e) => Err(e),
    }
}

fn build_step(ck: &mut Checker<'_>, st: &Spanned<StepFile>, path: &str) -> Option<Step> {
    let s = st.get_ref();
    let set = [
        s.lights.is_some(),
        s.sockets.is_some(),
        s.curtains.is_some(),
        s.hvac.is_some(),
        s.projector.is_some(),
        s.screen.is_some(),
        s.ventilation.is_some(),
        s.purifier.is_some(),
        s.fan.is_some(),
        s.wait.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if set != 1 {
        ck.err(
            st,
            path,
            "a step sets exactly one of lights, sockets, curtains, hvac, projector, screen, ventilation, purifier, fan or wait",
        );
        return None;
    }
    if (s.mode.is_some() || s.setpoint.is_some()) && s.hvac.is_none() {
        ck.err(st, path, "mode and setpoint belong to an hvac step");
        return None;
    }
    let result = if let Some(v) = &s.lights {
        on_off(v).map(|(on, level)| Step::Do(Action::Lights { on, level }))
    } else if let Some(v) = &s.sockets {
        match on_off(v) {
            Ok((on, None)) => Ok(Step::Do(Action::Sockets { on })),
            Ok(_) => Err("sockets are \"on\" or \"off\"".to_owned()),
            Err(e) => Err(e),
        }
    } else if let Some(p) = s.curtains {
        match u8::try_from(p) {
            Ok(v) if v <= 100 => Ok(Step::Do(Action::Curtains { position: v })),
            _ => Err(format!(
                "curtain position {p} is out of range 0..=100 (% open)"
            )),
        }
    } else if let Some(v) = &s.hvac {
        match on_off(v) {
            Ok((on, None)) => match s.setpoint {
                Some(sp) if !(5.0..=35.0).contains(&sp) => {
                    Err(format!("setpoint {sp} is out of range 5..=35 degrees C"))
                }
                sp => Ok(Step::Do(Action::Hvac {
                    on,
                    mode: s.mode.map(hvac_mode),
                    setpoint_c: sp.map(|x| x as f32),
                })),
            },
            Ok(_) => Err("hvac is \"on\" or \"off\" (with optional mode and setpoint)".to_owned()),
            Err(e) => Err(e),
        }
    } else if let Some(v) = &s.projector {
        on_off_only(v, "projector").map(|on| Step::Do(Action::Projector { on }))
    } else if let Some(v) = &s.purifier {
        on_off_only(v, "purifier").map(|on| Step::Do(Action::Purifier { on }))
    } else if let Some(v) = &s.screen {
        match v.as_str() {
            "down" => Ok(Step::Do(Action::Screen { down: true })),
            "up" => Ok(Step::Do(Action::Screen { down: false })),
            other => Err(format!("screen is \"down\" or \"up\" (got '{other}')")),
        }
    } else if let Some(v) = &s.ventilation {
        on_off(v).map(|(on, level)| {
            Step::Do(Action::Ventilation {
                level: if on { level.unwrap_or(100) } else { 0 },
            })
        })
    } else if let Some(f) = s.fan {
        match u8::try_from(f) {
            Ok(v) if v <= 100 => Ok(Step::Do(Action::HvacFan { level: v })),
            _ => Err(format!("fan level {f} is out of range 0..=100")),
        }
    } else if let Some(w) = &s.wait {
        parse_span(w).map(Step::Wait)
    } else {
        Err("empty step".to_owned())
    };
    match result {
        Ok(step) => Some(step),
        Err(e) => {
            ck.err(st, path, e);
            None
        }
    }
}

fn hvac_mode(m: HvacModeFile) -> HvacMode {
    match m {
        HvacModeFile::Heat => HvacMode::Heat,
        HvacModeFile::Cool => HvacMode::Cool,
        HvacModeFile::Auto => HvacMode::Auto,
        HvacModeFile::Fan => HvacMode::Fan,
    }
}

fn build_policy(
    ck: &mut Checker<'_>,
    f: &PolicyFile,
    base: Policy,
    path: &str,
    section: Option<(usize, usize)>,
) -> Policy {
    let mut p = base;
    let d = |ck: &mut Checker<'_>, v: &Option<Spanned<String>>, field: &str, cur| {
        ck.span_duration(v, &format!("{path}.{field}"), cur)
    };
    p.starting_soon = d(ck, &f.starting_soon, "starting_soon", p.starting_soon);
    p.hvac_lead = d(ck, &f.hvac_lead, "hvac_lead", p.hvac_lead);
    p.lights_lead = d(ck, &f.lights_lead, "lights_lead", p.lights_lead);
    p.checkin_opens = d(ck, &f.checkin_opens, "checkin_opens", p.checkin_opens);
    p.no_show_after = d(ck, &f.no_show_after, "no_show_after", p.no_show_after);
    p.dim_after = d(ck, &f.dim_after, "dim_after", p.dim_after);
    p.off_after = d(ck, &f.off_after, "off_after", p.off_after);
    p.back_to_back_gap = d(
        ck,
        &f.back_to_back_gap,
        "back_to_back_gap",
        p.back_to_back_gap,
    );
    if let Some(v) = &f.vacancy_release {
        p.vacancy_release = if v.get_ref() == "off" {
            None
        } else {
            Some(ck.span_duration(
                &Some(v.clone()),
                &format!("{path}.vacancy_release"),
                scenes::Span::minutes(15),
            ))
        };
    }
    p.override_hold = d(ck, &f.override_hold, "override_hold", p.override_hold);
    p.walk_in_confirm = d(ck, &f.walk_in_confirm, "walk_in_confirm", p.walk_in_confirm);
    if let Some(v) = f.checkin_by_card {
        p.checkin_by_card = v;
    }
    if let Some(v) = f.checkin_pin {
        p.checkin_pin = v;
    }
    if let Some(v) = f.checkin_required {
        p.checkin_required = v;
    }
    if let Some(v) = f.checkin_on_presence {
        p.checkin_on_presence = v;
    }
    if let Some(v) = &f.dim_level {
        match u8::try_from(*v.get_ref()) {
            Ok(l) => p.dim_level = l,
            Err(_) => ck.err(
                v,
                format!("{path}.dim_level"),
                "must be between 1 and 99 percent",
            ),
        }
    }
    if let Some(v) = &f.hvac_setpoint {
        p.hvac_setpoint_c = *v.get_ref() as f32;
    }
    if let Some(m) = f.hvac_mode {
        p.hvac_mode = hvac_mode(m);
    }
    if let Some(c) = f.closed_light {
        p.closed_light = match c {
            ClosedLightFile::Red => StatusLight::Red,
            ClosedLightFile::Off => StatusLight::Off,
        };
    }
    if let Err(errors) = p.validate() {
        // Point at the field the rule concerns where the file sets it. An error a room merely
        // inherits from the site defaults was reported there once and is not repeated.
        let is_defaults = path == "defaults.policy";
        for e in errors {
            let message = e.to_string();
            if is_defaults {
                ck.default_policy_errors.insert(message.clone());
            } else if ck.default_policy_errors.contains(&message) {
                continue;
            }
            let field = match &e {
                scenes::PolicyError::LightsTooLongInEmptyRoom { field, .. }
                | scenes::PolicyError::Zero { field } => *field,
                scenes::PolicyError::DimAfterOff { .. } => "dim_after",
                scenes::PolicyError::DimLevel(_) => "dim_level",
                scenes::PolicyError::Setpoint(_) => "hvac_setpoint",
                scenes::PolicyError::AirHysteresis { .. } => "air",
            };
            let at: Option<std::ops::Range<usize>> = match field {
                "off_after" => f.off_after.as_ref().map(|s| s.span()),
                "vacancy_release" => f.vacancy_release.as_ref().map(|s| s.span()),
                "dim_after" => f.dim_after.as_ref().map(|s| s.span()),
                "no_show_after" => f.no_show_after.as_ref().map(|s| s.span()),
                "dim_level" => f.dim_level.as_ref().map(|s| s.span()),
                "hvac_setpoint" => f.hvac_setpoint.as_ref().map(|s| s.span()),
                _ => None,
            };
            let line_col = at.map(|r| ck.line_col(r.start)).or(section);
            ck.errors.push(SiteError {
                line_col,
                path: format!("{path}.{field}"),
                message,
            });
        }
    }
    p
}

impl Site {
    pub fn device(&self, id: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.id == id)
    }

    pub fn point(&self, r: &PointRef) -> Option<&PointDef> {
        self.device(&r.device)?
            .points
            .iter()
            .find(|p| p.id == r.point)
    }

    pub fn room(&self, id: &str) -> Option<&RoomSite> {
        self.rooms.iter().find(|r| r.config.id.as_str() == id)
    }
}
