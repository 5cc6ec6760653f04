//! Statistics and audit exports for people: the current revision of each report, the CSV
//! exports, the SVG chart, and reports and reconciliations as text.

use std::fmt::Write as _;

use crate::cli::table::{Align, Table};
use crate::domain::kinds::{direction_label, period_label};
use crate::exchange::audit::ExportRecord;
use crate::exchange::stats::period_key;
use crate::pb;

/// The current revision of each period, oldest period first.
pub fn current(records: &[pb::StatisticsRecord]) -> Vec<&pb::StatisticsRecord> {
    let mut out: Vec<&pb::StatisticsRecord> = records.iter().filter(|r| !r.superseded).collect();
    out.sort_by_key(|r| r.report.as_ref().map(period_key));
    out
}

/// Reports as CSV for spreadsheets: one row per counter and per location, totals with an
/// empty location. Written by the `csv` crate, quoted as RFC 4180 asks.
pub fn csv(records: &[&pb::StatisticsRecord]) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut write = || -> csv::Result<()> {
        out.write_record([
            "country",
            "peer",
            "period_start",
            "period_end",
            "revision",
            "counter",
            "location",
            "value",
        ])?;
        for r in records {
            let Some(report) = &r.report else { continue };
            let p = report.period.clone().unwrap_or_default();
            let revision = report.revision.to_string();
            for c in &report.counters {
                let rows = std::iter::once(("", c.value))
                    .chain(c.breakdown.iter().map(|b| (b.location.as_str(), b.value)));
                for (location, value) in rows {
                    out.write_record([
                        r.country.as_str(),
                        r.peer.as_str(),
                        &p.start_date,
                        &p.end_date,
                        &revision,
                        &c.name,
                        location,
                        &value.to_string(),
                    ])?;
                }
            }
        }
        Ok(())
    };
    // Writing to memory fails only if the writer's own invariants break; what was written stands.
    let _ = write();
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// The columns of [`audit_csv`].
pub const AUDIT_CSV_COLUMNS: [&str; 18] = [
    "node",
    "sequence",
    "recorded_at",
    "kind",
    "peer",
    "message_id",
    "message_kind",
    "content_sha256",
    "entry_hash",
    "previous_hash",
    "refers_to",
    "reference",
    "receipt_receiver",
    "receipt_log_sequence",
    "receipt_entry_hash",
    "reason",
    "actor",
    "copy_of",
];

/// An audit export as CSV for spreadsheets, written to `out`: the metadata of each entry, no
/// envelope.
pub fn audit_csv<W: std::io::Write>(out: W, records: &[ExportRecord]) -> std::io::Result<()> {
    let mut out = csv::Writer::from_writer(out);
    out.write_record(AUDIT_CSV_COLUMNS)?;
    for r in records {
        let (receiver, seq, hash) = r.receipt.as_ref().map_or_else(Default::default, |x| {
            (
                x.receiver.clone(),
                x.log_sequence.to_string(),
                x.entry_hash.clone(),
            )
        });
        out.write_record([
            r.node.as_str(),
            &r.sequence.to_string(),
            &r.recorded_at,
            r.kind.as_str(),
            &r.peer,
            &r.message_id,
            r.message_kind.as_str(),
            &r.content_sha256,
            &r.entry_hash,
            &r.previous_hash,
            &r.refers_to.to_string(),
            &r.reference,
            &receiver,
            &seq,
            &hash,
            &r.reason,
            &r.actor,
            &r.copy_of,
        ])?;
    }
    out.flush()
}

/// Which periods a chart draws: months or days. Reports for other ranges of days are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Granularity {
    /// Calendar months (`2025-04`).
    #[default]
    Month,
    /// Single days (`2025-04-17`).
    Day,
}

impl Granularity {
    /// The granularity of `period`, if it is a whole month or a single day.
    pub fn of(period: &pb::Period) -> Option<Self> {
        let label = period_label(period);
        match label.len() {
            7 => Some(Self::Month),
            10 => Some(Self::Day),
            _ => None,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::Month => "month",
            Self::Day => "day",
        }
    }
}

/// One country's values of a counter over periods, for the chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub country: String,
    /// (period label, value), in time order; a period without the counter is left out.
    pub points: Vec<(String, u64)>,
}

