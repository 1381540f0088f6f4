//! Serial profiles: how a device frames its messages and which frames mean which events. The serde spec an installer writes, its validation, and the built-in profiles.
//!
//! A [`ProfileSpec`] is configuration (it derives `Deserialize`; field names are the site-file
//! names); [`Profile::compile`] checks it and gives the [`Profile`] the decoder runs on. See the
//! [`serial`](crate::serial) module docs for the complete site-file format with examples.

use std::collections::BTreeMap;

use serde::Deserialize;
use thiserror::Error;

use super::pattern::{CaptureClass, Pattern, PatternError};
use crate::device::CredentialKind;

/// Longest ASCII frame a profile may allow, in bytes (the decoder's buffer bound).
pub const MAX_ASCII_FRAME: usize = 4096;
/// Longest binary payload (the length field is one byte).
pub const MAX_BINARY_PAYLOAD: u8 = 255;

/// A profile as written in the site file: `format = "ascii"` or `format = "binary"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum ProfileSpec {
    /// Text frames, cut by terminators or by start/end characters, matched by patterns.
    Ascii(AsciiProfileSpec),
    /// `START LEN TYPE PAYLOAD CHECKSUM` frames.
    Binary(BinaryProfileSpec),
}

/// An ASCII profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsciiProfileSpec {
    /// The character that opens a frame (e.g. `"\u0002"`, STX). Absent: frames are lines, cut
    /// only by `end`.
    #[serde(default)]
    pub start: Option<String>,
    /// Characters that end a frame; any one of them does (default `"\r\n"`: CR, LF or CRLF).
    /// Empty lines are skipped.
    #[serde(default = "default_end")]
    pub end: String,
    /// Longest frame in bytes, terminators excluded (default 256, at most 4096).
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    /// Strip spaces and tabs around the frame before matching (default true).
    #[serde(default = "default_true")]
    pub trim: bool,
    /// Tried in order; the first rule whose pattern matches decides the event.
    pub rules: Vec<AsciiRuleSpec>,
}

/// One ASCII rule: `event` says what a matching frame means.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum AsciiRuleSpec {
    /// Occupancy of `point`: `value`, or the pattern's `{flag}` capture when `value` is absent.
    Occupancy {
        #[serde(rename = "match")]
        pattern: String,
        point: String,
        #[serde(default)]
        value: Option<bool>,
    },
    /// A credential at `reader`: the pattern's capture.
    Credential {
        #[serde(rename = "match")]
        pattern: String,
        reader: String,
        kind: CredentialKindSpec,
    },
    /// A known frame without an event (heartbeat, banner): it only shows the device is alive.
    Heartbeat {
        #[serde(rename = "match")]
        pattern: String,
    },
}

/// A binary profile. Frame layout (all one byte, except the payload):
///
/// ```text
/// START  LEN  TYPE  PAYLOAD (LEN bytes)  CHECKSUM
/// ```
///
/// `CHECKSUM` covers `LEN`, `TYPE` and `PAYLOAD` (not `START`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinaryProfileSpec {
    /// Start byte (default `0xAA`).
    #[serde(default = "default_binary_start")]
    pub start: u8,
    /// Checksum algorithm (default `xor`).
    #[serde(default)]
    pub checksum: ChecksumSpec,
    /// Longest payload accepted (default 32); a larger `LEN` marks an over-long frame.
    #[serde(default = "default_max_payload")]
    pub max_payload: u8,
    /// What each message type means.
    pub messages: Vec<BinaryMessageSpec>,
}

/// A binary checksum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumSpec {
    /// XOR of the covered bytes.
    #[default]
    Xor,
    /// Sum of the covered bytes modulo 256.
    Sum8,
}

/// One binary message type: `event` says what it means.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum BinaryMessageSpec {
    /// Occupancy of `point`: `value` with an empty payload, or (without `value`) a one-byte
    /// payload `0x00` (vacant) / `0x01` (occupied).
    Occupancy {
        #[serde(rename = "type")]
        message_type: u8,
        point: String,
        #[serde(default)]
        value: Option<bool>,
    },
    /// A credential at `reader`: the payload (1 byte or more) rendered with `encoding`.
    Credential {
        #[serde(rename = "type")]
        message_type: u8,
        reader: String,
        kind: CredentialKindSpec,
        #[serde(default)]
        encoding: CredentialEncoding,
    },
    /// Alive, nothing else (any payload).
    Heartbeat {
        #[serde(rename = "type")]
        message_type: u8,
    },
}

