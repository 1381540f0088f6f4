//! The BACnet point: which object, property and array element a named point is, the value kind it carries, its write priority, and load-time validation.
//!
//! A BACnet point names one property of one object of one device (ASHRAE 135 Clause 12: objects
//! and properties; Clause 15.5 ReadProperty addresses exactly this triple plus an optional array
//! index). Commandable properties are written at a priority (Clause 19.2, command prioritization);
//! [`BacnetPoint::validate`] refuses what no device can serve, with messages an installer can act on.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use bacnet_types::enums::{ObjectType, PropertyIdentifier};
use bacnet_types::primitives::{ObjectIdentifier, PropertyValue};
use thiserror::Error;

use crate::point::{Access, Value};

/// The write priority a point uses unless configured otherwise: 12, below the operator (8) and
/// minimum on/off (6) slots, so a person at the building's front end still wins (Clause 19.2.2).
pub const DEFAULT_PRIORITY: u8 = 12;

/// An object of a device: its type and instance number (Clause 20.2.14, BACnetObjectIdentifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// Object type; proprietary types are 128..=1023.
    pub object_type: ObjectType,
    /// Instance number, 0..=4194302 (4194303 is the wildcard).
    pub instance: u32,
}

impl ObjectRef {
    /// An object reference (checked by [`BacnetPoint::validate`], not here).
    #[must_use]
    pub fn new(object_type: ObjectType, instance: u32) -> Self {
        ObjectRef {
            object_type,
            instance,
        }
    }

    /// The wire identifier, or an error for a type or instance outside the 10/22-bit fields.
    pub fn identifier(self) -> Result<ObjectIdentifier, BacnetPointError> {
        if self.object_type.to_raw() > 1023 {
            return Err(BacnetPointError::ObjectType(self.object_type.to_raw()));
        }
        ObjectIdentifier::new_addressable(self.object_type, self.instance)
            .map_err(|_| BacnetPointError::Instance(self.instance))
    }

    pub(crate) fn from_identifier(oid: ObjectIdentifier) -> Self {
        ObjectRef::new(oid.object_type(), oid.instance_number())
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}",
            kebab(&self.object_type.to_string()),
            self.instance
        )
    }
}

/// Parses `analog-value:3` (any spelling the rusty-bacnet names accept: `ANALOG_VALUE`,
/// `analogValue`), or a number for a proprietary type (`513:1`).
impl FromStr for ObjectRef {
    type Err = BacnetPointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BacnetPointError::ObjectSyntax(s.to_owned());
        let (kind, instance) = s.split_once([':', ',']).ok_or_else(bad)?;
        let object_type = match kind.trim().parse::<u32>() {
            Ok(raw) => ObjectType::from_raw(raw),
            Err(_) => kind.trim().parse::<ObjectType>().map_err(|_| bad())?,
        };
        let instance = instance.trim().parse::<u32>().map_err(|_| bad())?;
        Ok(ObjectRef::new(object_type, instance))
    }
}

/// Parses a property name (`present-value`, `PRESENT_VALUE`) or number (`85`).
pub fn parse_property(s: &str) -> Result<PropertyIdentifier, BacnetPointError> {
    match s.trim().parse::<u32>() {
        Ok(raw) => Ok(PropertyIdentifier::from_raw(raw)),
        Err(_) => s
            .trim()
            .parse::<PropertyIdentifier>()
            .map_err(|_| BacnetPointError::PropertySyntax(s.to_owned())),
    }
}

/// `ANALOG_VALUE` -> `analog-value`.
pub(crate) fn kebab(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// The BACnet datatype a point's property carries, and how it maps onto [`Value`]
/// (Clause 20.2: application-tagged primitives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// REAL (analog objects' Present_Value) <-> [`Value::Number`]. Double, Unsigned and
    /// Signed answers are read as numbers too.
    Real,
    /// Unsigned (multi-state objects' Present_Value) <-> [`Value::Number`], a whole number
    /// from 0 to 4294967295.
    Unsigned,
    /// ENUMERATED (any enumeration, e.g. a mode) <-> [`Value::Number`], a whole number.
    Enumerated,
    /// BOOLEAN <-> [`Value::Bool`].
    Boolean,
    /// BACnetBinaryPV, ENUMERATED inactive (0) / active (1) (binary objects' Present_Value)
    /// <-> [`Value::Bool`].
    Binary,
}