/// The values of `counter` in a country's current reports for periods of `granularity`, in
/// time order. Where the country's own figures for a period went to several peers, the latest
/// report counts.
pub fn series(
    country: &str,
    records: &[pb::StatisticsRecord],
    counter: &str,
    granularity: Granularity,
) -> Series {
    let mut by_period: std::collections::BTreeMap<String, (i64, u64)> =
        std::collections::BTreeMap::new();
    for r in current(records) {
        let Some(report) = r.report.as_ref() else {
            continue;
        };
        let Some(period) = report.period.as_ref() else {
            continue;
        };
        if Granularity::of(period) != Some(granularity) {
            continue;
        }
        let Some(c) = report.counters.iter().find(|c| c.name == counter) else {
            continue;
        };
        // Labels of one granularity sort in time order.
        let point = by_period
            .entry(period_label(period))
            .or_insert((r.recorded_at_micros, c.value));
        if r.recorded_at_micros >= point.0 {
            *point = (r.recorded_at_micros, c.value);
        }
    }
    Series {
        country: country.to_owned(),
        points: by_period.into_iter().map(|(p, (_, v))| (p, v)).collect(),
    }
}

const COLOURS: [&str; 8] = [
    "#c0392b", "#1f5fa8", "#2e8b57", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#b7950b",
];

/// The most period labels written under the axis; the others are left out, evenly.
const MAX_LABELS: usize = 12;