/// How a binary credential payload becomes the credential string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialEncoding {
    /// Upper-case hex, two digits per byte: `[0x04, 0x6A]` -> `"046A"` (default).
    #[default]
    Hex,
    /// The payload as one big-endian unsigned number in decimal (at most 16 bytes):
    /// `[0x00, 0x46, 0x7A, 0x2D]` -> `"4618797"`.
    Decimal,
    /// The payload is printable ASCII text, trimmed.
    Ascii,
}

/// [`CredentialKind`] as written in the site file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKindSpec {
    Card,
    Qr,
    Pin,
}

impl From<CredentialKindSpec> for CredentialKind {
    fn from(kind: CredentialKindSpec) -> Self {
        match kind {
            CredentialKindSpec::Card => CredentialKind::Card,
            CredentialKindSpec::Qr => CredentialKind::Qr,
            CredentialKindSpec::Pin => CredentialKind::Pin,
        }
    }
}

fn default_end() -> String {
    "\r\n".to_owned()
}
fn default_max_len() -> usize {
    256
}
fn default_true() -> bool {
    true
}
fn default_binary_start() -> u8 {
    0xAA
}
fn default_max_payload() -> u8 {
    32
}

/// Why a profile was refused. `rule` and `message` count from 0 in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProfileError {
    #[error("`start` must be one ASCII character (got {0:?})")]
    BadStart(String),
    #[error("`end` must hold one or more ASCII characters, none equal to `start` (got {0:?})")]
    BadEnd(String),
    #[error("`max_len` must be 1 to {MAX_ASCII_FRAME} (got {0})")]
    BadMaxLen(usize),
    #[error("`max_payload` must be at least 1")]
    BadMaxPayload,
    #[error("the profile has no rules or messages")]
    Empty,
    #[error("rule {rule}: {error}")]
    Pattern { rule: usize, error: PatternError },
    #[error(
        "rule {rule}: an occupancy rule without `value` needs a `{{flag}}` capture in its pattern"
    )]
    OccupancyNeedsFlag { rule: usize },
    #[error("rule {rule}: a credential rule needs a capture (not `{{flag}}`) in its pattern")]
    CredentialNeedsCapture { rule: usize },
    #[error("message {message}: type {message_type:#04x} is already used by an earlier message")]
    DuplicateType { message: usize, message_type: u8 },
    #[error("`{0}` is used both as an occupancy point and as a credential reader")]
    NameClash(String),
    #[error("point or reader names must not be empty")]
    EmptyName,
    #[error("no profile named `{0}` in the site file, nor built in ({list})", list = BUILTIN_NAMES.join(", "))]
    UnknownProfile(String),
}

/// Names of the built-in profiles, for [`ProfileSpec::builtin`].
pub const BUILTIN_NAMES: [&str; 4] = ["ascii-occupancy", "ascii-card-stx", "ascii-qr", "binary-aa"];

