//! The site file's `[cloud.telemetry]`: which points go up to the hub, how often, and with
//! what deadband. Point patterns are resolved against the site's devices at load time, so a
//! typo is an error with its line and column, never a silently empty selection.

use std::collections::BTreeMap;

use scenes::Span;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Checker, Device, PointRef};
use crate::duration::parse_span;
use crate::telemetry::{
    DEFAULT_BATCH, DEFAULT_MAX_SAMPLES, DEFAULT_MIN_INTERVAL, MAX_SAMPLES_LIMIT, PointRule,
    TelemetryConfig, glob_matches,
};

/// What installers write under `[cloud.telemetry]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TelemetryFile {
    /// `"device/point"` patterns; `*` stands for any run of characters: `"ahu-1/*"`,
    /// `"*/co2"`.
    points: Vec<Spanned<String>>,
    /// How often a batch may go (default 5s).
    batch: Option<Spanned<String>>,
    /// Per point, at most one sample per this (default 30s).
    min_interval: Option<Spanned<String>>,
    max_samples_per_batch: Option<Spanned<i64>>,
    /// Pattern → the smallest change of a number that is sent: `{ "*/co2" = 25 }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    deadband: BTreeMap<String, Spanned<f64>>,
}

/// A pattern split into its device and point parts, or why it is not one.
fn split(pattern: &str) -> Result<(&str, &str), String> {
    let Some((device, point)) = pattern.split_once('/') else {
        return Err(format!(
            "'{pattern}' is not a point pattern: write \"device/point\" as in bindings, \
             e.g. \"ahu-1/*\" or \"*/co2\""
        ));
    };
    let allowed = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*'))
    };
    if !allowed(device) || !allowed(point) {
        return Err(format!(
            "'{pattern}' is not a point pattern: ids are letters, digits, '-' and '_', and '*' \
             stands for any run of them"
        ));
    }
    Ok((device, point))
}

/// Every site point a pattern matches, or why it matches none.
fn resolve(pattern: &str, devices: &[Device]) -> Result<Vec<(PointRef, bool)>, String> {
    let (dp, pp) = split(pattern)?;
    let matching: Vec<&Device> = devices.iter().filter(|d| glob_matches(dp, &d.id)).collect();
    if matching.is_empty() {
        let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
        return Err(format!(
            "'{pattern}' matches no point: no device matches '{dp}' (devices: {})",
            if ids.is_empty() {
                "none".to_owned()
            } else {
                ids.join(", ")
            }
        ));
    }
    let found: Vec<(PointRef, bool)> = matching
        .iter()
        .flat_map(|d| {
            d.points
                .iter()
                .filter(|p| glob_matches(pp, &p.id))
                .map(|p| {
                    let r = PointRef {
                        device: d.id.clone(),
                        point: p.id.clone(),
                    };
                    (r, p.is_bool)
                })
        })
        .collect();
    if found.is_empty() {
        let listed: Vec<String> = matching
            .iter()
            .map(|d| {
                let ids: Vec<&str> = d.points.iter().map(|p| p.id.as_str()).collect();
                format!(
                    "'{}' has {}",
                    d.id,
                    if ids.is_empty() {
                        "no points".to_owned()
                    } else {
                        ids.join(", ")
                    }
                )
            })
            .collect();
        return Err(format!(
            "'{pattern}' matches no point: {}",
            listed.join("; ")
        ));
    }
    Ok(found)
}

