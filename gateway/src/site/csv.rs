//! A device's point list as CSV, for installers who arrive with spreadsheets: export a
//! device's points, import a CSV into them with every row checked by the site file's own rules.
//!
//! The columns are the site file's point keys. Modbus devices: `id`, `name`, `table`,
//! `address`, `type`, `bit`, `layout`, `word_order`, `scale`, `offset`, `unit`, `access`,
//! `poll`, `labels`. BACnet devices: `id`, `name`, `object`, `property`, `kind`, `priority`,
//! `cov`, `unit`, `access`, `labels`. Serial devices have no point list (their profile gives
//! the points). An empty cell leaves the key unset; `labels` is `0=off; 1=heat` (a `;` in a
//! label is written `;;`).
//!
//! Reading: the header row is required, columns come in any order, an unknown column (or one of
//! the other protocol) is an error; blank rows and lines starting with `#` are skipped; fields
//! are RFC 4180 (quotes around commas, `""` for a quote, line breaks inside quotes); UTF-8 with
//! or without a byte-order mark; `;` (Excel in many locales) or tab separators are detected from
//! the header, and with `;` a decimal comma (`0,1`) is read as `0.1`.
//!
//! An import reports every bad row with its line number, column and reason, and returns the
//! good rows too so the console can show both; [`PointImport::apply`] refuses while any row is
//! bad, so a point list is replaced whole or not at all, and the resulting site is validated as
//! a whole (a binding to a point that is gone is an error there).

use std::collections::HashMap;
use std::fmt;

use toml::{Table, Value};

use super::devices::{PointFile, build_bacnet_point, build_modbus_point};
use super::export::{ExportError, POINT_KEYS, SiteDocument, render_document, render_inline};
use super::{Checker, PointDef, SiteErrors, id_rule, valid_id};

const MODBUS_COLUMNS: &[&str] = &[
    "id",
    "name",
    "table",
    "address",
    "type",
    "bit",
    "layout",
    "word_order",
    "scale",
    "offset",
    "unit",
    "access",
    "poll",
    "labels",
];
const MODBUS_REQUIRED: &[&str] = &["id", "table", "address", "type"];
const BACNET_COLUMNS: &[&str] = &[
    "id", "name", "object", "property", "kind", "priority", "cov", "unit", "access", "labels",
];
const BACNET_REQUIRED: &[&str] = &["id", "object"];

/// Which point keys a device takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PointKind {
    Modbus,
    Bacnet,
}

impl PointKind {
    fn columns(self) -> &'static [&'static str] {
        match self {
            PointKind::Modbus => MODBUS_COLUMNS,
            PointKind::Bacnet => BACNET_COLUMNS,
        }
    }

    fn required(self) -> &'static [&'static str] {
        match self {
            PointKind::Modbus => MODBUS_REQUIRED,
            PointKind::Bacnet => BACNET_REQUIRED,
        }
    }

    fn name(self) -> &'static str {
        match self {
            PointKind::Modbus => "Modbus",
            PointKind::Bacnet => "BACnet",
        }
    }

    fn other(self) -> PointKind {
        match self {
            PointKind::Modbus => PointKind::Bacnet,
            PointKind::Bacnet => PointKind::Modbus,
        }
    }
}

/// One problem in a CSV point list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError {
    /// 1-based line of the file (of the row's first line when a quoted field spans lines).
    pub line: usize,
    /// The column, where the problem is in one cell.
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(c) = &self.column {
            write!(f, ", column {c}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a point list cannot be exported, imported or applied at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PointsCsvError {
    #[error("there is no device '{0}'")]
    UnknownDevice(String),
    #[error("device '{0}' is a serial device: its points come from its profile")]
    NoPointList(String),
    #[error("{} bad row(s) in the point list:\n{}", .0.len(), lines(.0))]
    BadRows(Vec<CsvError>),
    #[error("the site with the imported points is not valid:\n{0}")]
    Site(SiteErrors),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("the CSV could not be written: {0}")]
    Write(String),
}

fn lines(errors: &[CsvError]) -> String {
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    all.join("\n")
}

