//! Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get`, with upstream's
//! columns per type and upstream's NAME/CREATED AT default for types without a printer;
//! and [`respond`], which writes one object in the representation the request
//! negotiated (`crate::negotiation`): as it is, as a Table or as `PartialObjectMetadata`.
//!
//! Upstream keeps its printers in `pkg/printers/internalversion/printers.go` (plus the
//! aggregator's for APIServices); each resource's strategy names its [`Printer`]
//! (`registry::strategy`), and each submodule here holds the printers of one API area. A printer's cells
//! are computed from the stored JSON object, defensively: a missing field prints as
//! upstream prints the zero value of its internal type (`<none>`, `<unset>`, `<unknown>`,
//! `0`), never as an error. The server always renders the wide columns (priority 1) as
//! upstream does; kubectl hides them unless asked for `-o wide`.
//!
//! This module must never fail a request: every object yields a row with exactly one cell
//! per column.

pub(crate) mod auth;
pub(crate) mod autoscaling;
pub(crate) mod batch;
pub(crate) mod cells;
pub(crate) mod cluster;
pub(crate) mod core;
mod custom;
pub(crate) mod events;
pub(crate) mod extensions;
pub(crate) mod flowcontrol;
pub(crate) mod networking;
pub(crate) mod pods;
pub(crate) mod resource;
pub(crate) mod storage;
pub(crate) mod workloads;

use serde_json::{Value, json};

use cells::Now;

use crate::meta::metadata;
use crate::negotiation::MetaVersion;
use crate::request::Request;
use crate::status::{ApiError, ApiResult};

/// A column definition: what `kubectl get` prints as the header, and when.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Column {
    name: &'static str,
    /// `string`, `integer`, `boolean` or `date`, as upstream declares it (the cells may
    /// still be strings: upstream prints `<unset>` in a boolean column).
    kind: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    priority: u8,
    /// `name` for the column that names the object, otherwise empty.
    format: &'static str,
}

impl Column {
    /// The object's name, with `format: name`.
    const NAME: Column = Column { name: "Name", kind: "string", priority: 0, format: "name" };
    /// The object's age.
    const AGE: Column = Column::string("Age");

    const fn string(name: &'static str) -> Column {
        Column { name, kind: "string", priority: 0, format: "" }
    }

    const fn integer(name: &'static str) -> Column {
        Column { name, kind: "integer", priority: 0, format: "" }
    }

    const fn boolean(name: &'static str) -> Column {
        Column { name, kind: "boolean", priority: 0, format: "" }
    }

    /// A string column shown only with `-o wide`.
    const fn wide(name: &'static str) -> Column {
        Column { name, kind: "string", priority: 1, format: "" }
    }
}

/// Fills one row's cells of an object, one per column, at a time.
pub(crate) type Cells = fn(&Value, Now) -> Vec<Value>;

/// How a resource's objects print.
#[derive(Clone, Copy)]
pub(crate) enum Printer {
    /// A built-in type's columns and the function that fills one row's cells, one per
    /// column.
    Columns { columns: &'static [Column], cells: Cells },
    /// A custom resource: its version's `additionalPrinterColumns`.
    Custom(&'static Value),
}

impl Printer {
    /// Upstream's default (`rest.NewDefaultTableConvertor`): the name and the creation time.
    pub(crate) const DEFAULT: Printer = Printer::Columns {
        columns: &[
            Column::NAME,
            Column { name: "Created At", kind: "date", priority: 0, format: "" },
        ],
        cells: |o, _| vec![cells::name(o), json!(cells::created_at(o))],
    };

    fn definitions(&self) -> Vec<Value> {
        match self {
            Printer::Columns { columns, .. } => columns
                .iter()
                .map(|c| json!({ "name": c.name, "type": c.kind, "format": c.format, "description": "", "priority": c.priority }))
                .collect(),
            Printer::Custom(version) => custom::columns(version),
        }
    }

    fn cells(&self, object: &Value, now: Now) -> Vec<Value> {
        match self {
            Printer::Columns { cells, .. } => cells(object, now),
            Printer::Custom(version) => custom::cells(version, object, now),
        }
    }
}

/// Renders `objects` as a Table of `meta.k8s.io` `version`; `list_meta` for lists, `None`
/// for one object. Without `headers` (a watch's events after the first) the column
/// definitions are left out, as upstream's `NoHeaders`.
pub fn render(
    printer: Printer,
    objects: &[Value],
    list_meta: Option<Value>,
    req: &Request,
    version: MetaVersion,
    headers: bool,
) -> ApiResult<Value> {
    let include = include_object(req)?;
    let now = Now::current();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let object = match include {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => partial_object_metadata(o, version),
            };
            json!({ "cells": printer.cells(o, now), "object": object })
        })
        .collect();
    let definitions = if headers { json!(printer.definitions()) } else { Value::Null };
    let meta = list_meta.unwrap_or_else(|| {
        json!({ "resourceVersion": objects.first().and_then(|o| metadata(o).get("resourceVersion")).cloned().unwrap_or(json!("")) })
    });
    Ok(
        json!({ "kind": "Table", "apiVersion": version.api_version(), "metadata": meta, "columnDefinitions": definitions, "rows": rows }),
    )
}