/// Validates `[cloud.telemetry]` against the site's devices; every problem is reported.
pub(super) fn build_telemetry(
    ck: &mut Checker<'_>,
    t: &Spanned<TelemetryFile>,
    devices: &[Device],
) -> Option<TelemetryConfig> {
    let path = "cloud.telemetry";
    let file = t.get_ref();
    let errors_before = ck.errors.len();
    if file.points.is_empty() {
        ck.err(
            t,
            format!("{path}.points"),
            "selects no points: list \"device/point\" patterns, e.g. points = [\"ahu-1/*\"]",
        );
    }
    // Each selected point: whether it is on/off, and its deadband where one is given.
    let mut points: BTreeMap<PointRef, (bool, Option<f64>)> = BTreeMap::new();
    for pattern in &file.points {
        match resolve(pattern.get_ref(), devices) {
            Ok(found) => {
                for (r, is_bool) in found {
                    points.insert(r, (is_bool, None));
                }
            }
            Err(e) => ck.err(pattern, format!("{path}.points"), e),
        }
    }
    for (pattern, deadband) in &file.deadband {
        let dpath = format!("{path}.deadband.\"{pattern}\"");
        let value = *deadband.get_ref();
        if !value.is_finite() || value < 0.0 {
            ck.err(
                deadband,
                &dpath,
                format!("{value} is not a deadband: write a change of 0 or more, e.g. 0.5"),
            );
            continue;
        }
        let found = match split(pattern) {
            Ok(_) => resolve(pattern, devices).unwrap_or_default(),
            Err(e) => {
                ck.err(deadband, &dpath, e);
                continue;
            }
        };
        let (mut selected, mut numbers) = (0, 0);
        for (r, _) in &found {
            let Some((is_bool, band)) = points.get_mut(r) else {
                continue;
            };
            selected += 1;
            if !*is_bool {
                // Where patterns overlap, the smallest deadband applies.
                *band = Some(band.map_or(value, |b| b.min(value)));
                numbers += 1;
            }
        }
        if selected == 0 {
            ck.err(
                deadband,
                &dpath,
                format!("'{pattern}' matches no point selected in {path}.points"),
            );
        } else if numbers == 0 {
            ck.err(
                deadband,
                &dpath,
                format!("'{pattern}' matches only on/off points: a deadband applies to numbers"),
            );
        }
    }
    let batch = duration(
        ck,
        &file.batch,
        &format!("{path}.batch"),
        DEFAULT_BATCH,
        (Span::seconds(1), Span::minutes(60)),
        "\"1s\" to \"1h\"",
    );
    let min_interval = duration(
        ck,
        &file.min_interval,
        &format!("{path}.min_interval"),
        DEFAULT_MIN_INTERVAL,
        (Span::ZERO, Span::minutes(24 * 60)),
        "\"0s\" to \"24h\"",
    );
    let max_samples_per_batch = match &file.max_samples_per_batch {
        None => DEFAULT_MAX_SAMPLES,
        Some(n) => match usize::try_from(*n.get_ref()) {
            Ok(v) if (1..=MAX_SAMPLES_LIMIT).contains(&v) => v,
            _ => {
                ck.err(
                    n,
                    format!("{path}.max_samples_per_batch"),
                    format!(
                        "{} is out of range: use 1 to {MAX_SAMPLES_LIMIT}",
                        n.get_ref()
                    ),
                );
                DEFAULT_MAX_SAMPLES
            }
        },
    };
    if ck.errors.len() > errors_before {
        return None;
    }
    Some(TelemetryConfig {
        points: points
            .into_iter()
            .map(|(r, (_, band))| {
                let rule = PointRule {
                    deadband: band.unwrap_or(0.0),
                };
                (r, rule)
            })
            .collect(),
        batch,
        min_interval,
        max_samples_per_batch,
    })
}