impl ValueKind {
    /// The kind of a standard object type's Present_Value, or `None` for other types and
    /// properties (the kind must then be configured).
    #[must_use]
    pub fn default_for(object_type: ObjectType, property: PropertyIdentifier) -> Option<ValueKind> {
        if property != PropertyIdentifier::PRESENT_VALUE {
            return match property {
                PropertyIdentifier::OUT_OF_SERVICE => Some(ValueKind::Boolean),
                _ => None,
            };
        }
        match object_type {
            ObjectType::ANALOG_INPUT | ObjectType::ANALOG_OUTPUT | ObjectType::ANALOG_VALUE => {
                Some(ValueKind::Real)
            }
            ObjectType::BINARY_INPUT | ObjectType::BINARY_OUTPUT | ObjectType::BINARY_VALUE => {
                Some(ValueKind::Binary)
            }
            ObjectType::MULTI_STATE_INPUT
            | ObjectType::MULTI_STATE_OUTPUT
            | ObjectType::MULTI_STATE_VALUE => Some(ValueKind::Unsigned),
            _ => None,
        }
    }

    /// Lower-case name as an installer writes it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::Real => "real",
            ValueKind::Unsigned => "unsigned",
            ValueKind::Enumerated => "enumerated",
            ValueKind::Boolean => "boolean",
            ValueKind::Binary => "binary",
        }
    }

    /// Converts a decoded property value. `None` when the device sent another datatype.
    #[must_use]
    pub fn to_value(self, value: &PropertyValue) -> Option<Value> {
        match (self, value) {
            (ValueKind::Real | ValueKind::Unsigned | ValueKind::Enumerated, _) => {
                let n = match *value {
                    PropertyValue::Real(r) => f64::from(r),
                    PropertyValue::Double(d) => d,
                    PropertyValue::Unsigned(u) => u as f64,
                    PropertyValue::Signed(i) => f64::from(i),
                    PropertyValue::Enumerated(e) => f64::from(e),
                    _ => return None,
                };
                n.is_finite().then_some(Value::Number(n))
            }
            (ValueKind::Boolean, PropertyValue::Boolean(b)) => Some(Value::Bool(*b)),
            (ValueKind::Binary, PropertyValue::Enumerated(e)) => Some(Value::Bool(*e != 0)),
            // Some devices answer a binary point with BOOLEAN; accept it.
            (ValueKind::Binary, PropertyValue::Boolean(b)) => Some(Value::Bool(*b)),
            _ => None,
        }
    }

    /// Converts a value to write. Numbers for the integer kinds must be whole and in range.
    pub fn to_property_value(self, value: Value) -> Result<PropertyValue, BacnetPointError> {
        let whole = |n: f64| -> Result<u32, BacnetPointError> {
            if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) {
                Ok(n as u32)
            } else {
                Err(BacnetPointError::ValueOutOfRange {
                    kind: self,
                    value: n,
                })
            }
        };
        Ok(match self {
            ValueKind::Real => {
                let n = value.as_f64();
                let r = n as f32;
                if !r.is_finite() {
                    return Err(BacnetPointError::ValueOutOfRange {
                        kind: self,
                        value: n,
                    });
                }
                PropertyValue::Real(r)
            }
            ValueKind::Unsigned => PropertyValue::Unsigned(u64::from(whole(value.as_f64())?)),
            ValueKind::Enumerated => PropertyValue::Enumerated(whole(value.as_f64())?),
            ValueKind::Boolean => PropertyValue::Boolean(value.as_bool()),
            ValueKind::Binary => PropertyValue::Enumerated(u32::from(value.as_bool())),
        })
    }
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ValueKind {
    type Err = BacnetPointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "real" => ValueKind::Real,
            "unsigned" => ValueKind::Unsigned,
            "enumerated" => ValueKind::Enumerated,
            "boolean" | "bool" => ValueKind::Boolean,
            "binary" => ValueKind::Binary,
            _ => return Err(BacnetPointError::KindSyntax(s.to_owned())),
        })
    }
}

/// One named point of a BACnet device.
#[derive(Debug, Clone, PartialEq)]
pub struct BacnetPoint {
    /// The point's name within its device.
    pub name: String,
    /// The object.
    pub object: ObjectRef,
    /// The property; usually Present_Value.
    pub property: PropertyIdentifier,
    /// One element of an array property (1-based; 0 reads the array's length, Clause 15.5.1.1.3).
    pub array_index: Option<u32>,
    /// Priority of writes and of relinquish, 1..=16 (Clause 19.2). Ignored by devices for
    /// properties that are not commandable.
    pub priority: u8,
    /// What the rest of the system may do with the point.
    pub access: Access,
    /// The datatype and its mapping onto [`Value`].
    pub kind: ValueKind,
    /// Subscribe to changes of value (Clause 13.14) instead of polling, when the device
    /// accepts. Only Present_Value points without an array index can be covered.
    pub cov: bool,
}