/// A line chart of one counter over periods of one granularity, a line per country that has
/// values, as SVG; `None` when no country has any.
pub fn chart_svg(counter: &str, granularity: Granularity, series: &[Series]) -> Option<String> {
    let series: Vec<&Series> = series.iter().filter(|s| !s.points.is_empty()).collect();
    if series.is_empty() {
        return None;
    }
    let (w, h, left, right, top, bottom) = (800.0, 440.0, 80.0, 150.0, 50.0, 80.0);
    let mut periods: Vec<&str> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(p, _)| p.as_str()))
        .collect();
    periods.sort_unstable();
    periods.dedup();
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, v)| *v))
        .max()
        .unwrap_or(0)
        .max(1);
    // Round the axis up to 1, 2 or 5 times a power of ten, so its quarters read well.
    let max = {
        let mut step = 1u64;
        loop {
            if let Some(m) = [4, 8, 20].iter().map(|k| k * step).find(|m| *m >= max) {
                break m;
            }
            match step.checked_mul(10) {
                Some(s) => step = s,
                None => break max,
            }
        }
    };
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let x = |period: &str| {
        let i = periods.iter().position(|p| *p == period).unwrap_or(0);
        if periods.len() < 2 {
            left + plot_w / 2.0
        } else {
            left + plot_w * i as f64 / (periods.len() - 1) as f64
        }
    };
    let y = |v: u64| top + plot_h - plot_h * v as f64 / max as f64;
    let noun = granularity.noun();
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12" data-granularity="{noun}">"##
    );
    let _ = writeln!(svg, r##"<rect width="{w}" height="{h}" fill="#ffffff"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{left}" y="28" font-size="16" font-weight="bold">{} per {noun}</text>"##,
        xml(counter)
    );
    // Axis titles: the counter and its unit up the side, the periods along the bottom.
    let _ = writeln!(
        svg,
        r##"<text class="axis-title" x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{} (number per {noun})</text>"##,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        xml(counter)
    );
    let _ = writeln!(
        svg,
        r##"<text class="axis-title" x="{:.1}" y="{:.1}" text-anchor="middle">{noun} (UTC)</text>"##,
        left + plot_w / 2.0,
        h - 18.0
    );
    for i in 0..=4u64 {
        let v = max * i / 4;
        let yy = y(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v}</text>"##,
            left + plot_w,
            left - 8.0,
            yy + 4.0
        );
    }
    let every = periods.len().div_ceil(MAX_LABELS).max(1);
    for (i, p) in periods.iter().enumerate() {
        if i % every != 0 && i + 1 != periods.len() {
            continue;
        }
        let _ = writeln!(
            svg,
            r##"<text class="period" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            x(p),
            top + plot_h + 20.0,
            xml(p)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        // Beyond the colours, dashes tell the lines apart.
        let dash = if i >= COLOURS.len() {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(p, v)| format!("{:.1},{:.1}", x(p), y(*v)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline data-country="{}" fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"##,
            xml(&s.country),
            points.join(" ")
        );
        for (p, v) in &s.points {
            let _ = writeln!(
                svg,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"><title>{} {} {v}</title></circle>"##,
                x(p),
                y(*v),
                xml(&s.country),
                xml(p)
            );
        }
        let ly = top + 20.0 * i as f64;
        let _ = writeln!(
            svg,
            r##"<rect class="legend" x="{:.1}" y="{:.1}" width="14" height="4" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            left + plot_w + 20.0,
            ly - 4.0,
            left + plot_w + 40.0,
            ly + 2.0,
            xml(&s.country)
        );
    }
    svg.push_str("</svg>\n");
    Some(svg)
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A report as a table for people.
pub fn report_text(r: &pb::StatisticsRecord) -> String {
    let mut out = String::new();
    let Some(report) = &r.report else {
        return out;
    };
    let period = report.period.as_ref().map(period_label).unwrap_or_default();
    let _ = writeln!(
        out,
        "{} statistics {period}{}, revision {}{} ({}, log entry {})",
        r.country,
        match crate::cli::client::peer_label(r).as_str() {
            "" => String::new(),
            label => format!(" {label}"),
        },
        report.revision,
        if r.superseded { " (superseded)" } else { "" },
        r.message_id,
        r.log_sequence
    );
    if !report.source.is_empty() {
        let _ = writeln!(out, "source: {}", report.source);
    }
    let mut counters = Table::bare(&[Align::Left, Align::Right], 2);
    for c in &report.counters {
        counters.row([c.name.clone(), c.value.to_string()]);
        for b in &c.breakdown {
            counters.row([format!("  {}", b.location), b.value.to_string()]);
        }
    }
    out.push_str(&counters.render());
    if let Some(rec) = &r.reconciliation {
        out.push_str(&reconciliation_text(rec));
    }
    out
}

/// A reconciliation as a table, findings marked.
pub fn reconciliation_text(r: &pb::Reconciliation) -> String {
    let findings = r.lines.iter().filter(|l| !l.agrees).count();
    let period = r.period.as_ref().map(period_label).unwrap_or_default();
    let mut out = format!(
        "reconciliation of {} {} (revision {}, {period}) at {}: {}\n",
        r.peer,
        r.report_message_id,
        r.revision,
        r.compared_at,
        match findings {
            0 => "the logs agree".to_owned(),
            1 => "1 finding".to_owned(),
            n => format!("{n} findings"),
        }
    );
    let mut table = Table::new(
        &[
            ("kind", Align::Left),
            ("here", Align::Left),
            ("ours", Align::Right),
            ("theirs", Align::Right),
            ("", Align::Left),
        ],
        2,
    );
    for l in &r.lines {
        table.row([
            crate::domain::kinds::kind_label(l.kind).to_owned(),
            direction_label(l.direction).to_owned(),
            l.ours.to_string(),
            l.theirs.to_string(),
            if l.agrees {
                String::new()
            } else if l.ours == l.theirs {
                "FINDING: same count, different messages".to_owned()
            } else {
                "FINDING".to_owned()
            },
        ]);
    }
    out.push_str(&table.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A location with a comma, a doubled quote and a line break comes back whole from a CSV
    /// reader, and so does every other field.
    #[test]
    fn the_statistics_csv_quotes_what_rfc_4180_asks_and_reads_back_whole() {
        let location = "Poipet, \"International\"\nCheckpoint";
        let record = pb::StatisticsRecord {
            country: "KHM".into(),
            peer: "KHM".into(),
            report: Some(pb::StatisticsReport {
                period: Some(pb::Period {
                    start_date: "2025-04-01".into(),
                    end_date: "2025-04-30".into(),
                }),
                revision: 2,
                counters: vec![pb::Counter {
                    name: "repatriations".into(),
                    value: 7,
                    breakdown: vec![pb::Breakdown {
                        location: location.into(),
                        value: 7,
                    }],
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = csv(&[&record]);
        let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(text.as_bytes())
            .records()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 2, "{text}");
        assert_eq!(
            rows[1].iter().collect::<Vec<_>>(),
            [
                "KHM",
                "KHM",
                "2025-04-01",
                "2025-04-30",
                "2",
                "repatriations",
                location,
                "7"
            ]
        );
        assert_eq!(&rows[0][6], "");
    }

    #[test]
    fn the_audit_csv_has_a_column_per_heading_and_reads_back_whole() {
        let reason = "refused: \"kind\", then\nline two";
        let record = ExportRecord {
            node: "IDN".into(),
            sequence: 3,
            reason: reason.into(),
            ..serde_json::from_value(serde_json::json!({
                "node": "", "sequence": 0, "recorded_at": "", "kind": "refusal", "peer": "KHM",
                "message_id": "", "message_kind": "alert", "content_sha256": "",
                "entry_hash": "", "previous_hash": "", "refers_to": 0, "reference": "",
                "reason": ""
            }))
            .unwrap()
        };
        let mut out = Vec::new();
        audit_csv(&mut out, &[record]).unwrap();
        let mut reader = csv::Reader::from_reader(out.as_slice());
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            AUDIT_CSV_COLUMNS
        );
        let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][0], "IDN");
        assert_eq!(&rows[0][1], "3");
        assert_eq!(&rows[0][3], "refusal");
        assert_eq!(&rows[0][15], reason);
    }
}
