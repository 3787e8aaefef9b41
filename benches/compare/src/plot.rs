//! The W2 sweep chart: throughput against the number of writer threads, one line per system.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::systems::Res;

const FONT: &str = "sans-serif";

fn color_for(label: &str) -> RGBColor {
    match label {
        l if l.contains("growing") => RGBColor(150, 150, 150),
        l if l.starts_with("raw") => RGBColor(0, 0, 0),
        l if l.contains("NORMAL") => RGBColor(120, 170, 230),
        l if l.starts_with("SQLite") => RGBColor(31, 96, 196),
        l if l.starts_with("okaywal") => RGBColor(230, 120, 0),
        l if l.contains("store") => RGBColor(20, 150, 60),
        l if l.starts_with("tasklog") => RGBColor(210, 30, 30),
        _ => RGBColor(120, 60, 160),
    }
}

/// Draws `series` (label, events/s per entry of `threads`) as a PNG line chart at `path`.
pub fn w2_chart(
    path: &Path,
    title: &str,
    threads: &[usize],
    series: &[(String, Vec<Option<f64>>)],
) -> Res<()> {
    // NOTE: the font ships inside the `dejavu` crate, so the chart needs no system fonts.
    plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "the bundled DejaVu Sans font should parse")?;

    let ymax = series
        .iter()
        .flat_map(|(_, ys)| ys.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b))
        .max(1.0)
        * 1.12;
    let n = threads.len();
    // NOTE: thread counts are categories (1, 2, 4, ...), evenly spaced: a log2 axis in effect.
    let x = (0u32..(n as u32).saturating_sub(1)).into_segmented();

    let root = BitMapBackend::new(path, (1100, 650)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 26))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(100)
        .build_cartesian_2d(x, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("writer threads")
        .y_desc("durable events/s")
        .axis_desc_style((FONT, 20))
        .label_style((FONT, 17))
        .x_labels(n)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => threads
                .get(*i as usize)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .y_label_formatter(&|v| format!("{:.0}k", v / 1_000.0))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (label, ys) in series {
        let color = color_for(label);
        let pts: Vec<(SegmentValue<u32>, f64)> = ys
            .iter()
            .enumerate()
            .filter_map(|(i, y)| y.map(|y| (SegmentValue::CenterOf(i as u32), y)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart.draw_series(
            pts.iter()
                .map(|p| Circle::new(p.clone(), 5, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 18))
        .draw()?;
    root.present()?;
    Ok(())
}
