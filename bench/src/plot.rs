//! The report's charts: SVG drawn with plotters, and a PNG of each beside it (rasterised with
//! resvg), so a report can be viewed where SVG cannot.
//!
//! What keeps them honest: per-second rates only over whole seconds of the measurement window
//! (`stats::whole_seconds`), the warm-up shaded and the window's ends marked, throughput stacked
//! by answer class (so no line hides another), latency lines drawn widest first with distinct
//! markers, and the latency distribution as an HDR percentile spectrum on log axes.

use crate::stats::{whole_seconds, SpectrumPoint, TimelinePoint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use resvg::{tiny_skia, usvg};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Size of every chart, SVG and PNG alike, in pixels.
pub const SIZE: (u32, u32) = (960, 440);

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("plot {path}: {msg}")]
    Draw { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("rasterising {path}: {msg}")]
    Raster { path: PathBuf, msg: String },
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(90, 90, 90),
];
const OK_COLOR: RGBColor = RGBColor(31, 119, 180);
const BUSINESS_COLOR: RGBColor = RGBColor(255, 127, 14);
const ERROR_COLOR: RGBColor = RGBColor(214, 39, 40);
const DROPPED_COLOR: RGBColor = RGBColor(148, 103, 189);

/// A named line.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub fn series(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.into(),
        points,
    }
}

/// A run's time axis: the warm-up `[0, warmup_s)` and the measurement window
/// `[warmup_s, end_s]`, seconds from the start of the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub warmup_s: f64,
    pub end_s: f64,
}

/// A per-second figure of a timeline point.
type Count = fn(&TimelinePoint) -> u64;
/// A per-second latency of a timeline point.
type Millis = fn(&TimelinePoint) -> f64;

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws an SVG to `path` with `draw`, then writes the PNG beside it; returns both file names.
fn render<F>(path: &Path, draw: F) -> Result<[PathBuf; 2], PlotError>
where
    F: FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<(), String>,
{
    let derr = |msg: String| PlotError::Draw {
        path: path.to_path_buf(),
        msg,
    };
    {
        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| derr(e.to_string()))?;
        draw(&root).map_err(derr)?;
        root.present().map_err(|e| derr(e.to_string()))?;
    }
    let png = png_beside(path)?;
    Ok([path.to_path_buf(), png])
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The system fonts, loaded once, with "sans-serif" (what plotters asks for) mapped to a family
/// that is installed: fontdb's default, Arial, is rarely there on Linux.
fn fonts() -> Arc<usvg::fontdb::Database> {
    static FONTS: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = usvg::fontdb::Database::new();
            db.load_system_fonts();
            let has = |name: &str| {
                db.faces()
                    .any(|f| f.families.iter().any(|(n, _)| n.as_str() == name))
            };
            let preferred = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial"];
            let family = preferred
                .iter()
                .find(|n| has(n))
                .map(|n| n.to_string())
                .or_else(|| {
                    db.faces()
                        .find_map(|f| f.families.first().map(|(n, _)| n.clone()))
                });
            if let Some(family) = family {
                db.set_sans_serif_family(family);
            }
            Arc::new(db)
        })
        .clone()
}

/// Rasterises the SVG at `svg` to a PNG of the same size beside it (`x.svg` -> `x.png`). Text
/// needs a system font (any; e.g. Debian's fonts-dejavu-core); without one the labels are
/// missing but the PNG is still written.
pub fn png_beside(svg: &Path) -> Result<PathBuf, PlotError> {
    let rerr = |msg: String| PlotError::Raster {
        path: svg.to_path_buf(),
        msg,
    };
    let data = std::fs::read(svg).map_err(|source| PlotError::Io {
        path: svg.to_path_buf(),
        source,
    })?;
    let opt = usvg::Options {
        fontdb: fonts(),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_data(&data, &opt)
        .map_err(s)
        .map_err(rerr)?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| rerr(format!("empty size {}x{}", size.width(), size.height())))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    let png = svg.with_extension("png");
    pixmap
        .save_png(&png)
        .map_err(|e| rerr(format!("{}: {e}", png.display())))?;
    Ok(png)
}

