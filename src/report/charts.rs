//! Drawing report.html's charts with `plotters`' SVG backend: line charts,
//! bar charts with their counts written on the bars, and heatmaps with a
//! colour legend, each an inline `<svg id="...">` with axes and their values.
//! Text is emitted as SVG `<text>` (no font files are read); the browser
//! lays it out. The data arrive already computed (see `report::data`): these
//! functions only place them.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

/// Width of one chart, pixels (two fit side by side in a 1200-pixel window).
pub const WIDTH: u32 = 560;
/// Height of one chart, pixels.
pub const HEIGHT: u32 = 360;
/// Width of a heatmap's colour legend, pixels.
const LEGEND: u32 = 78;
const FONT: &str = "sans-serif";

/// One line of a line chart.
pub struct Series {
    /// Name in the chart's legend.
    pub label: String,
    /// (x, y) points in data units, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Line colour.
    pub color: RGBColor,
    /// A circle at each point (the calibration plot's frequencies).
    pub markers: bool,
}

/// Axis titles and ranges of a line chart (data units).
pub struct Frame {
    /// Title of the x axis, with its unit.
    pub x_title: String,
    /// Title of the y axis, with its unit.
    pub y_title: String,
    /// Range of the x axis.
    pub x: std::ops::Range<f64>,
    /// Range of the y axis.
    pub y: std::ops::Range<f64>,
    /// Tick labels as percentages (shares in 0..1).
    pub percent: bool,
    /// A dashed vertical line at this x with its label (the calibration end).
    pub marker: Option<(f64, String)>,
}

/// A heatmap: `rows` from top to bottom, `columns` from left to right, and
/// the cells that have a value.
pub struct Heatmap {
    /// Title of the x axis.
    pub x_title: String,
    /// Title of the y axis.
    pub y_title: String,
    /// Column labels, left to right.
    pub columns: Vec<String>,
    /// Row labels, top to bottom.
    pub rows: Vec<String>,
    /// (column, row, colour value in 0..1, text written in the cell).
    pub cells: Vec<(usize, usize, f64, String)>,
    /// Title of the colour legend (what 0..1 means), e.g. "share retained".
    pub legend: String,
}

/// The error of one chart, named by its id.
fn chart_error(id: &str) -> impl Fn(String) -> Error + '_ {
    move |message| Error::Chart {
        chart: id.to_string(),
        message,
    }
}

/// plotters' drawing result to ours.
fn drawn<T, E: std::fmt::Display>(id: &str, r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| chart_error(id)(e.to_string()))
}

/// The SVG with the chart's id and accessible name on its root element.
fn tagged(id: &str, title: &str, svg: String) -> String {
    let title = super::esc(title);
    svg.replacen(
        "<svg ",
        &format!("<svg id=\"{id}\" role=\"img\" aria-label=\"{title}\" "),
        1,
    )
}

/// Colour of a heatmap value in 0..1: white to dark blue (NaN: grey).
pub fn heat(v: f64) -> RGBColor {
    if v.is_nan() {
        return RGBColor(200, 200, 200);
    }
    let v = v.clamp(0.0, 1.0);
    let c = |lo: f64, hi: f64| (lo + (hi - lo) * v).round() as u8;
    RGBColor(c(247.0, 8.0), c(251.0, 48.0), c(255.0, 107.0))
}

