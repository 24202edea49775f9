//! CSV columns: which wire field or property each column of the header
//! holds (after `--column FIELD=COLUMN` renames), the type of each property
//! (`--type NAME=TYPE`), and a [`Row`] that reads cells through that
//! [`Layout`]. An empty cell is left out.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::{error::CliError, kinds::OtherColumns, records::LineError};

/// How a cell becomes a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellType {
    /// The text as it is.
    String,
    /// An integer, else a finite decimal number.
    Number,
    /// `true`/`false`, `1`/`0`, `yes`/`no`, `y`/`n`, `t`/`f`, any case.
    Bool,
    /// Any JSON value.
    Json,
}

impl CellType {
    fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "string" | "text" => Some(CellType::String),
            "number" => Some(CellType::Number),
            "bool" | "boolean" => Some(CellType::Bool),
            "json" => Some(CellType::Json),
            _ => None,
        }
    }

    /// The cell as this type.
    fn value(self, cell: &str) -> Result<Value, String> {
        match self {
            CellType::String => Ok(Value::String(cell.to_owned())),
            CellType::Number => {
                let text = cell.trim();
                if let Ok(int) = text.parse::<i64>() {
                    return Ok(int.into());
                }
                match text.parse::<f64>() {
                    Ok(number) if number.is_finite() => Ok(number.into()),
                    _ => Err(format!("\"{}\" is not a number", shown(cell))),
                }
            }
            CellType::Bool => match cell.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "y" | "t" => Ok(Value::Bool(true)),
                "false" | "0" | "no" | "n" | "f" => Ok(Value::Bool(false)),
                _ => Err(format!(
                    "\"{}\" is not a boolean (true/false, 1/0, yes/no)",
                    shown(cell)
                )),
            },
            CellType::Json => serde_json::from_str(cell)
                .map_err(|e| format!("\"{}\" is not JSON: {e}", shown(cell))),
        }
    }
}

/// A cell cut to a readable length.
fn shown(cell: &str) -> String {
    const MAX: usize = 60;
    match cell.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &cell[..end]),
        None => cell.to_owned(),
    }
}

/// The renames and types given on the command line.
#[derive(Debug, Default, Clone)]
pub struct Mapping {
    /// Field or property name → CSV column.
    renames: HashMap<String, String>,
    /// Property name → type.
    types: HashMap<String, CellType>,
}

impl Mapping {
    /// Reads `--column FIELD=COLUMN` and `--type NAME=TYPE` values.
    pub fn parse(columns: &[String], types: &[String]) -> Result<Self, CliError> {
        let mut mapping = Mapping::default();
        for value in columns {
            let (field, column) = pair(value, "--column", "FIELD=COLUMN, e.g. user_id=member_no")?;
            if mapping.renames.values().any(|c| c == column) {
                return Err(CliError::option(
                    "--column",
                    value,
                    format!("column `{column}` is already renamed"),
                ));
            }
            if mapping
                .renames
                .insert(field.to_owned(), column.to_owned())
                .is_some()
            {
                return Err(CliError::option(
                    "--column",
                    value,
                    format!("`{field}` is renamed twice"),
                ));
            }
        }
        for value in types {
            let (name, ty) = pair(value, "--type", "NAME=TYPE, e.g. price=number")?;
            let ty = CellType::parse(ty).ok_or_else(|| {
                CliError::option(
                    "--type",
                    value,
                    format!("unknown type `{ty}`; one of string, number, bool, json"),
                )
            })?;
            mapping.types.insert(name.to_owned(), ty);
        }
        Ok(mapping)
    }
}

fn pair<'a>(
    value: &'a str,
    option: &'static str,
    expected: &str,
) -> Result<(&'a str, &'a str), CliError> {
    value
        .split_once('=')
        .map(|(a, b)| (a.trim(), b.trim()))
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| CliError::option(option, value, format!("expected {expected}")))
}

