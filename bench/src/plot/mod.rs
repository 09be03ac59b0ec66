//! The report's charts: SVG drawn with plotters, and a PNG of each beside it (rasterised with
//! resvg), so a report can be viewed where SVG cannot.
//!
//! What keeps them honest: per-second rates only over whole seconds of the measurement window
//! (`stats::whole_seconds`), the warm-up shaded and the window's ends marked, throughput stacked
//! by answer class (so no line hides another), latency lines drawn widest first with distinct
//! markers, and the latency distribution as an HDR percentile spectrum on log axes.

mod curves;
mod time;

pub use curves::{lines, spectrum};
pub use time::{latency_over_time, throughput};

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
    /// A reference drawn as a dashed vertical line across the whole chart at the x of its one
    /// point (a ceiling); its y plays no part in the axis.
    pub vertical: bool,
}

pub fn series(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
    Series {
        name: name.into(),
        points,
        vertical: false,
    }
}

/// A dashed vertical line at `x` (see [`Series::vertical`]).
pub fn vertical(name: impl Into<String>, x: f64) -> Series {
    Series {
        name: name.into(),
        points: vec![(x, 0.0)],
        vertical: true,
    }
}

/// A run's time axis: the warm-up `[0, warmup_s)` and the measurement window
/// `[warmup_s, end_s]`, seconds from the start of the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub warmup_s: f64,
    pub end_s: f64,
}

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

/// Headroom above the data for the legend, so it does not cover the lines.
fn headroom(max: f64) -> f64 {
    if max > 0.0 {
        max * 1.35
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::curves::{percentile_label, spectrum_x};
    use super::*;
    use crate::stats::{SpectrumPoint, TimelinePoint};

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