/// A tick value: percent, or a short number (1.2k, 3.4M).
pub fn tick(v: f64, percent: bool) -> String {
    if percent {
        return format!("{:.0}%", v * 100.0);
    }
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 10.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A count with thousands separators: 12345 -> "12,345".
pub fn count(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

/// A line chart with axes, tick values, a legend and an optional marker line.
pub fn lines(id: &str, title: &str, frame: &Frame, series: &[Series]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        drawn(id, root.fill(&WHITE))?;
        let mut chart = drawn(
            id,
            ChartBuilder::on(&root)
                .margin(12)
                .x_label_area_size(42)
                .y_label_area_size(58)
                .build_cartesian_2d(frame.x.clone(), frame.y.clone()),
        )?;
        let fmt = |v: &f64| tick(*v, frame.percent);
        drawn(
            id,
            chart
                .configure_mesh()
                .x_desc(frame.x_title.as_str())
                .y_desc(frame.y_title.as_str())
                .x_label_formatter(&fmt)
                .y_label_formatter(&fmt)
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 16))
                .light_line_style(WHITE.mix(0.0))
                .draw(),
        )?;
        if let Some((x, label)) = &frame.marker {
            let style = ShapeStyle::from(&RGBColor(120, 120, 120)).stroke_width(1);
            let (y0, y1) = (frame.y.start, frame.y.end);
            drawn(
                id,
                chart.draw_series(DashedLineSeries::new(vec![(*x, y0), (*x, y1)], 5, 4, style)),
            )?;
            let text = (FONT, 13).into_font().color(&RGBColor(90, 90, 90));
            drawn(
                id,
                chart.draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (*x, y0 + 0.06 * (y1 - y0)),
                    text,
                ))),
            )?;
        }
        for s in series {
            let color = s.color;
            let style = ShapeStyle::from(&color).stroke_width(2);
            drawn(
                id,
                chart.draw_series(LineSeries::new(s.points.clone(), style)),
            )?
            .label(s.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
            if s.markers {
                let dots = s.points.iter().map(|p| Circle::new(*p, 3, color.filled()));
                drawn(id, chart.draw_series(dots))?;
            }
        }
        drawn(
            id,
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font((FONT, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                .draw(),
        )?;
        drawn(id, root.present())?;
    }
    Ok(tagged(id, title, svg))
}

/// Category labels under (or left of) a chart's plotting area, drawn by us:
/// plotters places axis labels at "nice" values, a category axis needs one
/// label per category. `at` gives each label's pixel position and anchor.
fn category_labels<DB: DrawingBackend>(
    id: &str,
    root: &DrawingArea<DB, plotters::coord::Shift>,
    labels: impl Iterator<Item = (String, (i32, i32))>,
    pos: Pos,
) -> Result<()> {
    let style = (FONT, 13).into_font().color(&BLACK).pos(pos);
    for (text, at) in labels {
        drawn(id, root.draw(&Text::new(text, at, style.clone())))?;
    }
    Ok(())
}

/// A bar chart: one bar per (label, height, text), the text (the count or
/// value) written above the bar.
pub fn bars(
    id: &str,
    title: &str,
    x_title: &str,
    y_title: &str,
    data: &[(String, f64, String)],
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        drawn(id, root.fill(&WHITE))?;
        let top = data.iter().map(|d| d.1).fold(0.0f64, f64::max);
        let low = data.iter().map(|d| d.1).fold(0.0f64, f64::min);
        let span = (top - low).max(1e-9);
        let n = data.len().max(1) as f64;
        let mut chart = drawn(
            id,
            ChartBuilder::on(&root)
                .margin(12)
                .x_label_area_size(42)
                .y_label_area_size(58)
                .build_cartesian_2d(-0.5..n - 0.5, (low - 0.02 * span)..(top + 0.12 * span)),
        )?;
        let ticks = |v: &f64| tick(*v, false);
        drawn(
            id,
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(0)
                .y_label_formatter(&ticks)
                .x_desc(x_title)
                .y_desc(y_title)
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 16))
                .light_line_style(WHITE.mix(0.0))
                .draw(),
        )?;
        let fill = RGBColor(44, 160, 44).filled();
        let rects = data.iter().enumerate().map(|(i, d)| {
            let x = i as f64;
            Rectangle::new([(x - 0.38, 0.0), (x + 0.38, d.1)], fill)
        });
        drawn(id, chart.draw_series(rects))?;
        let style = (FONT, 14)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        let texts = data
            .iter()
            .enumerate()
            .map(|(i, d)| Text::new(d.2.clone(), (i as f64, d.1.max(0.0)), style.clone()));
        drawn(id, chart.draw_series(texts))?;
        let y0 = low - 0.02 * span;
        let labels = data.iter().enumerate().map(|(i, d)| {
            let (x, y) = chart.backend_coord(&(i as f64, y0));
            (d.0.clone(), (x, y + 6))
        });
        category_labels(id, &root, labels, Pos::new(HPos::Center, VPos::Top))?;
        drawn(id, root.present())?;
    }
    Ok(tagged(id, title, svg))
}