impl BacnetPoint {
    /// A point on `object`'s Present_Value with the default kind of its object type (see
    /// [`ValueKind::default_for`]; Real for other types), priority [`DEFAULT_PRIORITY`], COV on.
    #[must_use]
    pub fn present_value(name: impl Into<String>, object: ObjectRef, access: Access) -> Self {
        BacnetPoint {
            name: name.into(),
            object,
            property: PropertyIdentifier::PRESENT_VALUE,
            array_index: None,
            priority: DEFAULT_PRIORITY,
            access,
            kind: ValueKind::default_for(object.object_type, PropertyIdentifier::PRESENT_VALUE)
                .unwrap_or(ValueKind::Real),
            cov: true,
        }
    }

    /// Refuses configurations no BACnet device can serve.
    pub fn validate(&self) -> Result<(), BacnetPointError> {
        if self.name.trim().is_empty() {
            return Err(BacnetPointError::EmptyName);
        }
        let at = |error: BacnetPointError| BacnetPointError::At {
            point: self.name.clone(),
            error: Box::new(error),
        };
        self.object.identifier().map_err(at)?;
        if self.property.to_raw() > 4_194_303 {
            return Err(at(BacnetPointError::PropertySyntax(
                self.property.to_raw().to_string(),
            )));
        }
        if !(1..=16).contains(&self.priority) {
            return Err(at(BacnetPointError::Priority(self.priority)));
        }
        if self.priority == 6 && self.access.can_write() {
            return Err(at(BacnetPointError::PrioritySix));
        }
        if self.array_index == Some(0) && self.access.can_write() {
            return Err(at(BacnetPointError::WriteArrayLength));
        }
        if let Some(expected) = ValueKind::default_for(self.object.object_type, self.property)
            && self.array_index.is_none()
            && !compatible(expected, self.kind)
        {
            return Err(at(BacnetPointError::KindMismatch {
                object: self.object,
                expected,
                configured: self.kind,
            }));
        }
        Ok(())
    }

    /// Whether the point may be served by a COV subscription on its object.
    pub(crate) fn cov_eligible(&self) -> bool {
        self.cov
            && self.access.can_read()
            && self.property == PropertyIdentifier::PRESENT_VALUE
            && self.array_index.is_none()
    }
}

/// Integer kinds are interchangeable on the number side; Real and the integer kinds are not.
fn compatible(expected: ValueKind, configured: ValueKind) -> bool {
    use ValueKind::{Binary, Boolean, Enumerated, Real, Unsigned};
    matches!(
        (expected, configured),
        (Real, Real)
            | (Unsigned | Enumerated, Unsigned | Enumerated)
            | (Binary, Binary)
            | (Boolean, Boolean)
    )
}

/// Checks every point and that names are unique; the first problem wins.
pub fn validate_bacnet_points(points: &[BacnetPoint]) -> Result<(), BacnetPointError> {
    let mut names = HashSet::new();
    for point in points {
        point.validate()?;
        if !names.insert(point.name.as_str()) {
            return Err(BacnetPointError::DuplicateName(point.name.clone()));
        }
    }
    Ok(())
}