impl ProfileSpec {
    /// A built-in profile by name (see the [`serial`](crate::serial) module docs):
    ///
    /// * `ascii-occupancy`: lines `OCC=<flag>` for point `occupancy`, `HB` heartbeats.
    /// * `ascii-card-stx`: `STX <4-20 digits> ETX` card numbers for reader `reader`.
    /// * `ascii-qr`: lines `QR:<text>` (QR codes) and `PIN:<4-12 digits>` for reader `reader`.
    /// * `binary-aa`: start `0xAA`, XOR checksum; type `0x01` occupancy (payload 0/1) of point
    ///   `occupancy`, `0x02` card (payload -> hex) and `0x03` QR (ASCII payload) at reader
    ///   `reader`, `0x7F` heartbeat.
    #[must_use]
    pub fn builtin(name: &str) -> Option<ProfileSpec> {
        let ascii = |start: Option<&str>, rules| {
            ProfileSpec::Ascii(AsciiProfileSpec {
                start: start.map(str::to_owned),
                end: default_end(),
                max_len: default_max_len(),
                trim: true,
                rules,
            })
        };
        Some(match name {
            "ascii-occupancy" => ascii(
                None,
                vec![
                    AsciiRuleSpec::Occupancy {
                        pattern: "OCC={flag}".into(),
                        point: "occupancy".into(),
                        value: None,
                    },
                    AsciiRuleSpec::Heartbeat {
                        pattern: "HB".into(),
                    },
                ],
            ),
            "ascii-card-stx" => ProfileSpec::Ascii(AsciiProfileSpec {
                start: Some("\u{2}".into()),
                end: "\u{3}".into(),
                max_len: 64,
                trim: true,
                rules: vec![AsciiRuleSpec::Credential {
                    pattern: "{digits:4-20}".into(),
                    reader: "reader".into(),
                    kind: CredentialKindSpec::Card,
                }],
            }),
            "ascii-qr" => ascii(
                None,
                vec![
                    AsciiRuleSpec::Credential {
                        pattern: "QR:{text}".into(),
                        reader: "reader".into(),
                        kind: CredentialKindSpec::Qr,
                    },
                    AsciiRuleSpec::Credential {
                        pattern: "PIN:{digits:4-12}".into(),
                        reader: "reader".into(),
                        kind: CredentialKindSpec::Pin,
                    },
                ],
            ),
            "binary-aa" => ProfileSpec::Binary(BinaryProfileSpec {
                start: 0xAA,
                checksum: ChecksumSpec::Xor,
                max_payload: 32,
                messages: vec![
                    BinaryMessageSpec::Occupancy {
                        message_type: 0x01,
                        point: "occupancy".into(),
                        value: None,
                    },
                    BinaryMessageSpec::Credential {
                        message_type: 0x02,
                        reader: "reader".into(),
                        kind: CredentialKindSpec::Card,
                        encoding: CredentialEncoding::Hex,
                    },
                    BinaryMessageSpec::Credential {
                        message_type: 0x03,
                        reader: "reader".into(),
                        kind: CredentialKindSpec::Qr,
                        encoding: CredentialEncoding::Ascii,
                    },
                    BinaryMessageSpec::Heartbeat { message_type: 0x7F },
                ],
            }),
            _ => return None,
        })
    }

    /// Finds a profile by name: the site's own profiles first, then the built-in ones.
    pub fn resolve(
        name: &str,
        site_profiles: &BTreeMap<String, ProfileSpec>,
    ) -> Result<ProfileSpec, ProfileError> {
        site_profiles
            .get(name)
            .cloned()
            .or_else(|| ProfileSpec::builtin(name))
            .ok_or_else(|| ProfileError::UnknownProfile(name.to_owned()))
    }
}