/// What a column holds.
#[derive(Debug, Clone)]
enum Target {
    Field(&'static str, CellType),
    Property(String, CellType),
    Ignored,
}

impl Target {
    /// The field's or property's name.
    fn name(&self) -> Option<&str> {
        match self {
            Target::Field(name, _) => Some(name),
            Target::Property(name, _) => Some(name),
            Target::Ignored => None,
        }
    }
}

/// The header, read: what each column holds.
#[derive(Debug)]
pub struct Layout {
    targets: Vec<Target>,
    /// The header's column names, for messages.
    names: Vec<String>,
}

impl Layout {
    /// The layout of `header` for a kind with `fields` (of which `required`
    /// must be there) and what `others` become.
    pub fn new(
        header: &[String],
        mapping: &Mapping,
        fields: &[&'static str],
        required: &[&'static str],
        field_types: &[(&'static str, CellType)],
        others: OtherColumns,
        label: &str,
    ) -> Result<Self, CliError> {
        let header_error = |reason: String| CliError::Header {
            label: label.to_owned(),
            reason,
        };
        // Column name → the name it is read as.
        let by_column: HashMap<&str, &str> = mapping
            .renames
            .iter()
            .map(|(name, column)| (column.as_str(), name.as_str()))
            .collect();
        for (name, column) in &mapping.renames {
            if !header.iter().any(|h| h == column) {
                return Err(header_error(format!(
                    "has no column `{column}` (given in --column {name}={column}); its columns are {}",
                    list(header)
                )));
            }
        }
        let mut targets = Vec::with_capacity(header.len());
        let mut refused = Vec::new();
        for column in header {
            let name = by_column
                .get(column.as_str())
                .copied()
                .unwrap_or(column.as_str());
            if targets.iter().any(|t: &Target| t.name() == Some(name)) {
                return Err(header_error(format!("has `{name}` twice")));
            }
            let target = if let Some(field) = fields.iter().find(|f| **f == name) {
                let ty = field_types
                    .iter()
                    .find(|(f, _)| f == field)
                    .map_or(CellType::String, |(_, ty)| *ty);
                Target::Field(field, ty)
            } else {
                match others {
                    OtherColumns::Properties => Target::Property(
                        name.to_owned(),
                        mapping.types.get(name).copied().unwrap_or(CellType::String),
                    ),
                    OtherColumns::Ignored => Target::Ignored,
                    OtherColumns::Refused => {
                        refused.push(column.clone());
                        Target::Ignored
                    }
                }
            };
            targets.push(target);
        }
        if !refused.is_empty() {
            return Err(header_error(format!(
                "has columns this kind cannot take: {} (it takes {}); rename one with \
                 --column FIELD=COLUMN",
                list(&refused),
                fields.join(", ")
            )));
        }
        for field in required {
            if !targets
                .iter()
                .any(|t| matches!(t, Target::Field(f, _) if f == field))
            {
                return Err(header_error(format!(
                    "has no `{field}` column; its columns are {}; name the column that holds \
                     it with --column {field}=COLUMN",
                    list(header)
                )));
            }
        }
        for name in mapping.types.keys() {
            let known = targets.iter().any(|t| t.name() == Some(name.as_str()));
            if !known {
                return Err(CliError::option(
                    "--type",
                    name,
                    format!("no column holds `{name}`; the columns are {}", list(header)),
                ));
            }
        }
        Ok(Self {
            targets,
            names: header.to_vec(),
        })
    }

    /// How many columns the header has.
    pub fn width(&self) -> usize {
        self.targets.len()
    }

    /// The CSV column that holds `name` (a field, or a property's name),
    /// for messages.
    pub fn column_of(&self, name: &str) -> Option<&str> {
        self.targets
            .iter()
            .position(|t| t.name() == Some(name))
            .map(|i| self.names[i].as_str())
    }
}

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One CSV row, read through a [`Layout`].
pub struct Row<'a> {
    /// The layout.
    pub layout: &'a Layout,
    /// The row's cells, as many as the header has.
    pub cells: &'a [&'a str],
}

impl Row<'_> {
    /// The text of a field, if its cell is not empty.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.layout
            .targets
            .iter()
            .zip(self.cells)
            .find_map(|(target, cell)| match target {
                Target::Field(f, _) if *f == name && !cell.is_empty() => Some(*cell),
                _ => None,
            })
    }