/// Why a BACnet point configuration is refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BacnetPointError {
    /// A problem with one named point.
    #[error("point `{point}`: {error}")]
    At {
        /// The point's name.
        point: String,
        /// The problem.
        error: Box<BacnetPointError>,
    },
    /// The name is empty.
    #[error("a point needs a name")]
    EmptyName,
    /// Two points share a name.
    #[error("two points are named `{0}`; names must be unique within a device")]
    DuplicateName(String),
    /// Object type above 1023.
    #[error("object type {0} does not exist (types are 0 to 1023)")]
    ObjectType(u32),
    /// Instance above 4194302.
    #[error("object instance {0} is out of range (0 to 4194302)")]
    Instance(u32),
    /// Unparsable object reference.
    #[error("`{0}` is not an object; write it as type:instance, e.g. `analog-value:3`")]
    ObjectSyntax(String),
    /// Unparsable property.
    #[error("`{0}` is not a BACnet property; write its name, e.g. `present-value`, or its number")]
    PropertySyntax(String),
    /// Unparsable value kind.
    #[error("`{0}` is not a value kind; use real, unsigned, enumerated, boolean or binary")]
    KindSyntax(String),
    /// Priority outside 1..=16.
    #[error("write priority {0} is out of range; BACnet priorities are 1 (highest) to 16")]
    Priority(u8),
    /// Priority 6 is the device's own minimum on/off slot.
    #[error(
        "write priority 6 is reserved for the device's minimum on/off time (ASHRAE 135 19.2.3); pick another"
    )]
    PrioritySix,
    /// Writing element 0 would change an array's length.
    #[error("array index 0 is the array's length and cannot be written")]
    WriteArrayLength,
    /// The kind does not match what the object type's property carries.
    #[error("{object}'s present-value is {expected}, but the point says {configured}")]
    KindMismatch {
        /// The object.
        object: ObjectRef,
        /// What the standard says.
        expected: ValueKind,
        /// What was configured.
        configured: ValueKind,
    },
    /// A value that does not fit the point's kind.
    #[error("{value} cannot be written as {kind}")]
    ValueOutOfRange {
        /// The point's kind.
        kind: ValueKind,
        /// The value refused.
        value: f64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn av(instance: u32) -> ObjectRef {
        ObjectRef::new(ObjectType::ANALOG_VALUE, instance)
    }

    #[test]
    fn parses_objects_and_properties() {
        assert_eq!("analog-value:3".parse::<ObjectRef>(), Ok(av(3)));
        assert_eq!("ANALOG_VALUE, 3".parse::<ObjectRef>(), Ok(av(3)));
        assert_eq!(
            "513:1".parse::<ObjectRef>(),
            Ok(ObjectRef::new(ObjectType::from_raw(513), 1))
        );
        assert!("analog-value".parse::<ObjectRef>().is_err());
        assert!("lamp:1".parse::<ObjectRef>().is_err());
        assert_eq!(av(3).to_string(), "analog-value:3");
        assert_eq!(
            parse_property("present-value"),
            Ok(PropertyIdentifier::PRESENT_VALUE)
        );
        assert_eq!(parse_property("85"), Ok(PropertyIdentifier::PRESENT_VALUE));
        assert!(parse_property("brightness").is_err());
    }

    #[test]
    fn validation_messages_name_the_point() {
        let mut p = BacnetPoint::present_value("setpoint", av(1), Access::ReadWrite);
        assert_eq!(p.validate(), Ok(()));
        p.priority = 17;
        assert_eq!(
            p.validate().map_err(|e| e.to_string()),
            Err("point `setpoint`: write priority 17 is out of range; BACnet priorities are 1 (highest) to 16".into())
        );
        p.priority = 6;
        assert!(p.validate().is_err());
        p.priority = 12;
        p.object.instance = 4_194_303;
        assert!(p.validate().is_err());
        p.object.instance = 1;
        p.kind = ValueKind::Binary;
        assert_eq!(
            p.validate().map_err(|e| e.to_string()),
            Err("point `setpoint`: analog-value:1's present-value is real, but the point says binary".into())
        );
        let light = BacnetPoint::present_value(
            "light",
            ObjectRef::new(ObjectType::BINARY_OUTPUT, 1),
            Access::ReadWrite,
        );
        assert_eq!(light.kind, ValueKind::Binary);
        assert_eq!(
            validate_bacnet_points(&[light.clone(), light]),
            Err(BacnetPointError::DuplicateName("light".into()))
        );
    }

    #[test]
    fn values_map_both_ways() {
        assert_eq!(
            ValueKind::Real.to_value(&PropertyValue::Real(21.5)),
            Some(Value::Number(21.5))
        );
        assert_eq!(
            ValueKind::Binary.to_value(&PropertyValue::Enumerated(1)),
            Some(Value::Bool(true))
        );
        assert_eq!(ValueKind::Boolean.to_value(&PropertyValue::Null), None);
        assert_eq!(
            ValueKind::Binary.to_property_value(Value::Bool(true)),
            Ok(PropertyValue::Enumerated(1))
        );
        assert_eq!(
            ValueKind::Unsigned.to_property_value(Value::Number(3.0)),
            Ok(PropertyValue::Unsigned(3))
        );
        assert!(
            ValueKind::Unsigned
                .to_property_value(Value::Number(2.5))
                .is_err()
        );
        assert!(
            ValueKind::Enumerated
                .to_property_value(Value::Number(-1.0))
                .is_err()
        );
        assert!(
            ValueKind::Real
                .to_property_value(Value::Number(1e300))
                .is_err()
        );
        assert_eq!("Binary".parse::<ValueKind>(), Ok(ValueKind::Binary));
    }
}
