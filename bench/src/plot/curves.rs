//! Curves on shared axes: the HDR percentile spectrum (log axes), and lines of several series
//! (a sweep's curve, the overlays).

use super::{headroom, render, s, Chart, PlotError, Series, COLORS};
use crate::stats::SpectrumPoint;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

pub(super) fn draw_markers(
    chart: &mut Chart,
    pts: &[(f64, f64)],
    shape: usize,
    color: RGBColor,
) -> Result<(), String> {
    match shape % 3 {
        0 => {
            chart
                .draw_series(pts.iter().map(|&p| {
                    EmptyElement::at(p) + Rectangle::new([(-3, -3), (3, 3)], color.filled())
                }))
                .map(|_| ())
        }
        1 => chart
            .draw_series(
                pts.iter()
                    .map(|&p| TriangleMarker::new(p, 5, color.filled())),
            )
            .map(|_| ()),
        _ => chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map(|_| ()),
    }
    .map_err(s)
}

/// Label of a spectrum's x value `1 / (1 - q)`: the percentile, with as many decimals as it has.
pub(super) fn percentile_label(x: f64) -> String {
    if x < 1.0 {
        return String::new();
    }
    let p = 100.0 * (1.0 - 1.0 / x);
    let text = format!("{p:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// The x coordinate of a percentile on a spectrum chart (`None` for 100 %, which has none).
pub(super) fn spectrum_x(percentile: f64) -> Option<f64> {
    let rest = 1.0 - percentile / 100.0;
    (rest > 1e-12).then(|| 1.0 / rest)
}

/// HDR percentile spectra of one or more runs on log-log axes: latency against
/// `1 / (1 - percentile)`, so 90 %, 99 %, 99.9 % … are evenly spaced and the tail is visible.
/// The maximum (100 %) has no place on that axis; the legend gives it.
pub fn spectrum(
    path: &Path,
    title: &str,
    runs: &[(String, Vec<SpectrumPoint>)],
) -> Result<[PathBuf; 2], PlotError> {
    let lines: Vec<(String, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|(name, sp)| {
            let max = sp.last().map_or(0.0, |p| p.ms);
            let pts = sp
                .iter()
                .filter_map(|p| spectrum_x(p.percentile).map(|x| (x, p.ms.max(1e-3))))
                .collect();
            (format!("{name} (max {max:.1} ms)"), pts)
        })
        .collect();
    let all = || lines.iter().flat_map(|(_, p)| p.iter());
    let xmax = all().map(|p| p.0).fold(10.0, f64::max) * 1.5;
    let ymin = all().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let ymax = all().map(|p| p.1).fold(0.0, f64::max);
    let (ymin, ymax) = if ymin.is_finite() && ymax > 0.0 {
        (ymin * 0.8, ymax * 4.0)
    } else {
        (0.1, 10.0)
    };
    render(path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((1.0..xmax).log_scale(), (ymin..ymax).log_scale())
            .map_err(s)?;
        chart
            .configure_mesh()
            .x_desc("percentile (log scale of 1 / (1 - percentile))")
            .y_desc("latency (ms, log scale)")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| format!("{y}"))
            .light_line_style(BLACK.mix(0.04))
            .draw()
            .map_err(s)?;
        for (i, (name, pts)) in lines.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            // Earlier runs wider: an identical later run stays visible on top of them.
            let width = 2 + 2 * (lines.len() - 1 - i) as u32;
            let style = color.mix(0.8).stroke_width(width);
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), style))
                .map_err(s)?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(s)
    })
}