/// What a recognised frame means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Fixed occupancy value, or (`None`) taken from the frame.
    Occupancy {
        point: String,
        value: Option<bool>,
    },
    Credential {
        reader: String,
        kind: CredentialKind,
        encoding: CredentialEncoding,
    },
    Heartbeat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AsciiRule {
    pub(crate) pattern: Pattern,
    pub(crate) action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AsciiProfile {
    pub(crate) start: Option<u8>,
    pub(crate) end: Vec<u8>,
    pub(crate) max_len: usize,
    pub(crate) trim: bool,
    pub(crate) rules: Vec<AsciiRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BinaryProfile {
    pub(crate) start: u8,
    pub(crate) checksum: ChecksumSpec,
    pub(crate) max_payload: u8,
    /// Indexed by message type.
    pub(crate) messages: BTreeMap<u8, Action>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProfileKind {
    Ascii(AsciiProfile),
    Binary(BinaryProfile),
}

/// A checked profile, ready to build decoders from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub(crate) kind: ProfileKind,
    points: Vec<String>,
    readers: Vec<String>,
}

impl Profile {
    /// Checks a spec: patterns compile, rules can produce their events, framing characters are
    /// ASCII and distinct, message types are unique, a name is not both a point and a reader.
    pub fn compile(spec: &ProfileSpec) -> Result<Profile, ProfileError> {
        let (kind, actions): (ProfileKind, Vec<Action>) = match spec {
            ProfileSpec::Ascii(spec) => {
                let ascii = compile_ascii(spec)?;
                let actions = ascii.rules.iter().map(|r| r.action.clone()).collect();
                (ProfileKind::Ascii(ascii), actions)
            }
            ProfileSpec::Binary(spec) => {
                let binary = compile_binary(spec)?;
                let actions = binary.messages.values().cloned().collect();
                (ProfileKind::Binary(binary), actions)
            }
        };
        let mut points = Vec::new();
        let mut readers = Vec::new();
        for action in actions {
            let (name, list, other) = match action {
                Action::Occupancy { point, .. } => (point, &mut points, &readers),
                Action::Credential { reader, .. } => (reader, &mut readers, &points),
                Action::Heartbeat => continue,
            };
            if name.is_empty() {
                return Err(ProfileError::EmptyName);
            }
            if other.contains(&name) {
                return Err(ProfileError::NameClash(name));
            }
            if !list.contains(&name) {
                list.push(name);
            }
        }
        Ok(Profile {
            kind,
            points,
            readers,
        })
    }

    /// The occupancy points the profile can report, in the order first named.
    #[must_use]
    pub fn points(&self) -> &[String] {
        &self.points
    }

    /// The credential readers the profile can report, in the order first named.
    #[must_use]
    pub fn readers(&self) -> &[String] {
        &self.readers
    }
}

fn one_ascii_byte(s: &str) -> Option<u8> {
    match s.as_bytes() {
        [b] if b.is_ascii() => Some(*b),
        _ => None,
    }
}

fn compile_ascii(spec: &AsciiProfileSpec) -> Result<AsciiProfile, ProfileError> {
    let start = match &spec.start {
        None => None,
        Some(s) => Some(one_ascii_byte(s).ok_or_else(|| ProfileError::BadStart(s.clone()))?),
    };
    let end = spec.end.as_bytes().to_vec();
    if end.is_empty() || !spec.end.is_ascii() || start.is_some_and(|s| end.contains(&s)) {
        return Err(ProfileError::BadEnd(spec.end.clone()));
    }
    if spec.max_len == 0 || spec.max_len > MAX_ASCII_FRAME {
        return Err(ProfileError::BadMaxLen(spec.max_len));
    }
    if spec.rules.is_empty() {
        return Err(ProfileError::Empty);
    }
    let mut rules = Vec::with_capacity(spec.rules.len());
    for (rule, rule_spec) in spec.rules.iter().enumerate() {
        let parse =
            |p: &str| Pattern::parse(p).map_err(|error| ProfileError::Pattern { rule, error });
        let (pattern, action) = match rule_spec {
            AsciiRuleSpec::Occupancy {
                pattern,
                point,
                value,
            } => {
                let pattern = parse(pattern)?;
                let flag = pattern
                    .capture()
                    .is_some_and(|c| c.class == CaptureClass::Flag);
                if value.is_none() && !flag {
                    return Err(ProfileError::OccupancyNeedsFlag { rule });
                }
                let action = Action::Occupancy {
                    point: point.clone(),
                    value: *value,
                };
                (pattern, action)
            }
            AsciiRuleSpec::Credential {
                pattern,
                reader,
                kind,
            } => {
                let pattern = parse(pattern)?;
                if pattern
                    .capture()
                    .is_none_or(|c| c.class == CaptureClass::Flag)
                {
                    return Err(ProfileError::CredentialNeedsCapture { rule });
                }
                let action = Action::Credential {
                    reader: reader.clone(),
                    kind: (*kind).into(),
                    encoding: CredentialEncoding::Ascii,
                };
                (pattern, action)
            }
            AsciiRuleSpec::Heartbeat { pattern } => (parse(pattern)?, Action::Heartbeat),
        };
        rules.push(AsciiRule { pattern, action });
    }
    Ok(AsciiProfile {
        start,
        end,
        max_len: spec.max_len,
        trim: spec.trim,
        rules,
    })
}

fn compile_binary(spec: &BinaryProfileSpec) -> Result<BinaryProfile, ProfileError> {
    if spec.max_payload == 0 {
        return Err(ProfileError::BadMaxPayload);
    }
    if spec.messages.is_empty() {
        return Err(ProfileError::Empty);
    }
    let mut messages = BTreeMap::new();
    for (message, m) in spec.messages.iter().enumerate() {
        let (message_type, action) = match m {
            BinaryMessageSpec::Occupancy {
                message_type,
                point,
                value,
            } => (
                *message_type,
                Action::Occupancy {
                    point: point.clone(),
                    value: *value,
                },
            ),
            BinaryMessageSpec::Credential {
                message_type,
                reader,
                kind,
                encoding,
            } => (
                *message_type,
                Action::Credential {
                    reader: reader.clone(),
                    kind: (*kind).into(),
                    encoding: *encoding,
                },
            ),
            BinaryMessageSpec::Heartbeat { message_type } => (*message_type, Action::Heartbeat),
        };
        if messages.insert(message_type, action).is_some() {
            return Err(ProfileError::DuplicateType {
                message,
                message_type,
            });
        }
    }
    Ok(BinaryProfile {
        start: spec.start,
        checksum: spec.checksum,
        max_payload: spec.max_payload,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_compile() {
        for name in BUILTIN_NAMES {
            let spec = ProfileSpec::builtin(name).unwrap();
            Profile::compile(&spec).unwrap();
        }
        assert!(ProfileSpec::builtin("nope").is_none());
    }

    #[test]
    fn toml_profiles_parse_and_compile() {
        let text = r#"
            [pir-lines]
            format = "ascii"
            end = "\n"
            rules = [
              { event = "occupancy", match = "MOTION", point = "pir", value = true },
              { event = "occupancy", match = "CLEAR", point = "pir", value = false },
              { event = "heartbeat", match = "ALIVE {digits}" },
            ]

            [door-bin]
            format = "binary"
            start = 0x02
            checksum = "sum8"
            max_payload = 16
            [[door-bin.messages]]
            event = "credential"
            type = 0x20
            reader = "door"
            kind = "card"
            encoding = "decimal"
            [[door-bin.messages]]
            event = "occupancy"
            type = 0x10
            point = "seat"
        "#;
        let profiles: BTreeMap<String, ProfileSpec> = toml::from_str(text).unwrap();
        let pir = Profile::compile(&profiles["pir-lines"]).unwrap();
        assert_eq!(pir.points(), ["pir"]);
        let door = Profile::compile(&profiles["door-bin"]).unwrap();
        assert_eq!(door.readers(), ["door"]);
        assert_eq!(door.points(), ["seat"]);
        let ProfileSpec::Binary(bin) = &profiles["door-bin"] else {
            panic!("binary expected")
        };
        assert_eq!(bin.start, 2);
        assert_eq!(bin.checksum, ChecksumSpec::Sum8);
        assert_eq!(
            ProfileSpec::resolve("ascii-qr", &profiles).unwrap(),
            ProfileSpec::builtin("ascii-qr").unwrap()
        );
        assert_eq!(
            ProfileSpec::resolve("x", &profiles).unwrap_err(),
            ProfileError::UnknownProfile("x".into())
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = r#"
            format = "ascii"
            terminator = "\n"
            rules = []
        "#;
        let error = toml::from_str::<ProfileSpec>(text).unwrap_err();
        assert!(error.to_string().contains("terminator"), "{error}");
        let text = r#"
            format = "ascii"
            rules = [{ event = "occupancy", match = "X", point = "p", valu = true }]
        "#;
        assert!(toml::from_str::<ProfileSpec>(text).is_err());
    }

    #[test]
    fn bad_profiles_are_refused() {
        let ascii = |start: Option<&str>, end: &str, rules: Vec<AsciiRuleSpec>| {
            Profile::compile(&ProfileSpec::Ascii(AsciiProfileSpec {
                start: start.map(str::to_owned),
                end: end.into(),
                max_len: 64,
                trim: true,
                rules,
            }))
        };
        let occ = |pattern: &str, value| AsciiRuleSpec::Occupancy {
            pattern: pattern.into(),
            point: "p".into(),
            value,
        };
        assert_eq!(
            ascii(None, "\n", vec![occ("OCC={digits}", None)]),
            Err(ProfileError::OccupancyNeedsFlag { rule: 0 })
        );
        assert_eq!(
            ascii(Some("ab"), "\n", vec![occ("X", Some(true))]),
            Err(ProfileError::BadStart("ab".into()))
        );
        assert_eq!(
            ascii(Some("\n"), "\n", vec![occ("X", Some(true))]),
            Err(ProfileError::BadEnd("\n".into()))
        );
        assert_eq!(ascii(None, "\n", vec![]), Err(ProfileError::Empty));
        let card = AsciiRuleSpec::Credential {
            pattern: "CARD".into(),
            reader: "r".into(),
            kind: CredentialKindSpec::Card,
        };
        assert_eq!(
            ascii(None, "\n", vec![occ("X", Some(true)), card]),
            Err(ProfileError::CredentialNeedsCapture { rule: 1 })
        );
        let clash = AsciiRuleSpec::Credential {
            pattern: "C{digits}".into(),
            reader: "p".into(),
            kind: CredentialKindSpec::Card,
        };
        assert_eq!(
            ascii(None, "\n", vec![occ("X", Some(true)), clash]),
            Err(ProfileError::NameClash("p".into()))
        );
        let dup = Profile::compile(&ProfileSpec::Binary(BinaryProfileSpec {
            start: 0xAA,
            checksum: ChecksumSpec::Xor,
            max_payload: 8,
            messages: vec![
                BinaryMessageSpec::Heartbeat { message_type: 1 },
                BinaryMessageSpec::Heartbeat { message_type: 1 },
            ],
        }));
        assert_eq!(
            dup,
            Err(ProfileError::DuplicateType {
                message: 1,
                message_type: 1
            })
        );
    }
}
