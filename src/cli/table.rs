//! Tables for the terminal, padded by display width (the `comfy-table` crate), so that names
//! with diacritics, in Khmer or in wide scripts line up with the rest.

use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement};

/// How a column's cells sit in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A borderless table, columns two spaces apart, as wide as their widest cell.
#[derive(Debug)]
pub struct Table {
    inner: comfy_table::Table,
    aligns: Vec<Align>,
    indent: usize,
}

impl Table {
    /// A table with these column headings; `indent` spaces before each line.
    pub fn new(columns: &[(&str, Align)], indent: usize) -> Self {
        let mut table = Self::bare(&columns.iter().map(|(_, a)| *a).collect::<Vec<_>>(), indent);
        table
            .inner
            .set_header(columns.iter().map(|(name, _)| *name));
        table
    }

    /// A table without a heading row, its columns aligned as `aligns` says.
    pub fn bare(aligns: &[Align], indent: usize) -> Self {
        let mut inner = comfy_table::Table::new();
        inner
            .load_style(comfy_table::presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled);
        Self {
            inner,
            aligns: aligns.to_vec(),
            indent,
        }
    }

    /// One more row: a cell per column.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner
            .add_row(cells.into_iter().map(Into::into).collect::<Vec<String>>());
        self
    }

    /// The table as lines, each ending in a newline, without trailing spaces; nothing when it
    /// has neither heading nor rows.
    pub fn render(mut self) -> String {
        let last = self.aligns.len().saturating_sub(1);
        for (i, align) in self.aligns.iter().enumerate() {
            if let Some(column) = self.inner.column_mut(i) {
                column.set_padding((0, if i == last { 0 } else { 2 }));
                column.set_cell_alignment(match align {
                    Align::Left => CellAlignment::Left,
                    Align::Right => CellAlignment::Right,
                });
                // Never wrapped: a terminal narrower than the table scrolls, it does not fold.
                column.set_constraint(ColumnConstraint::ContentWidth);
            }
        }
        let pad = " ".repeat(self.indent);
        self.inner
            .lines()
            .map(|line| format!("{pad}{}\n", line.trim_end()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The display column at which `needle` starts in `line`.
    fn column_of(line: &str, needle: &str) -> usize {
        let at = line.find(needle).unwrap();
        unicode_width::UnicodeWidthStr::width(&line[..at])
    }

    #[test]
    fn columns_line_up_by_display_width_with_diacritics_khmer_and_wide_script() {
        let mut t = Table::new(
            &[
                ("LOCATION", Align::Left),
                ("VALUE", Align::Right),
                ("NOTE", Align::Left),
            ],
            2,
        );
        t.row(["Soekarno-Hatta (CGK)", "12", "a"])
            .row(["NGUYỄN", "3", "b"])
            .row(["ភ្នំពេញ", "4410", "c"])
            .row(["東京", "7", "d"]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        let notes: Vec<usize> = lines[1..]
            .iter()
            .zip(["a", "b", "c", "d"])
            .map(|(l, n)| column_of(l, &format!(" {n}")))
            .collect();
        assert!(notes.windows(2).all(|w| w[0] == w[1]), "{notes:?}\n{text}");
        // Right-aligned numbers end in the same column.
        let ends: Vec<usize> = lines[1..]
            .iter()
            .zip(["12", "3", "4410", "7"])
            .map(|(l, v)| column_of(l, v) + v.len())
            .collect();
        assert!(ends.windows(2).all(|w| w[0] == w[1]), "{ends:?}\n{text}");
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("  ") && !l.ends_with(' '))
        );
        assert!(lines[0].contains("LOCATION"));
    }
}