/// Lines over a shared x axis (sweep curves, time to final status, several runs' throughput):
/// earlier series wider so coinciding lines stay visible, each with its own marker when
/// `markers`; a log y axis when `log_y` (zeros, which it cannot show, are left out); a
/// [`super::vertical`] series as a dashed line across the chart.
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    all: &[Series],
    markers: bool,
    log_y: bool,
) -> Result<[PathBuf; 2], PlotError> {
    let all: Vec<Series> = all
        .iter()
        .map(|se| Series {
            points: se
                .points
                .iter()
                .copied()
                .filter(|p| {
                    p.0.is_finite() && (se.vertical || p.1.is_finite() && (!log_y || p.1 > 0.0))
                })
                .collect(),
            ..se.clone()
        })
        .collect();
    let xs = || all.iter().flat_map(|se| se.points.iter().map(|p| p.0));
    let ys = || {
        all.iter()
            .filter(|se| !se.vertical)
            .flat_map(|se| se.points.iter().map(|p| p.1))
    };
    let xmin = xs().fold(f64::INFINITY, f64::min);
    let xmax = xs().fold(f64::NEG_INFINITY, f64::max);
    let (xmin, xmax) = if xmin.is_finite() && xmax > xmin {
        // A reference line at the edge would merge with the frame: leave it some room.
        let room = all.iter().any(|se| se.vertical) as u8 as f64 * 0.04 * (xmax - xmin);
        (xmin, xmax + room)
    } else if xmin.is_finite() {
        (xmin - 1.0, xmin + 1.0)
    } else {
        (0.0, 1.0)
    };
    let ymax = ys().fold(0.0f64, f64::max);
    let ymin = ys().fold(f64::INFINITY, f64::min);
    render(path, |root| {
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70);
        if log_y {
            let (lo, hi) = if ymin.is_finite() && ymax > 0.0 {
                (ymin * 0.8, ymax * 4.0)
            } else {
                (0.1, 10.0)
            };
            let mut chart = builder
                .build_cartesian_2d(xmin..xmax, (lo..hi).log_scale())
                .map_err(s)?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .y_label_formatter(&|y| format!("{y}"))
                .draw()
                .map_err(s)?;
            draw_lines(&mut chart, &all, markers)
        } else {
            let mut chart = builder
                .build_cartesian_2d(xmin..xmax, 0.0..headroom(ymax))
                .map_err(s)?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .draw()
                .map_err(s)?;
            draw_lines(&mut chart, &all, markers)
        }
    })
}

fn draw_lines<'a, 'b: 'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>,
    all: &[Series],
    markers: bool,
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64>,
{
    let n = all.len();
    let (lo, hi) = (chart.y_range().start, chart.y_range().end);
    for (i, se) in all.iter().enumerate() {
        if se.vertical {
            let style = BLACK.mix(0.7).stroke_width(2);
            let at = se.points.first().map_or(0.0, |p| p.0);
            chart
                .draw_series(DashedLineSeries::new([(at, lo), (at, hi)], 8, 5, style))
                .map_err(s)?
                .label(se.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            continue;
        }
        let color = COLORS[i % COLORS.len()];
        let style = color.mix(0.85).stroke_width(1 + 2 * (n - 1 - i) as u32);
        chart
            .draw_series(LineSeries::new(se.points.iter().copied(), style))
            .map_err(s)?
            .label(se.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        if markers {
            let pts = se.points.iter().copied();
            match i % 3 {
                0 => chart
                    .draw_series(pts.map(|p| Circle::new(p, 4, color.filled())))
                    .map(|_| ()),
                1 => chart
                    .draw_series(pts.map(|p| TriangleMarker::new(p, 5, color.filled())))
                    .map(|_| ()),
                _ => chart
                    .draw_series(pts.map(|p| Cross::new(p, 4, color.stroke_width(2))))
                    .map(|_| ()),
            }
            .map_err(s)?;
        }
    }
    // A reference line (a ceiling) bounds the curves from the right: the legend goes left of it.
    let corner = if all.iter().any(|se| se.vertical) {
        SeriesLabelPosition::UpperLeft
    } else {
        SeriesLabelPosition::UpperRight
    };
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(corner)
        .draw()
        .map_err(s)
}
