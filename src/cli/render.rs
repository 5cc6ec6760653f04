//! Statistics for people: the current revision of each report, the CSV export, the SVG chart,
//! and reports and reconciliations as text.

use std::fmt::Write as _;

use crate::domain::kinds::{direction_label, period_label};
use crate::exchange::audit::csv_field;
use crate::exchange::stats::period_key;
use crate::pb;

/// The current revision of each period, oldest period first.
pub fn current(records: &[pb::StatisticsRecord]) -> Vec<&pb::StatisticsRecord> {
    let mut out: Vec<&pb::StatisticsRecord> = records.iter().filter(|r| !r.superseded).collect();
    out.sort_by_key(|r| r.report.as_ref().map(period_key));
    out
}

/// Reports as CSV for spreadsheets: one row per counter and per location, totals with an
/// empty location.
pub fn csv(records: &[&pb::StatisticsRecord]) -> String {
    let mut out = String::from("country,period_start,period_end,revision,counter,location,value\n");
    for r in records {
        let Some(report) = &r.report else { continue };
        let p = report.period.clone().unwrap_or_default();
        let mut row = |counter: &str, location: &str, value: u64| {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{value}",
                r.country,
                p.start_date,
                p.end_date,
                report.revision,
                csv_field(counter),
                csv_field(location)
            );
        };
        for c in &report.counters {
            row(&c.name, "", c.value);
            for b in &c.breakdown {
                row(&c.name, &b.location, b.value);
            }
        }
    }
    out
}

/// One country's values of a counter over periods, for the chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub country: String,
    /// (period label, value), oldest first; a period without the counter is left out.
    pub points: Vec<(String, u64)>,
}

/// The values of `counter` in each country's current reports.
pub fn series(country: &str, records: &[pb::StatisticsRecord], counter: &str) -> Series {
    let points = current(records)
        .into_iter()
        .filter_map(|r| {
            let report = r.report.as_ref()?;
            let c = report.counters.iter().find(|c| c.name == counter)?;
            Some((period_label(report.period.as_ref()?), c.value))
        })
        .collect();
    Series {
        country: country.to_owned(),
        points,
    }
}

const COLOURS: [&str; 4] = ["#c0392b", "#1f5fa8", "#2e8b57", "#8e44ad"];

/// A line chart of one counter over periods, a line per country, as SVG.
pub fn chart_svg(counter: &str, series: &[Series]) -> String {
    let (w, h, left, right, top, bottom) = (760.0, 420.0, 70.0, 150.0, 50.0, 70.0);
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
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(svg, r##"<rect width="{w}" height="{h}" fill="#ffffff"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{left}" y="28" font-size="16" font-weight="bold">{}</text>"##,
        xml(counter)
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
    for p in &periods {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            x(p),
            top + plot_h + 20.0,
            xml(p)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(p, v)| format!("{:.1},{:.1}", x(p), y(*v)))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline data-country="{}" fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"##,
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
            r##"<rect x="{:.1}" y="{:.1}" width="14" height="4" fill="{colour}"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            left + plot_w + 20.0,
            ly - 4.0,
            left + plot_w + 40.0,
            ly + 2.0,
            xml(&s.country)
        );
    }
    svg.push_str("</svg>\n");
    svg
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
        "{} statistics {period}, revision {}{} ({}, log entry {})",
        r.country,
        report.revision,
        if r.superseded { " (superseded)" } else { "" },
        r.message_id,
        r.log_sequence
    );
    if !report.source.is_empty() {
        let _ = writeln!(out, "source: {}", report.source);
    }
    for c in &report.counters {
        let _ = writeln!(out, "  {:<40} {:>10}", c.name, c.value);
        for b in &c.breakdown {
            let _ = writeln!(out, "    {:<38} {:>10}", b.location, b.value);
        }
    }
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
    let _ = writeln!(
        out,
        "  {:<24} {:<10} {:>8} {:>8}",
        "kind", "here", "ours", "theirs"
    );
    for l in &r.lines {
        let _ = writeln!(
            out,
            "  {:<24} {:<10} {:>8} {:>8}{}",
            crate::domain::kinds::kind_label(l.kind),
            direction_label(l.direction),
            l.ours,
            l.theirs,
            if l.agrees {
                ""
            } else if l.ours == l.theirs {
                "  FINDING: same count, different messages"
            } else {
                "  FINDING"
            }
        );
    }
    out
}