/// The Table's `includeObject` (upstream's `ValidateTableOptions`): 400 for another.
pub(crate) fn include_object(req: &Request) -> ApiResult<&str> {
    match req.param("includeObject").unwrap_or("") {
        include @ ("" | "Metadata" | "None" | "Object") => Ok(include),
        other => Err(ApiError::bad_request(format!(
            "Unable to convert to Table as requested: includeObject: Unsupported value: {other:?}: supported values: \"\", \"Metadata\", \"None\", \"Object\""
        ))),
    }
}

/// An object's `PartialObjectMetadata` (upstream's `meta.AsPartialObjectMetadata`).
pub fn partial_object_metadata(object: &Value, version: MetaVersion) -> Value {
    json!({ "kind": "PartialObjectMetadata", "apiVersion": version.api_version(), "metadata": metadata(object) })
}

/// Upstream's `duration.HumanDuration` of a number of seconds: precise when recent, coarse
/// when old (`45s`, `2m30s`, `3h5m`, `20h`, `3d4h`, `40d`, `3y10d`).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    let y = d / 365;
    match () {
        () if s < 120 => format!("{s}s"),
        () if m < 10 && s % 60 != 0 => format!("{m}m{}s", s % 60),
        () if m < 180 => format!("{m}m"),
        () if h < 8 && m % 60 != 0 => format!("{h}h{}m", m % 60),
        () if h < 48 => format!("{h}h"),
        () if h < 192 && h % 24 != 0 => format!("{d}d{}h", h % 24),
        () if h < 24 * 365 * 2 => format!("{d}d"),
        () if y < 8 && d % 365 != 0 => format!("{y}y{}d", d % 365),
        () => format!("{y}y"),
    }
}

#[cfg(test)]
mod tests {
    use keelson_api::Registry;
    use serde_json::{Value, json};

    use super::{Cells, Column, Now, Printer, human_duration};
    use crate::registry::strategy::for_resource;

    /// The columns of a built-in resource's printer and the function filling its cells.
    fn columns(info: &keelson_api::ResourceInfo) -> (&'static [Column], Cells) {
        match for_resource(info).printer() {
            Printer::Columns { columns, cells } => (columns, cells),
            Printer::Custom(_) => panic!("{} is built in", info.plural),
        }
    }

    /// The column names and cells a resource's printer gives `object` at `now`.
    pub(super) fn print(
        group: &str,
        plural: &str,
        object: &Value,
        now: &str,
    ) -> (Vec<&'static str>, Vec<Value>) {
        let info = Registry::builtin()
            .resources()
            .find(|r| r.group == group && r.plural == plural)
            .unwrap_or_else(|| panic!("no resource {plural}.{group}"));
        let (columns, cells) = columns(info);
        let names = columns.iter().map(|c| c.name).collect();
        (names, cells(object, Now::at(now)))
    }

    #[test]
    fn every_resource_prints_one_cell_per_column() {
        let empty = json!({ "metadata": { "name": "x" } });
        for info in Registry::builtin().resources() {
            let (columns, cells) = columns(info);
            let what = format!("{}/{} {}", info.group, info.version, info.plural);
            let first = columns[0].name;
            let expected_first = if info.plural == "events" { "Last Seen" } else { "Name" };
            assert_eq!(first, expected_first, "{what}");
            let cells = cells(&empty, Now::at("2025-01-01T00:00:00Z"));
            assert_eq!(cells.len(), columns.len(), "{what}: {cells:?}");
            let name = columns.iter().position(|c| c.format == "name");
            assert_eq!(name.map(|i| &cells[i]), Some(&json!("x")), "{what}");
            assert!(columns.iter().all(|c| c.priority <= 1), "{what}");
        }
    }

    #[test]
    fn resources_without_an_upstream_printer_show_name_and_creation_time() {
        let role = json!({ "metadata": { "name": "reader", "creationTimestamp": "2025-01-01T10:00:00Z" } });
        let (columns, cells) =
            print("rbac.authorization.k8s.io", "roles", &role, "2025-01-02T00:00:00Z");
        assert_eq!(columns, ["Name", "Created At"]);
        assert_eq!(cells, [json!("reader"), json!("2025-01-01T10:00:00Z")]);
        let (_, cells) = print(
            "",
            "limitranges",
            &json!({ "metadata": { "name": "l" } }),
            "2025-01-02T00:00:00Z",
        );
        assert_eq!(cells, [json!("l"), json!("0001-01-01T00:00:00Z")]);
    }

    #[test]
    fn durations_read_like_kubectl() {
        for (seconds, shown) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (5, "5s"),
            (119, "119s"),
            (150, "2m30s"),
            (300, "5m"),
            (600, "10m"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (4 * 3600, "4h"),
            (20 * 3600, "20h"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (3 * 86400, "3d"),
            (40 * 86400, "40d"),
            (3 * 365 * 86400 + 10 * 86400, "3y10d"),
            (9 * 365 * 86400 + 10 * 86400, "9y"),
        ] {
            assert_eq!(human_duration(seconds), shown, "{seconds}s");
        }
    }
}
