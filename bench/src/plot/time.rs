//! Charts over the time of one run: throughput stacked by answer class, latency percentiles
//! per second; the warm-up shaded and the window's ends marked.

use super::curves::draw_markers;
use super::{
    headroom, legend, render, s, Chart, PlotError, Window, BUSINESS_COLOR, COLORS, DROPPED_COLOR,
    ERROR_COLOR, OK_COLOR,
};
use crate::stats::{whole_seconds, TimelinePoint};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// A per-second figure of a timeline point.
type Count = fn(&TimelinePoint) -> u64;

/// A per-second latency of a timeline point.
type Millis = fn(&TimelinePoint) -> f64;

/// Shades the warm-up and marks the ends of the measurement window.
fn mark_window(chart: &mut Chart, w: Window, ymax: f64) -> Result<(), String> {
    if w.warmup_s > 0.0 {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, 0.0), (w.warmup_s, ymax)],
                BLACK.mix(0.08).filled(),
            )))
            .map_err(s)?
            .label("warm-up (not measured)")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 20, y + 5)], BLACK.mix(0.15).filled())
            });
    }
    let edge = BLACK.mix(0.55).stroke_width(1);
    for (i, x) in [w.warmup_s, w.end_s].into_iter().enumerate() {
        let anno = chart
            .draw_series(DashedLineSeries::new(vec![(x, 0.0), (x, ymax)], 6, 4, edge))
            .map_err(s)?;
        if i == 0 {
            anno.label("measurement window")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], edge));
        }
    }
    Ok(())
}

fn time_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    xmax: f64,
    ymax: f64,
) -> Result<Chart<'a, 'b>, String> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax)
        .map_err(s)?;
    chart
        .configure_mesh()
        .x_desc("time since the start of the run (s)")
        .y_desc(y_desc)
        .light_line_style(BLACK.mix(0.04))
        .draw()
        .map_err(s)?;
    Ok(chart)
}

/// Throughput per second, stacked by answer class (2xx, 4xx, errors: the top edge is every
/// completion), the dropped arrivals of an open loop as a dashed line; whole seconds of the
/// window only.
pub fn throughput(
    path: &Path,
    title: &str,
    timeline: &[TimelinePoint],
    w: Window,
) -> Result<[PathBuf; 2], PlotError> {
    let tl = whole_seconds(timeline, w.end_s);
    let mid = |p: &TimelinePoint| p.t_s as f64 + 0.5;
    let layer = |f: fn(&TimelinePoint) -> u64| -> Vec<(f64, f64)> {
        tl.iter().map(|p| (mid(p), f(p) as f64)).collect()
    };
    let ymax = tl
        .iter()
        .map(|p| p.completed.max(p.dropped) as f64)
        .fold(0.0, f64::max);
    let ymax = headroom(ymax);
    let xmax = w.end_s.max(1.0) * 1.02;
    let any = |f: fn(&TimelinePoint) -> u64| tl.iter().any(|p| f(p) > 0);
    render(path, |root| {
        let mut chart = time_chart(root, title, "answers per second (stacked)", xmax, ymax)?;
        mark_window(&mut chart, w, ymax)?;
        // Top layer first: each lower layer is drawn over the one above it.
        let layers: [(&str, RGBColor, Count, bool); 3] = [
            (
                "errors/s (5xx, timeouts)",
                ERROR_COLOR,
                |p| p.ok + p.business + p.error,
                any(|p| p.error),
            ),
            (
                "4xx/s (refused)",
                BUSINESS_COLOR,
                |p| p.ok + p.business,
                any(|p| p.business),
            ),
            ("2xx/s", OK_COLOR, |p| p.ok, true),
        ];
        for (name, color, f, show) in layers {
            if !show {
                continue;
            }
            chart
                .draw_series(
                    AreaSeries::new(layer(f), 0.0, color.mix(0.35))
                        .border_style(color.stroke_width(2)),
                )
                .map_err(s)?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 20, y + 5)], color.mix(0.6).filled())
                });
        }
        if any(|p| p.dropped) {
            let style = DROPPED_COLOR.stroke_width(2);
            chart
                .draw_series(DashedLineSeries::new(layer(|p| p.dropped), 8, 4, style))
                .map_err(s)?
                .label("dropped/s (not sent)")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// p50, p90 and p99 per second of completion: widest and lightest first, so a line that
/// coincides with another still shows, each with its own marker.
pub fn latency_over_time(
    path: &Path,
    title: &str,
    timeline: &[TimelinePoint],
    w: Window,
) -> Result<[PathBuf; 2], PlotError> {
    let tl: Vec<&TimelinePoint> = whole_seconds(timeline, w.end_s)
        .iter()
        .filter(|p| p.completed > 0)
        .collect();
    let ymax = headroom(tl.iter().map(|p| p.p99_ms).fold(0.0, f64::max));
    let xmax = w.end_s.max(1.0) * 1.02;
    let markers = tl.len() <= 120;
    render(path, |root| {
        let mut chart = time_chart(root, title, "latency (ms)", xmax, ymax)?;
        mark_window(&mut chart, w, ymax)?;
        let lines: [(&str, RGBColor, u32, Millis); 3] = [
            ("p99", COLORS[3], 5, |p| p.p99_ms),
            ("p90", COLORS[1], 3, |p| p.p90_ms),
            ("p50", COLORS[0], 1, |p| p.p50_ms),
        ];
        for (i, (name, color, width, f)) in lines.into_iter().enumerate() {
            let pts: Vec<(f64, f64)> = tl.iter().map(|p| (p.t_s as f64 + 0.5, f(p))).collect();
            let style = color.mix(0.85).stroke_width(width);
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), style))
                .map_err(s)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            if markers {
                draw_markers(&mut chart, &pts, i, color)?;
            }
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}