/// One good row: the point as the site will run it, and its line in the file.
#[derive(Debug, Clone)]
pub struct ImportedPoint {
    pub line: usize,
    pub point: PointDef,
    /// The point as the site file writes it.
    entry: Table,
}

/// The outcome of reading a CSV point list: the good rows and every error.
#[derive(Debug, Clone)]
pub struct PointImport {
    pub device: String,
    /// Rows that passed every check, in file order.
    pub points: Vec<ImportedPoint>,
    /// Every bad row (and header problem), in file order.
    pub errors: Vec<CsvError>,
}

impl PointImport {
    /// The document with the device's points replaced by the imported ones, validated as a
    /// whole site. Refused, changing nothing, while any row is bad.
    pub fn apply(&self, doc: &SiteDocument) -> Result<SiteDocument, PointsCsvError> {
        if !self.errors.is_empty() {
            return Err(PointsCsvError::BadRows(self.errors.clone()));
        }
        let mut table = doc.to_table()?;
        let (device, _) = device_entry(&mut table, &self.device)?;
        let points: Vec<Value> = (self.points.iter())
            .map(|p| Value::Table(p.entry.clone()))
            .collect();
        if points.is_empty() {
            device.remove("points");
        } else {
            device.insert("points".into(), Value::Array(points));
        }
        SiteDocument::load(&render_document(&table)).map_err(PointsCsvError::Site)
    }
}

/// The device's wire table and which point keys it takes.
fn device_entry<'a>(
    doc: &'a mut Table,
    id: &str,
) -> Result<(&'a mut Table, PointKind), PointsCsvError> {
    let unknown = || PointsCsvError::UnknownDevice(id.to_owned());
    let Some(Value::Array(devices)) = doc.get_mut("devices") else {
        return Err(unknown());
    };
    let device = devices
        .iter_mut()
        .find_map(|d| match d {
            Value::Table(t) if t.get("id").and_then(Value::as_str) == Some(id) => Some(t),
            _ => None,
        })
        .ok_or_else(unknown)?;
    let kind = match device.get("protocol").and_then(Value::as_str) {
        Some("bacnet") => PointKind::Bacnet,
        Some("serial") => return Err(PointsCsvError::NoPointList(id.to_owned())),
        _ => PointKind::Modbus,
    };
    Ok((device, kind))
}

/// A device's points as CSV: a header with the columns in use, one row per point.
pub fn export_points(doc: &SiteDocument, device: &str) -> Result<String, PointsCsvError> {
    let mut table = doc.to_table()?;
    let (entry, kind) = device_entry(&mut table, device)?;
    let points: Vec<&Table> = match entry.get("points") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_table).collect(),
        _ => Vec::new(),
    };
    let columns: Vec<&str> = (kind.columns().iter().copied())
        .filter(|c| kind.required().contains(c) || points.iter().any(|p| p.contains_key(*c)))
        .collect();
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let write = |e: csv::Error| PointsCsvError::Write(e.to_string());
    out.write_record(&columns).map_err(write)?;
    for p in points {
        let row: Vec<String> = columns
            .iter()
            .map(|c| p.get(*c).map(|v| cell(c, v)).unwrap_or_default())
            .collect();
        out.write_record(&row).map_err(write)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| PointsCsvError::Write(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| PointsCsvError::Write(e.to_string()))
}

/// A value as a spreadsheet cell.
pub(super) fn cell(column: &str, v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Table(t) if column == "labels" => {
            let parts: Vec<String> = super::export::ordered(t, &[])
                .into_iter()
                .map(|(k, v)| {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    format!("{k}={}", text.replace(';', ";;"))
                })
                .collect();
            parts.join("; ")
        }
        other => render_inline(column, other),
    }
}

/// The separator, from the first line that is not blank or a comment: `;` or tab where the
/// header has more of them than commas.
fn separator(text: &str) -> u8 {
    let header = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    let mut quoted = false;
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    for c in header.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' | ';' | '\t' if !quoted => {
                for (sep, n) in &mut counts {
                    if u32::from(*sep) == u32::from(c) {
                        *n += 1;
                    }
                }
            }
            _ => {}
        }
    }
    counts
        .iter()
        .max_by_key(|(sep, n)| (*n, *sep == b','))
        .map_or(b',', |(sep, _)| *sep)
}