/// A heatmap with its colour legend (0 to 100%) on the right.
pub fn heatmap(id: &str, title: &str, h: &Heatmap) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        drawn(id, root.fill(&WHITE))?;
        let (main, legend) = root.split_horizontally(WIDTH - LEGEND);
        let (nx, ny) = (h.columns.len().max(1), h.rows.len().max(1));
        // Room for the longest row label (about 7 pixels a character) and
        // the axis title beside it.
        let longest = h.rows.iter().map(|r| r.chars().count()).max().unwrap_or(0);
        let label_area = (7 * longest as u32 + 34).clamp(48, 170);
        let mut chart = drawn(
            id,
            ChartBuilder::on(&main)
                .margin(12)
                .x_label_area_size(42)
                .y_label_area_size(label_area)
                .build_cartesian_2d(0.0..nx as f64, 0.0..ny as f64),
        )?;
        drawn(
            id,
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(0)
                .y_labels(0)
                .x_desc(h.x_title.as_str())
                .y_desc(h.y_title.as_str())
                .axis_desc_style((FONT, 16))
                .draw(),
        )?;
        // Row r (0 at the top) spans y from ny - 1 - r to ny - r.
        let y_of = |r: usize| (ny - 1 - r.min(ny - 1)) as f64;
        let rects = h.cells.iter().map(|(c, r, v, _)| {
            let (x, y) = (*c as f64, y_of(*r));
            let mut rect = Rectangle::new([(x, y), (x + 1.0, y + 1.0)], heat(*v).filled());
            rect.set_margin(0, 1, 0, 1);
            rect
        });
        drawn(id, chart.draw_series(rects))?;
        let (x0, x1) = (
            chart.backend_coord(&(0.0, 0.0)),
            chart.backend_coord(&(1.0, 1.0)),
        );
        let (cell_w, cell_h) = (x1.0 - x0.0, x0.1 - x1.1);
        // Write the values when a cell is wide and tall enough to hold them
        // (at most 6 pixels a character at plotters' size 12).
        let longest = h
            .cells
            .iter()
            .map(|c| c.3.chars().count())
            .max()
            .unwrap_or(0);
        if cell_w >= 6 * longest as i32 + 2 && cell_h >= 14 {
            let texts = h.cells.iter().map(|(c, r, v, text)| {
                let color = if *v > 0.55 { WHITE } else { BLACK };
                let style = (FONT, 12)
                    .into_font()
                    .color(&color)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                Text::new(text.clone(), (*c as f64 + 0.5, y_of(*r) + 0.5), style)
            });
            drawn(id, chart.draw_series(texts))?;
        }
        // Label every column when they fit, else every k-th.
        let every = ((36 / cell_w.max(1)) as usize).max(1);
        let columns = h.columns.iter().enumerate().step_by(every).map(|(c, l)| {
            let (x, y) = chart.backend_coord(&(c as f64 + 0.5, 0.0));
            (l.clone(), (x, y + 6))
        });
        category_labels(id, &root, columns, Pos::new(HPos::Center, VPos::Top))?;
        let every = ((16 / cell_h.max(1)) as usize).max(1);
        let rows = h.rows.iter().enumerate().step_by(every).map(|(r, l)| {
            let (x, y) = chart.backend_coord(&(0.0, y_of(r) + 0.5));
            (l.clone(), (x - 6, y))
        });
        category_labels(id, &root, rows, Pos::new(HPos::Right, VPos::Center))?;
        colour_legend(id, &legend, &h.legend)?;
        drawn(id, root.present())?;
    }
    Ok(tagged(id, title, svg))
}

/// The colour scale of a heatmap: a vertical bar from 0% to 100% with ticks.
fn colour_legend<DB: DrawingBackend>(
    id: &str,
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
) -> Result<()> {
    let mut bar = drawn(
        id,
        ChartBuilder::on(area)
            .margin_top(24)
            .margin_bottom(54)
            .margin_right(6)
            .y_label_area_size(40)
            .caption(title, (FONT, 13))
            .build_cartesian_2d(0.0..1.0, 0.0..1.0),
    )?;
    let pct = |v: &f64| format!("{:.0}%", v * 100.0);
    drawn(
        id,
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(6)
            .y_label_formatter(&pct)
            .label_style((FONT, 13))
            .draw(),
    )?;
    let steps = 50;
    let strips = (0..steps).map(|i| {
        let (lo, hi) = (i as f64 / steps as f64, (i + 1) as f64 / steps as f64);
        Rectangle::new([(0.0, lo), (1.0, hi)], heat((lo + hi) / 2.0).filled())
    });
    drawn(id, bar.draw_series(strips))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(1234.0), "1,234");
        assert_eq!(count(-1234567.0), "-1,234,567");
    }

    #[test]
    fn a_bar_chart_writes_each_count_and_label() {
        let data = vec![
            ("Gold".to_string(), 12.0, "12".to_string()),
            ("Bronze".to_string(), 3456.0, "3,456".to_string()),
        ];
        let svg = bars("tiers", "Customers per tier", "tier", "customers", &data).unwrap();
        assert!(svg.starts_with("<svg id=\"tiers\""), "{svg}");
        for text in ["12", "3,456", "Gold", "Bronze", "tier", "customers"] {
            assert!(
                svg.contains(&format!(">\n{text}\n</text>")),
                "{text} missing"
            );
        }
        // One bar and one label per category, no empty category.
        assert_eq!(svg.matches("fill=\"#2CA02C\"").count(), 2);
        assert!(!svg.contains(">\n\n</text>"), "an empty axis label");
    }

    #[test]
    fn a_heatmap_has_a_legend_and_cell_values() {
        let h = Heatmap {
            x_title: "months since".into(),
            y_title: "cohort".into(),
            columns: vec!["0".into(), "1".into()],
            rows: vec!["2024-01".into()],
            cells: vec![(0, 0, 1.0, "100%".into()), (1, 0, 0.25, "25%".into())],
            legend: "retained".into(),
        };
        let svg = heatmap("cohorts", "Cohorts", &h).unwrap();
        for text in [
            "100%",
            "25%",
            "retained",
            "0%",
            "2024-01",
            "months since",
            "cohort",
        ] {
            assert!(
                svg.contains(&format!(">\n{text}\n</text>")),
                "{text} missing"
            );
        }
    }
}