/// A duration within `(min, max)`, or its default (with an error) when it is not one.
fn duration(
    ck: &mut Checker<'_>,
    v: &Option<Spanned<String>>,
    path: &str,
    default: Span,
    (min, max): (Span, Span),
    range: &str,
) -> Span {
    let Some(s) = v else {
        return default;
    };
    match parse_span(s.get_ref()) {
        Ok(d) if d >= min && d <= max => d,
        Ok(_) => {
            ck.err(
                s,
                path,
                format!("'{}' is out of range: use {range}", s.get_ref()),
            );
            default
        }
        Err(e) => {
            ck.err(s, path, e);
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::site::{PointRef, load};

    fn site(telemetry: &str) -> String {
        format!(
            r#"[site]
name = "t"

[cloud]
broker = "127.0.0.1:1883"
site = "s"
gateway = "g"
tls = false

[cloud.telemetry]
{telemetry}

[[devices]]
id = "ahu-1"
protocol = "modbus-tcp"
host = "127.0.0.1"
points = [
  {{ id = "supply-temp", table = "input_register", address = 0, type = "i16", scale = 0.1 }},
  {{ id = "fan", table = "coil", address = 0, type = "bool" }},
]

[[devices]]
id = "room-4-01-co2"
protocol = "modbus-tcp"
host = "127.0.0.1"
points = [{{ id = "co2", table = "input_register", address = 0, type = "u16" }}]
"#
        )
    }

    fn errors(telemetry: &str) -> String {
        load(&site(telemetry)).expect_err("refused").to_string()
    }

    #[test]
    fn patterns_select_points_with_their_deadbands_and_defaults() {
        let s = load(&site(
            r#"points = ["ahu-1/*", "*/co2"]
deadband = { "*/co2" = 25, "*-1/*" = 0.5, "ahu-1/supply-temp" = 0.2 }"#,
        ))
        .expect("valid");
        let t = s.cloud.and_then(|c| c.telemetry).expect("telemetry config");
        let bands: Vec<(String, f64)> = t
            .points
            .iter()
            .map(|(PointRef { device, point }, r)| (format!("{device}/{point}"), r.deadband))
            .collect();
        assert_eq!(
            bands,
            [
                ("ahu-1/fan".to_owned(), 0.0),
                ("ahu-1/supply-temp".to_owned(), 0.2),
                ("room-4-01-co2/co2".to_owned(), 25.0),
            ],
            "on/off points get no deadband; the smallest of overlapping ones applies"
        );
        assert_eq!(t.batch, crate::telemetry::DEFAULT_BATCH);
        assert_eq!(t.min_interval, crate::telemetry::DEFAULT_MIN_INTERVAL);
        assert_eq!(
            t.max_samples_per_batch,
            crate::telemetry::DEFAULT_MAX_SAMPLES
        );
    }

    #[test]
    fn mistakes_are_located_and_explained() {
        let e = errors(r#"points = ["ahu-2/*"]"#);
        assert!(
            e.contains("11:11: cloud.telemetry.points: 'ahu-2/*' matches no point: no device matches 'ahu-2' (devices: ahu-1, room-4-01-co2)"),
            "{e}"
        );
        let e = errors(r#"points = ["ahu-1/return-temp"]"#);
        assert!(
            e.contains("'ahu-1/return-temp' matches no point: 'ahu-1' has supply-temp, fan"),
            "{e}"
        );
        let e = errors(r#"points = ["ahu-1.fan"]"#);
        assert!(e.contains("write \"device/point\" as in bindings"), "{e}");
        let e = errors("points = []");
        assert!(
            e.contains("cloud.telemetry.points: selects no points"),
            "{e}"
        );
        let e = errors(
            r#"points = ["ahu-1/fan"]
batch = "0s"
min_interval = "soon"
max_samples_per_batch = 0
deadband = { "*/co2" = 5, "ahu-1/fan" = 1, "ahu-1/*" = -1 }"#,
        );
        for expected in [
            "12:9: cloud.telemetry.batch: '0s' is out of range: use \"1s\" to \"1h\"",
            "13:16: cloud.telemetry.min_interval: 'soon' is not a duration",
            "14:25: cloud.telemetry.max_samples_per_batch: 0 is out of range: use 1 to 2000",
            "cloud.telemetry.deadband.\"*/co2\": '*/co2' matches no point selected in cloud.telemetry.points",
            "cloud.telemetry.deadband.\"ahu-1/fan\": 'ahu-1/fan' matches only on/off points",
            "cloud.telemetry.deadband.\"ahu-1/*\": -1 is not a deadband",
        ] {
            assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
        }
        let e = errors(
            r#"points = ["ahu-1/fan"]
interval = "5s""#,
        );
        assert!(e.contains("unknown field `interval`"), "{e}");
    }
}