/// Reads a CSV point list for `device`, checking every row with the site file's rules.
pub fn import_points(
    doc: &SiteDocument,
    device: &str,
    text: &str,
) -> Result<PointImport, PointsCsvError> {
    let mut table = doc.to_table()?;
    let (_, kind) = device_entry(&mut table, device)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let sep = separator(text);
    let mut import = PointImport {
        device: device.to_owned(),
        points: Vec::new(),
        errors: Vec::new(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .delimiter(sep)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut header: Option<Vec<String>> = None;
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line_before = reader.position().line() as usize;
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(line_before, |p| p.line() as usize);
                import.errors.push(CsvError {
                    line,
                    column: None,
                    message: format!("not a CSV row: {e}"),
                });
                continue;
            }
        }
        let line = record
            .position()
            .map_or(line_before, |p| first_line(text, p.byte() as usize));
        if record.iter().all(str::is_empty) {
            continue;
        }
        let Some(columns) = &header else {
            let columns: Vec<String> = record.iter().map(str::to_ascii_lowercase).collect();
            let errors = check_header(kind, &columns, line);
            if !errors.is_empty() {
                import.errors.extend(errors);
                return Ok(import);
            }
            header = Some(columns);
            continue;
        };
        if record.len() > columns.len() && record.iter().skip(columns.len()).any(|c| !c.is_empty())
        {
            import.errors.push(CsvError {
                line,
                column: None,
                message: format!(
                    "{} fields, but the header has {} columns",
                    record.len(),
                    columns.len()
                ),
            });
            continue;
        }
        match read_row(kind, columns, &record, line, sep, &mut seen) {
            Ok(point) => import.points.push(point),
            Err(errors) => import.errors.extend(errors),
        }
    }
    if header.is_none() {
        import.errors.push(CsvError {
            line: 1,
            column: None,
            message: format!(
                "no header row: the first row names the columns, e.g. {}",
                kind.required().join(",")
            ),
        });
    }
    Ok(import)
}

/// The line a record starts on: the reader's position is where it began reading, before the
/// line ends, blank lines and comments it skipped.
fn first_line(text: &str, byte: usize) -> usize {
    let bytes = text.as_bytes();
    let mut pos = byte.min(bytes.len());
    loop {
        while pos < bytes.len() && matches!(bytes[pos], b'\r' | b'\n') {
            pos += 1;
        }
        if pos < bytes.len() && bytes[pos] == b'#' {
            pos = text[pos..].find('\n').map_or(bytes.len(), |n| pos + n + 1);
            continue;
        }
        break;
    }
    text.get(..pos).map_or(1, |t| t.matches('\n').count() + 1)
}

fn check_header(kind: PointKind, columns: &[String], line: usize) -> Vec<CsvError> {
    let mut errors = Vec::new();
    let mut err = |column: &str, message: String| {
        errors.push(CsvError {
            line,
            column: (!column.is_empty()).then(|| column.to_owned()),
            message,
        });
    };
    for (i, c) in columns.iter().enumerate() {
        if columns[..i].contains(c) {
            err(c, format!("column `{c}` appears twice"));
        } else if c.is_empty() {
            err("", format!("column {} has no name", i + 1));
        } else if !kind.columns().contains(&c.as_str()) {
            if kind.other().columns().contains(&c.as_str()) {
                err(
                    c,
                    format!(
                        "`{c}` is a {} point key; this device's points are {}",
                        kind.other().name(),
                        kind.name()
                    ),
                );
            } else {
                err(
                    c,
                    format!(
                        "unknown column `{c}` (the {} point columns: {})",
                        kind.name(),
                        kind.columns().join(", ")
                    ),
                );
            }
        }
    }
    for r in kind.required() {
        if !columns.iter().any(|c| c == r) {
            err(
                "",
                format!(
                    "missing column `{r}`: a {} point list needs {}",
                    kind.name(),
                    kind.required().join(", ")
                ),
            );
        }
    }
    errors
}

