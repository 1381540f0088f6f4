//! Room capabilities to points: what an engine `Action` writes, and what a point means.
//!
//! Fixed value codes (documented in README's site file reference):
//! HVAC mode 0 off, 1 heat, 2 cool, 3 auto, 4 fan; status light 0 off, 1 green, 2 yellow,
//! 3 yellow blinking, 4 red.

use std::collections::BTreeMap;

use drivers::point::Value;
use scenes::{Action, HvacMode, StatusLight};

use crate::site::{Capability, PointRef};

/// One write to one point.
#[derive(Debug, Clone, PartialEq)]
pub struct PointWrite {
    pub point: PointRef,
    pub value: Value,
}

pub fn hvac_mode_code(m: HvacMode) -> f64 {
    match m {
        HvacMode::Heat => 1.0,
        HvacMode::Cool => 2.0,
        HvacMode::Auto => 3.0,
        HvacMode::Fan => 4.0,
    }
}

pub fn status_light_code(c: StatusLight) -> f64 {
    match c {
        StatusLight::Off => 0.0,
        StatusLight::Green => 1.0,
        StatusLight::Yellow => 2.0,
        StatusLight::YellowBlinking => 3.0,
        StatusLight::Red => 4.0,
    }
}

/// A human label for a capability's coded value ("auto", "red"), where the code is fixed.
pub fn label(cap: Capability, value: &Value) -> Option<&'static str> {
    let code = value.as_f64();
    let names: &[&'static str] = match cap {
        Capability::HvacMode => &["off", "heat", "cool", "auto", "fan"],
        Capability::StatusLight => &["off", "green", "yellow", "yellow blinking", "red"],
        Capability::Light
        | Capability::HvacPower
        | Capability::Socket
        | Capability::Projector
        | Capability::Purifier => &["off", "on"],
        Capability::Screen => &["up", "down"],
        Capability::DoorLock => &["locked", "unlocked"],
        Capability::Occupancy => &["vacant", "occupied"],
        _ => return None,
    };
    if code.fract() != 0.0 || code < 0.0 {
        return None;
    }
    names.get(code as usize).copied()
}

/// The point writes that carry out `action` in a room with these bindings. Capabilities the
/// room does not have are skipped (a leave scene closes curtains only where there are some).
pub fn writes_for(bindings: &BTreeMap<Capability, PointRef>, action: &Action) -> Vec<PointWrite> {
    let mut out = Vec::new();
    let mut put = |cap: Capability, value: Value| {
        if let Some(p) = bindings.get(&cap) {
            out.push(PointWrite {
                point: p.clone(),
                value,
            });
        }
    };
    match action {
        Action::Lights { on, level } => {
            put(Capability::Light, Value::Bool(*on));
            let l = if *on { level.unwrap_or(100) } else { 0 };
            put(Capability::LightLevel, Value::Number(f64::from(l)));
        }
        Action::Hvac {
            on,
            mode,
            setpoint_c,
        } => {
            if let Some(sp) = setpoint_c {
                put(Capability::HvacSetpoint, Value::Number(f64::from(*sp)));
            }
            match (on, mode) {
                (false, _) => put(Capability::HvacMode, Value::Number(0.0)),
                (true, Some(m)) => put(Capability::HvacMode, Value::Number(hvac_mode_code(*m))),
                (true, None) => {}
            }
            put(Capability::HvacPower, Value::Bool(*on));
        }
        Action::Curtains { position } => {
            put(Capability::Curtain, Value::Number(f64::from(*position)))
        }
        Action::Sockets { on } => put(Capability::Socket, Value::Bool(*on)),
        Action::StatusLight(c) => put(
            Capability::StatusLight,
            Value::Number(status_light_code(*c)),
        ),
        Action::Projector { on } => put(Capability::Projector, Value::Bool(*on)),
        Action::Screen { down } => put(Capability::Screen, Value::Bool(*down)),
        Action::Ventilation { level } => {
            put(Capability::Ventilation, Value::Number(f64::from(*level)))
        }
        Action::Purifier { on } => put(Capability::Purifier, Value::Bool(*on)),
        Action::HvacFan { level } => put(Capability::HvacFan, Value::Number(f64::from(*level))),
        Action::DoorLock { unlocked } => put(Capability::DoorLock, Value::Bool(*unlocked)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PointRef {
        PointRef {
            device: "d".into(),
            point: s.into(),
        }
    }

    #[test]
    fn actions_map_to_bound_points_only() {
        let mut b = BTreeMap::new();
        b.insert(Capability::Light, p("relay"));
        b.insert(Capability::LightLevel, p("level"));
        b.insert(Capability::HvacPower, p("hvac"));
        let w = writes_for(
            &b,
            &Action::Lights {
                on: true,
                level: Some(30),
            },
        );
        assert_eq!(
            w,
            vec![
                PointWrite {
                    point: p("relay"),
                    value: Value::Bool(true)
                },
                PointWrite {
                    point: p("level"),
                    value: Value::Number(30.0)
                },
            ]
        );
        let w = writes_for(
            &b,
            &Action::Lights {
                on: false,
                level: None,
            },
        );
        assert_eq!(w[1].value, Value::Number(0.0));
        assert!(writes_for(&b, &Action::Curtains { position: 100 }).is_empty());
        let w = writes_for(
            &b,
            &Action::Hvac {
                on: true,
                mode: Some(HvacMode::Cool),
                setpoint_c: Some(22.0),
            },
        );
        assert_eq!(
            w,
            vec![PointWrite {
                point: p("hvac"),
                value: Value::Bool(true)
            }]
        );
    }
}