    /// A field read as its type, if its cell is not empty.
    pub fn typed_field(&self, name: &str) -> Result<Option<Value>, LineError> {
        for (i, (target, cell)) in self.layout.targets.iter().zip(self.cells).enumerate() {
            if let Target::Field(f, ty) = target
                && *f == name
                && !cell.is_empty()
            {
                return ty.value(cell).map(Some).map_err(|reason| LineError::Cell {
                    column: self.layout.names[i].clone(),
                    reason,
                });
            }
        }
        Ok(None)
    }

    /// Every property column with a non-empty cell, typed.
    pub fn properties(&self) -> Result<Map<String, Value>, LineError> {
        let mut properties = Map::new();
        for (i, (target, cell)) in self.layout.targets.iter().zip(self.cells).enumerate() {
            if let Target::Property(name, ty) = target
                && !cell.is_empty()
            {
                let value = ty.value(cell).map_err(|reason| LineError::Cell {
                    column: self.layout.names[i].clone(),
                    reason,
                })?;
                properties.insert(name.clone(), value);
            }
        }
        Ok(properties)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_become_values_of_their_type() {
        assert_eq!(CellType::Number.value("42").unwrap(), Value::from(42));
        assert_eq!(CellType::Number.value(" 1.5 ").unwrap(), Value::from(1.5));
        assert!(CellType::Number.value("NaN").is_err());
        assert!(CellType::Number.value("12abc").is_err());
        assert_eq!(CellType::Bool.value("Yes").unwrap(), Value::Bool(true));
        assert_eq!(CellType::Bool.value("0").unwrap(), Value::Bool(false));
        assert!(CellType::Bool.value("maybe").is_err());
        assert_eq!(
            CellType::Json.value("[1,\"a\"]").unwrap(),
            serde_json::json!([1, "a"])
        );
        assert_eq!(CellType::String.value("007").unwrap(), Value::from("007"));
    }

    fn header(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn renames_and_types_apply_and_mistakes_are_named() {
        let mapping =
            Mapping::parse(&["user_id=member_no".into()], &["price=number".into()]).unwrap();
        let layout = Layout::new(
            &header(&["member_no", "event_name", "price", "note"]),
            &mapping,
            &["user_id", "event_name", "timestamp"],
            &["user_id", "event_name"],
            &[],
            OtherColumns::Properties,
            "f.csv",
        )
        .unwrap();
        let cells = ["u1", "mkt_login", "9.5", ""];
        let row = Row {
            layout: &layout,
            cells: &cells,
        };
        assert_eq!(row.field("user_id"), Some("u1"));
        assert_eq!(row.field("timestamp"), None);
        assert_eq!(
            Value::Object(row.properties().unwrap()),
            serde_json::json!({"price": 9.5})
        );
        assert_eq!(layout.column_of("user_id"), Some("member_no"));

        let missing = Layout::new(
            &header(&["id", "event_name"]),
            &Mapping::default(),
            &["user_id", "event_name"],
            &["user_id", "event_name"],
            &[],
            OtherColumns::Properties,
            "f.csv",
        )
        .unwrap_err()
        .to_string();
        assert!(missing.contains("no `user_id` column"), "{missing}");
        assert!(missing.contains("--column user_id=COLUMN"), "{missing}");

        for (columns, types) in [(&["user_id"][..], &[][..]), (&[][..], &["price=money"][..])] {
            let columns: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
            let types: Vec<String> = types.iter().map(|c| (*c).to_owned()).collect();
            assert!(Mapping::parse(&columns, &types).is_err());
        }
    }
}