/// How a cell's text becomes a site-file value.
fn parse_cell(column: &str, text: &str, sep: u8) -> Result<Value, String> {
    match column {
        "address" | "bit" | "priority" => text
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("'{text}' is not a whole number")),
        "scale" | "offset" => {
            let normal = if sep == b';' && !text.contains('.') {
                text.replace(',', ".")
            } else {
                text.to_owned()
            };
            normal
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Value::Float)
                .ok_or_else(|| format!("'{text}' is not a number"))
        }
        "cov" => match text.to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Boolean(true)),
            "false" => Ok(Value::Boolean(false)),
            _ => Err(format!("'{text}': write true or false")),
        },
        "labels" => parse_labels(text).map(Value::Table),
        _ => Ok(Value::String(text.to_owned())),
    }
}

/// `0=off; 1=heat`, with `;;` for a `;` inside a label.
pub(super) fn parse_labels(text: &str) -> Result<Table, String> {
    let mut entries = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ';' {
            if chars.peek() == Some(&';') {
                chars.next();
                current.push(';');
            } else {
                entries.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    entries.push(current);
    let mut table = Table::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let Some((value, label)) = entry.split_once('=') else {
            return Err(format!(
                "'{entry}' is not value=label: write labels as 0=off; 1=heat"
            ));
        };
        table.insert(
            value.trim().to_owned(),
            Value::String(label.trim().to_owned()),
        );
    }
    Ok(table)
}

/// One data row into a point, or every problem in it.
fn read_row(
    kind: PointKind,
    columns: &[String],
    record: &csv::StringRecord,
    line: usize,
    sep: u8,
    seen: &mut HashMap<String, usize>,
) -> Result<ImportedPoint, Vec<CsvError>> {
    let mut errors = Vec::new();
    let mut entry = Table::new();
    for (column, text) in columns.iter().zip(record.iter()) {
        if text.is_empty() {
            continue;
        }
        match parse_cell(column, text, sep) {
            Ok(v) => {
                entry.insert(column.clone(), v);
            }
            Err(message) => errors.push(CsvError {
                line,
                column: Some(column.clone()),
                message,
            }),
        }
    }
    let id = entry
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let at = |column: Option<&str>, message: String| CsvError {
        line,
        column: column.map(str::to_owned),
        message,
    };
    if id.is_empty() {
        errors.push(at(Some("id"), "a point needs an id".into()));
    } else if !valid_id(&id) {
        errors.push(at(Some("id"), id_rule(&id)));
    } else if let Some(first) = seen.get(&id) {
        errors.push(at(
            Some("id"),
            format!("point id '{id}' is used twice (first on line {first})"),
        ));
    } else {
        seen.insert(id.clone(), line);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // The row as a site-file table, one key per line, checked by the site file's own code;
    // an error's line in that text names its column.
    let keys: Vec<&str> = (POINT_KEYS.iter().copied())
        .filter(|k| entry.contains_key(*k))
        .collect();
    let text: String = keys
        .iter()
        .map(|k| format!("{} = {}\n", k, render_inline(k, &entry[*k])))
        .collect();
    let column_at = |offset: usize| -> Option<String> {
        let row = text[..offset.min(text.len())].matches('\n').count();
        keys.get(row).map(|k| (*k).to_owned())
    };
    let file: PointFile = match toml::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            return Err(vec![at(
                e.span().and_then(|s| column_at(s.start)).as_deref(),
                e.message().trim().to_owned(),
            )]);
        }
    };
    let mut ck = Checker::new(&text);
    let path = format!("points[{id}]");
    let built = match kind {
        PointKind::Modbus => build_modbus_point(&mut ck, &file, &path),
        PointKind::Bacnet => build_bacnet_point(&mut ck, &file, &path),
    };
    for e in &ck.errors {
        let from_path = e
            .path
            .strip_prefix(&path)
            .and_then(|rest| rest.strip_prefix('.'))
            .map(str::to_owned);
        let from_line = e
            .line_col
            .and_then(|(l, _)| keys.get(l.saturating_sub(1)))
            .filter(|k| **k != "id")
            .map(|k| (*k).to_owned());
        errors.push(CsvError {
            line,
            column: from_path.or(from_line),
            message: e.message.clone(),
        });
    }
    match built {
        Some(point) if errors.is_empty() => Ok(ImportedPoint { line, point, entry }),
        _ => {
            if errors.is_empty() {
                errors.push(at(None, "not a valid point".into()));
            }
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::{PointsCsvError, export_points, import_points};
    use crate::site::SiteDocument;
    use crate::site::export::tests::MIXED;

    fn doc() -> SiteDocument {
        SiteDocument::load(MIXED).unwrap_or_else(|e| panic!("loads: {e}"))
    }

    fn errors(device: &str, csv: &str) -> String {
        let import = import_points(&doc(), device, csv).expect("device");
        let lines: Vec<String> = import.errors.iter().map(ToString::to_string).collect();
        lines.join("\n")
    }

    #[test]
    fn modbus_and_bacnet_points_round_trip_through_csv() {
        let d = doc();
        let csv = export_points(&d, "hvac").expect("export");
        expect![[r#"
            id,table,address,type,bit,layout,scale,offset,unit,access,poll,labels
            power,coil,0,bool,,,,,,,,
            mode,holding_register,0,u16,,,,,,,,0=off; 1=heat; 2=cool; 10=eco
            setpoint,holding_register,1,f32,,CDAB,,,,,,
            temp,input_register,10,i16,,,0.1,-2.5,°C,,1m,
            co2,input_register,2,u16,,,,,ppm,read,,
            alarm,holding_register,7,bool,3,,,,,,,
        "#]]
        .assert_eq(&csv);
        for device in ["hvac", "fcu", "lights"] {
            let csv = export_points(&d, device).expect("export");
            let import = import_points(&d, device, &csv).expect("import");
            assert!(import.errors.is_empty(), "{:?}", import.errors);
            let again = import.apply(&d).expect("apply");
            assert!(
                crate::site::diff(&d, &again).expect("diff").is_empty(),
                "{device}"
            );
            assert_eq!(
                export_points(&again, device).expect("export again"),
                csv,
                "{device}"
            );
        }
        expect![[r#"
            id,object,property,kind,priority,cov,unit,access
            power,binary-output:1,,,10,,,read_write
            setpoint,analog-value:1,,,,,°C,read_write
            temperature,analog-input:1,,,,,,
            presence,binary-input:1,,,,,,
            oos,analog-input:1,out-of-service,boolean,,false,,
        "#]]
        .assert_eq(&export_points(&d, "fcu").expect("export"));
    }

    #[test]
    fn one_bad_row_rejects_the_import_with_its_line_number() {
        let csv = "id,table,address,type,scale\n\
                   power,coil,0,bool,\n\
                   mode,holding_register,0,u16,\n\
                   temp,input_register,70000,i16,0.1\n\
                   co2,input_register,2,u16,\n";
        let d = doc();
        let import = import_points(&d, "hvac", csv).expect("device");
        assert_eq!(import.points.len(), 3, "the good rows, for the preview");
        expect!["line 4, column address: Modbus address 70000 is out of range 0..=65535 (addresses are 0-based: register 40001 is address 0)"]
            .assert_eq(&errors("hvac", csv));
        match import.apply(&d) {
            Err(PointsCsvError::BadRows(rows)) => assert_eq!(rows[0].line, 4),
            other => panic!("refused: {other:?}"),
        }
    }

    #[test]
    fn every_bad_row_and_cell_is_reported_with_the_site_file_reasons() {
        let csv = "# points of the AHU\n\
                   id,name,table,address,type,bit,layout,scale,access,labels\n\
                   \n\
                   ok,\"Supply, fan\",coil,0,bool,,,,,\n\
                   bad id,,coil,1,bool,,,,,\n\
                   t2,,holdin,1,u16,,,,,\n\
                   t3,,input_register,x,u16,,,,,\n\
                   t4,,input_register,4,u16,3,,,,\n\
                   t5,,input_register,5,u32,,XYZW,,,\n\
                   t6,,input_register,6,u16,,,abc,write,\n\
                   t7,,holding_register,7,u16,,,,,0=off; heat\n\
                   ok,,coil,8,bool,,,,,\n\
                   t9,,coil,9,bool,,,,,,extra\n\
                   t10,,coil,10,,,,,,\n";
        expect![[r#"
            line 5, column id: 'bad id' is not a valid id: use 1 to 64 letters, digits, '-' or '_'
            line 6, column table: unknown variant `holdin`, expected one of `coil`, `discrete_input`, `input_register`, `holding_register`
            line 7, column address: 'x' is not a whole number
            line 8: point `t4`: a bit number is only allowed for a bool in a holding or input register, not for a u16 in the input register table
            line 9, column layout: unknown register layout `XYZW`; use ABCD (Modbus order), CDAB (word swapped), BADC (byte swapped) or DCBA (both swapped)
            line 10, column scale: 'abc' is not a number
            line 11, column labels: 'heat' is not value=label: write labels as 0=off; 1=heat
            line 12, column id: point id 'ok' is used twice (first on line 4)
            line 13: 11 fields, but the header has 10 columns
            line 14: a Modbus point needs `table`, `address` and `type`"#]]
        .assert_eq(&errors("hvac", csv));
    }

    #[test]
    fn headers_are_checked_once() {
        expect![[r#"
            line 1, column object: `object` is a BACnet point key; this device's points are Modbus
            line 1, column colour: unknown column `colour` (the Modbus point columns: id, name, table, address, type, bit, layout, word_order, scale, offset, unit, access, poll, labels)
            line 1, column id: column `id` appears twice
            line 1: missing column `type`: a Modbus point list needs id, table, address, type"#]]
        .assert_eq(&errors("hvac", "id,table,address,object,colour,id\n"));
        expect!["line 1: no header row: the first row names the columns, e.g. id,object"]
            .assert_eq(&errors("fcu", "# nothing here\n\n"));
        assert!(matches!(
            import_points(&doc(), "door-reader", "id\n"),
            Err(PointsCsvError::NoPointList(_))
        ));
        assert!(matches!(
            import_points(&doc(), "nope", "id\n"),
            Err(PointsCsvError::UnknownDevice(_))
        ));
    }

    #[test]
    fn excel_files_with_a_bom_semicolons_decimal_commas_and_quotes() {
        let csv = "\u{feff}ID;Address;Type;Table;Scale;Unit;Labels\r\n\
                   temp;10;i16;input_register;0,1;°C;\r\n\
                   mode;0;u16;holding_register;;;\"0=off; 1=a;;b\"\r\n\
                   \"note \"\"x\"\"\";3;u16;holding_register;;;\r\n\
                   ;;;;;;\r\n";
        let import = import_points(&doc(), "hvac", csv).expect("device");
        expect![[r#"line 4, column id: 'note "x"' is not a valid id: use 1 to 64 letters, digits, '-' or '_'"#]]
            .assert_eq(&import.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
        let temp = &import.points[0];
        assert_eq!((temp.line, temp.point.id.as_str()), (2, "temp"));
        match &temp.point.protocol {
            crate::site::PointProtocol::Modbus(m) => assert_eq!(m.scaling.scale, 0.1),
            other => panic!("{other:?}"),
        }
        let mode = &import.points[1].point;
        assert_eq!(
            mode.labels.label(drivers::point::Value::Number(1.0)),
            Some("a;b")
        );
        // A multi-line quoted name keeps the row's first line as its line number.
        let csv = "id,name,table,address,type\nx,\"two\nlines\",coil,0,bool\ny,,coil,z,bool\n";
        expect!["line 4, column address: 'z' is not a whole number"]
            .assert_eq(&errors("hvac", csv));
    }

    #[test]
    fn an_import_that_breaks_a_binding_is_refused_by_the_site_check() {
        let d = doc();
        let import =
            import_points(&d, "lights", "id,table,address,type\nrelay,coil,0,bool\n").expect("ok");
        assert!(import.errors.is_empty());
        match import.apply(&d) {
            Err(PointsCsvError::Site(e)) => assert!(
                e.to_string()
                    .contains("rooms[r1].bindings.light_level: unknown point 'lights/dim': device 'lights' has relay"),
                "{e}"
            ),
            other => panic!("refused: {other:?}"),
        }
    }
}