fn legend<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(position)
        .draw()
        .map_err(s)
}

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

/// Headroom above the data for the legend, so it does not cover the lines.
fn headroom(max: f64) -> f64 {
    if max > 0.0 {
        max * 1.35
    } else {
        1.0
    }
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

fn draw_markers(
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
fn percentile_label(x: f64) -> String {
    if x < 1.0 {
        return String::new();
    }
    let p = 100.0 * (1.0 - 1.0 / x);
    let text = format!("{p:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// The x coordinate of a percentile on a spectrum chart (`None` for 100 %, which has none).
fn spectrum_x(percentile: f64) -> Option<f64> {
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
/// `markers`; a log y axis when `log_y` (zeros, which it cannot show, are left out).
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
            name: se.name.clone(),
            points: se
                .points
                .iter()
                .copied()
                .filter(|p| p.0.is_finite() && p.1.is_finite() && (!log_y || p.1 > 0.0))
                .collect(),
        })
        .collect();
    let xs = || all.iter().flat_map(|se| se.points.iter().map(|p| p.0));
    let ys = || all.iter().flat_map(|se| se.points.iter().map(|p| p.1));
    let xmin = xs().fold(f64::INFINITY, f64::min);
    let xmax = xs().fold(f64::NEG_INFINITY, f64::max);
    let (xmin, xmax) = if xmin.is_finite() && xmax > xmin {
        (xmin, xmax)
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
    for (i, se) in all.iter().enumerate() {
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
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bench-plot-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn png_size(path: &Path) -> (u32, u32) {
        let png = tiny_skia::Pixmap::load_png(path).expect("a readable PNG");
        (png.width(), png.height())
    }

    fn timeline() -> Vec<TimelinePoint> {
        (0..12)
            .map(|t| TimelinePoint {
                t_s: t,
                completed: 100 + t,
                ok: 90 + t,
                business: 10,
                p50_ms: 5.0,
                p90_ms: 5.0, // coincides with p50: both must still be drawn
                p99_ms: 20.0,
                max_ms: 30.0,
                ..TimelinePoint::default()
            })
            .collect()
    }

    #[test]
    fn every_chart_writes_an_svg_and_a_png_of_the_same_size() {
        let dir = temp_dir("all");
        let w = Window {
            warmup_s: 2.0,
            end_s: 10.4,
        };
        let sp: Vec<SpectrumPoint> = [(0.0, 1.0), (90.0, 3.0), (99.0, 9.0), (100.0, 30.0)]
            .into_iter()
            .map(|(percentile, ms)| SpectrumPoint { percentile, ms })
            .collect();
        let made = [
            throughput(&dir.join("t.svg"), "throughput", &timeline(), w),
            latency_over_time(&dir.join("l.svg"), "latency", &timeline(), w),
            spectrum(
                &dir.join("s.svg"),
                "spectrum",
                &[("a".into(), sp.clone()), ("b".into(), sp)],
            ),
            lines(
                &dir.join("o.svg"),
                "overlay",
                "x",
                "y",
                &[
                    series("a", vec![(1.0, 10.0), (2.0, 1000.0)]),
                    series("b", vec![(1.0, 0.0)]),
                ],
                true,
                true,
            ),
        ];
        for files in made {
            let [svg, png] = files.expect("chart written");
            let text = std::fs::read_to_string(&svg).expect("svg");
            assert!(text.starts_with("<svg"), "{}", svg.display());
            assert_eq!(png, svg.with_extension("png"));
            assert!(std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0) > 1000);
            assert_eq!(png_size(&png), SIZE, "{}", png.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(2.0), "50%");
        assert_eq!(spectrum_x(100.0), None);
        assert!(spectrum_x(99.0).is_some_and(|x| (x - 100.0).abs() < 1e-6));
    }
}
