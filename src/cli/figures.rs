//! Figures files: a period's statistics as the national system exports them, in CSV
//! (`counter,location,value`) or JSON, checked before anything is sent.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::pb;

/// The figures of one period, as read from a file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Figures {
    pub counters: Vec<pb::Counter>,
    pub source: String,
}

/// Why a figures file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FiguresError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}, column {column} ({name}): {reason}")]
    Cell {
        path: String,
        line: usize,
        column: usize,
        name: &'static str,
        reason: String,
    },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
}

/// Reads figures from a `.csv` or `.json` file.
///
/// CSV has the header `counter,location,value`; a row with an empty location is the counter's
/// total, a row with a location one entry of its breakdown. A counter given only by its
/// breakdown totals the breakdown. JSON is `{"source": ..., "counters": [{"name", "value",
/// "breakdown": [{"location", "value"}]}]}`.
pub fn read_figures(path: &Path) -> Result<Figures, FiguresError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FiguresError::Io {
        path: name.clone(),
        source,
    })?;
    parse_figures(&name, &text)
}

/// Parses figures; `name` ends in `.csv` or `.json` and names them in errors.
pub fn parse_figures(name: &str, text: &str) -> Result<Figures, FiguresError> {
    if name.ends_with(".csv") {
        parse_csv(name, text)
    } else if name.ends_with(".json") {
        parse_json(name, text)
    } else {
        Err(FiguresError::File {
            path: name.to_owned(),
            reason: "give a .csv or .json file".into(),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonFigures {
    #[serde(default)]
    source: String,
    counters: Vec<JsonCounter>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonCounter {
    name: String,
    value: Option<u64>,
    #[serde(default)]
    breakdown: Vec<JsonBreakdown>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBreakdown {
    location: String,
    value: u64,
}

fn parse_json(path: &str, text: &str) -> Result<Figures, FiguresError> {
    let f: JsonFigures = serde_json::from_str(text).map_err(|e| FiguresError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let bad = |reason: String| FiguresError::File {
        path: path.to_owned(),
        reason,
    };
    let mut counters = Vec::with_capacity(f.counters.len());
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in f.counters.into_iter().enumerate() {
        if !crate::domain::validate::is_counter_name(&c.name) {
            return Err(bad(format!(
                "counters[{i}].name: {:?} is not a snake_case counter name",
                c.name
            )));
        }
        if !seen.insert(c.name.clone()) {
            return Err(bad(format!(
                "counters[{i}].name: {:?} appears twice",
                c.name
            )));
        }
        let mut locations = std::collections::BTreeSet::new();
        let mut sum: u64 = 0;
        for (j, b) in c.breakdown.iter().enumerate() {
            if b.location.trim().is_empty() || !locations.insert(b.location.trim()) {
                return Err(bad(format!(
                    "counters[{i}].breakdown[{j}].location: empty, or named twice for {:?}",
                    c.name
                )));
            }
            sum = sum.checked_add(b.value).ok_or_else(|| {
                bad(format!(
                    "counters[{i}].breakdown: the locations of {:?} add up to more than a counter holds",
                    c.name
                ))
            })?;
        }
        let value = match c.value {
            Some(v) if !c.breakdown.is_empty() && v != sum => {
                return Err(bad(format!(
                    "counters[{i}].value: {v} for {:?}, but its locations add up to {sum}",
                    c.name
                )));
            }
            Some(v) => v,
            None if c.breakdown.is_empty() => {
                return Err(bad(format!(
                    "counters[{i}]: {:?} has neither a value nor locations",
                    c.name
                )));
            }
            None => sum,
        };
        counters.push(pb::Counter {
            name: c.name,
            value,
            breakdown: c
                .breakdown
                .into_iter()
                .map(|b| pb::Breakdown {
                    location: b.location,
                    value: b.value,
                })
                .collect(),
        });
    }
    Ok(Figures {
        counters,
        source: f.source,
    })
}

const CSV_COLUMNS: [&str; 3] = ["counter", "location", "value"];

fn parse_csv(path: &str, text: &str) -> Result<Figures, FiguresError> {
    let cell = |line: usize, column: usize, reason: String| FiguresError::Cell {
        path: path.to_owned(),
        line,
        column,
        name: CSV_COLUMNS.get(column - 1).copied().unwrap_or("extra"),
        reason,
    };
    if let Some((line, column)) = unclosed_quote(text) {
        return Err(cell(line, column, "a quote is not closed".into()));
    }
    // RFC 4180, read by the csv crate: a quoted value may hold commas, quotes (doubled) and
    // line breaks. Lines starting with `#` are comments; blank lines are skipped.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            cell(line, 1, format!("not CSV: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let fields: Vec<String> = record.iter().map(str::to_owned).collect();
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        rows.push((line, fields));
    }
    let mut rows = rows.into_iter();
    let (line, header) = rows.next().ok_or_else(|| FiguresError::File {
        path: path.to_owned(),
        reason: "is empty: the first line must be the header counter,location,value".into(),
    })?;
    for (i, want) in CSV_COLUMNS.iter().enumerate() {
        match header.get(i) {
            Some(h) if h.trim().eq_ignore_ascii_case(want) => {}
            found => {
                return Err(FiguresError::Cell {
                    path: path.to_owned(),
                    line,
                    column: i + 1,
                    name: want,
                    reason: format!(
                        "the header must be counter,location,value; found {:?}",
                        found.map(String::as_str).unwrap_or("nothing")
                    ),
                });
            }
        }
    }
    if header.len() > CSV_COLUMNS.len() {
        return Err(cell(
            line,
            4,
            "the header has more than three columns".into(),
        ));
    }
    // name -> (total and its line, breakdown with lines), in file order.
    let mut order: Vec<String> = Vec::new();
    let mut totals: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    let mut parts: BTreeMap<String, Vec<(String, u64, usize)>> = BTreeMap::new();
    for (line, fields) in rows {
        if fields.len() != 3 {
            return Err(cell(
                line,
                fields.len().min(3) + 1,
                format!("expected 3 columns, found {}", fields.len()),
            ));
        }
        let name = fields[0].trim();
        if !crate::domain::validate::is_counter_name(name) {
            return Err(cell(
                line,
                1,
                format!("{name:?} is not a snake_case counter name"),
            ));
        }
        let location = fields[1].trim();
        let raw = fields[2].trim();
        let value: u64 = raw.parse().map_err(|_| {
            cell(
                line,
                3,
                format!("{raw:?} is not a whole number of zero or more"),
            )
        })?;
        if !order.iter().any(|n| n == name) {
            order.push(name.to_owned());
        }
        if location.is_empty() {
            if let Some((_, first)) = totals.insert(name.to_owned(), (value, line)) {
                return Err(cell(
                    line,
                    1,
                    format!("{name:?} already has a total on line {first}"),
                ));
            }
        } else {
            let list = parts.entry(name.to_owned()).or_default();
            if let Some((_, _, first)) = list.iter().find(|(l, _, _)| l == location) {
                return Err(cell(
                    line,
                    2,
                    format!("{location:?} already appears for {name:?} on line {first}"),
                ));
            }
            list.push((location.to_owned(), value, line));
        }
    }
    if order.is_empty() {
        return Err(FiguresError::File {
            path: path.to_owned(),
            reason: "holds no figures below its header".into(),
        });
    }
    let mut counters = Vec::with_capacity(order.len());
    for name in order {
        let breakdown = parts.remove(&name).unwrap_or_default();
        let sum = breakdown
            .iter()
            .try_fold(0u64, |acc, (_, v, _)| acc.checked_add(*v));
        let value = match (totals.get(&name), sum) {
            (Some(&(total, line)), Some(sum)) if !breakdown.is_empty() && total != sum => {
                return Err(cell(
                    line,
                    3,
                    format!("the total {total} differs from the sum of its locations, {sum}"),
                ));
            }
            (Some(&(total, _)), Some(_)) => total,
            (None, Some(sum)) => sum,
            (_, None) => {
                let line = breakdown.last().map_or(0, |(_, _, l)| *l);
                return Err(cell(line, 3, format!("the values of {name:?} overflow")));
            }
        };
        counters.push(pb::Counter {
            name,
            value,
            breakdown: breakdown
                .into_iter()
                .map(|(location, value, _)| pb::Breakdown { location, value })
                .collect(),
        });
    }
    Ok(Figures {
        counters,
        source: String::new(),
    })
}

/// Splits one CSV row (RFC 4180 quoting); the error carries the 1-based column.
/// Where a quote opens that nothing closes (its line and column), which RFC 4180 would read
/// to the end of the file: named instead, as an operator would want to hear it.
fn unclosed_quote(text: &str) -> Option<(usize, usize)> {
    let mut open: Option<(usize, usize)> = None;
    let mut previous_was_quote_in_field = false;
    for (i, line) in text.lines().enumerate() {
        if open.is_none() && line.starts_with('#') {
            continue;
        }
        let mut column = 1;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (open.is_some(), c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                }
                (true, '"') => {
                    open = None;
                    previous_was_quote_in_field = true;
                }
                (false, '"') if !previous_was_quote_in_field => open = Some((i + 1, column)),
                (false, ',') => {
                    column += 1;
                    previous_was_quote_in_field = false;
                }
                _ => {}
            }
        }
        if open.is_none() {
            previous_was_quote_in_field = false;
        }
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_error(text: &str) -> (usize, usize, String) {
        match parse_csv("f.csv", text).unwrap_err() {
            FiguresError::Cell {
                line,
                column,
                reason,
                ..
            } => (line, column, reason),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn csv_rows_become_counters_with_breakdowns() {
        let f = parse_csv(
            "f.csv",
            "# comment\ncounter,location,value\nresidents,,7\nwork_permits,\"Phnom Penh, office 2\",3\nwork_permits,Poipet,2\n",
        )
        .unwrap();
        assert_eq!(f.counters.len(), 2);
        assert_eq!(f.counters[0].value, 7);
        assert_eq!(
            f.counters[1].value, 5,
            "a counter without a total sums its locations"
        );
        assert_eq!(f.counters[1].breakdown[0].location, "Phnom Penh, office 2");
    }

    #[test]
    fn a_quoted_value_may_hold_commas_quotes_and_line_breaks() {
        let text = "counter,location,value\n\
                    # a comment\n\
                    residents,\"Soekarno-Hatta, Terminal 3\n(departures)\",4\n\
                    residents,\"the \"\"new\"\" port\",5\n\
                    \n\
                    residents,,9\n";
        let figures = parse_csv("f.csv", text).unwrap();
        let counter = &figures.counters[0];
        assert_eq!(counter.value, 9);
        let locations: Vec<&str> = counter
            .breakdown
            .iter()
            .map(|b| b.location.as_str())
            .collect();
        assert_eq!(
            locations,
            [
                "Soekarno-Hatta, Terminal 3\n(departures)",
                "the \"new\" port"
            ]
        );
        // A line after a multi-line value is still named by its own number.
        let (line, _, _) = csv_error(&format!("{text}repatriations,,x\n"));
        assert_eq!(line, 8);
    }

    #[test]
    fn csv_errors_name_the_line_and_column() {
        let head = "counter,location,value\n";
        assert_eq!(csv_error(&format!("{head}Residents,,1\n")).0, 2);
        assert_eq!(csv_error(&format!("{head}Residents,,1\n")).1, 1);
        let (line, column, reason) = csv_error(&format!("{head}residents,,1\nrepatriations,,-3\n"));
        assert_eq!((line, column), (3, 3));
        assert!(reason.contains("\"-3\""), "{reason}");
        let (line, column, reason) = csv_error(&format!(
            "{head}residents,,10\nresidents,CGK,4\nresidents,KNO,5\n"
        ));
        assert_eq!((line, column), (2, 3));
        assert!(reason.contains("differs from the sum"), "{reason}");
        assert_eq!(
            csv_error(&format!("{head}residents,CGK,4\nresidents,CGK,5\n")).0,
            3
        );
        assert_eq!(csv_error(&format!("{head}residents,,1,9\n")).1, 4);
        assert_eq!(csv_error("counter,place,value\n").1, 2);
        assert_eq!(csv_error(&format!("{head}residents,\"CGK,1\n")).1, 2);
        let max = u64::MAX;
        let (_, column, reason) = csv_error(&format!(
            "{head}residents,,{max}\nresidents,CGK,{max}\nresidents,KNO,1\n"
        ));
        assert_eq!(column, 3);
        assert!(reason.contains("overflow"), "{reason}");
    }

    #[test]
    fn json_figures_are_held_to_the_same_rules_as_csv() {
        let refused = |json: &str| match parse_figures("f.json", json) {
            Err(FiguresError::File { reason, .. }) => reason,
            other => panic!("{json} was not refused: {other:?}"),
        };
        let reason = refused(r#"{"counters":[{"name":"Residents","value":1}]}"#);
        assert!(reason.starts_with("counters[0].name"), "{reason}");
        let reason = refused(
            r#"{"counters":[{"name":"residents","value":1},{"name":"residents","value":2}]}"#,
        );
        assert!(reason.contains("appears twice"), "{reason}");
        let reason = refused(
            r#"{"counters":[{"name":"residents","value":10,"breakdown":[{"location":"CGK","value":4}]}]}"#,
        );
        assert!(reason.contains("add up to 4"), "{reason}");
        let reason = refused(&format!(
            r#"{{"counters":[{{"name":"residents","breakdown":[{{"location":"CGK","value":{}}},{{"location":"KNO","value":1}}]}}]}}"#,
            u64::MAX
        ));
        assert!(reason.contains("more than a counter holds"), "{reason}");
        let reason = refused(r#"{"counters":[{"name":"residents"}]}"#);
        assert!(reason.contains("neither a value nor locations"), "{reason}");
        let ok = parse_figures(
            "f.json",
            r#"{"counters":[{"name":"residents","breakdown":[{"location":"CGK","value":4},{"location":"KNO","value":5}]}]}"#,
        )
        .unwrap();
        assert_eq!(ok.counters[0].value, 9);
    }
}
