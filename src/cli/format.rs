//! How the client subcommands print: the server's JSON pretty-printed under `--json`, or text
//! for a person (summary lines and aligned tables).

use std::io::{self, Write};

use serde_json::Value;

use crate::cli::Failure;

/// Where a command writes, and in which form.
pub(crate) struct Output<'a> {
    out: &'a mut dyn Write,
    /// `--json`: print the server's JSON instead of text.
    pub(crate) json: bool,
}

impl<'a> Output<'a> {
    pub(crate) fn new(out: &'a mut dyn Write, json: bool) -> Output<'a> {
        Output { out, json }
    }

    /// The server's answer: pretty JSON under `--json`, else what `human` writes.
    pub(crate) fn show(
        &mut self,
        body: &Value,
        human: impl FnOnce(&mut dyn Write, &Value) -> io::Result<()>,
    ) -> Result<(), Failure> {
        if self.json {
            return self.pretty(body);
        }
        human(self.out, body).map_err(write_failed)
    }

    /// `body` as pretty JSON, whatever the form.
    pub(crate) fn pretty(&mut self, body: &Value) -> Result<(), Failure> {
        self.line(&pretty(body))
    }

    /// One line of text.
    pub(crate) fn line(&mut self, text: &str) -> Result<(), Failure> {
        writeln!(self.out, "{text}").map_err(write_failed)
    }
}

fn write_failed(error: io::Error) -> Failure {
    Failure::new(1, error.to_string())
}

/// A JSON value as a table cell or in a sentence: strings bare, `null` as `-`.
pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The strings of a JSON list, joined by `separator` (anything else is empty).
pub(crate) fn joined(list: &Value, separator: &str) -> String {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(separator)
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).expect("a JSON value serializes")
}

/// One column of a table of JSON objects: its header, and the member it shows.
pub(crate) enum Column {
    /// A scalar member, shown as [`text`] shows it.
    Text(&'static str, &'static str),
    /// A list of strings, comma-separated (empty when absent).
    List(&'static str, &'static str),
}

impl Column {
    fn header(&self) -> &'static str {
        match self {
            Column::Text(header, _) | Column::List(header, _) => header,
        }
    }

    fn cell(&self, item: &Value) -> String {
        match self {
            Column::Text(_, key) => text(&item[key]),
            Column::List(_, key) => joined(&item[key], ","),
        }
    }
}

/// A table of `items`, a JSON list of objects: one row per object.
pub(crate) fn write_json_table<const N: usize>(
    out: &mut dyn Write,
    items: &Value,
    columns: [Column; N],
) -> io::Result<()> {
    let rows: Vec<[String; N]> = items
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| std::array::from_fn(|i| columns[i].cell(item)))
        .collect();
    write_table(out, columns.each_ref().map(Column::header), &rows)
}

/// Columns padded to their widest cell, two spaces apart, no trailing spaces.
fn write_table<const N: usize>(
    out: &mut dyn Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}
