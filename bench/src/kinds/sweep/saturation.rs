//! The sweep's saturation point: where more load stopped paying.

use serde::{Deserialize, Serialize};

/// One step of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Concurrency (closed loop) or offered rate in requests/s (open loop).
    pub level: f64,
    /// Completed requests per second.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub completed: u64,
    pub errors: u64,
    /// Open loop: requests not sent because the in-flight cap was reached.
    pub dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Saturation {
    /// Index of the last step before saturation (the saturation point), if any step was good.
    pub point_index: Option<usize>,
    pub point_level: Option<f64>,
    pub point_throughput: Option<f64>,
    /// Index of the first step past saturation, if one was reached.
    pub saturated_at_index: Option<usize>,
    pub peak_index: Option<usize>,
    pub peak_throughput: f64,
    pub reason: String,
}

/// Criteria for [`saturation`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaturationCriteria {
    /// Open loop (levels are offered rates) or closed loop (levels are client counts).
    pub open_loop: bool,
    /// Closed loop: minimum relative throughput gain per step (e.g. 0.05) for a step to count
    /// as still scaling.
    pub min_gain: f64,
    /// Open loop: minimum achieved/offered ratio (e.g. 0.95).
    pub min_achieved_ratio: f64,
    /// Maximum fraction of errors + dropped among all attempts (e.g. 0.01).
    pub max_error_ratio: f64,
    /// Optional p99 objective in milliseconds.
    pub slo_p99_ms: Option<f64>,
}

impl Default for SaturationCriteria {
    fn default() -> Self {
        Self {
            open_loop: false,
            min_gain: 0.05,
            min_achieved_ratio: 0.95,
            max_error_ratio: 0.01,
            slo_p99_ms: None,
        }
    }
}

/// Why a step is past saturation, if it is: one rule each (the error budget, the p99
/// objective, then scaling: the offered rate achieved in an open loop, enough gain over the
/// previous step in a closed loop). The first rule that fails names the reason.
type Rule = fn(&[CurvePoint], usize, &SaturationCriteria) -> Option<String>;

const RULES: [Rule; 3] = [error_budget, p99_objective, still_scaling];

fn error_budget(points: &[CurvePoint], i: usize, c: &SaturationCriteria) -> Option<String> {
    let p = &points[i];
    let attempts = (p.completed + p.dropped).max(1) as f64;
    let err_ratio = (p.errors + p.dropped) as f64 / attempts;
    (err_ratio > c.max_error_ratio).then(|| {
        format!(
            "errors+dropped {:.1}% > {:.1}% at level {}",
            err_ratio * 100.0,
            c.max_error_ratio * 100.0,
            p.level
        )
    })
}

fn p99_objective(points: &[CurvePoint], i: usize, c: &SaturationCriteria) -> Option<String> {
    let p = &points[i];
    let slo = c.slo_p99_ms?;
    (p.p99_ms > slo).then(|| {
        format!(
            "p99 {:.1} ms > objective {slo:.1} ms at level {}",
            p.p99_ms, p.level
        )
    })
}

fn still_scaling(points: &[CurvePoint], i: usize, c: &SaturationCriteria) -> Option<String> {
    let p = &points[i];
    if c.open_loop {
        let ratio = if p.level > 0.0 {
            p.throughput / p.level
        } else {
            1.0
        };
        return (ratio < c.min_achieved_ratio).then(|| {
            format!(
                "achieved {:.0}/s of {:.0}/s offered ({:.0}%)",
                p.throughput,
                p.level,
                ratio * 100.0
            )
        });
    }
    let prev = &points[i.checked_sub(1)?];
    let gain = if prev.throughput > 0.0 {
        (p.throughput - prev.throughput) / prev.throughput
    } else if p.throughput > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    (gain < c.min_gain).then(|| {
        format!(
            "going from {} to {} clients changed throughput by {:+.1}% (< {:.0}%)",
            prev.level,
            p.level,
            gain * 100.0,
            c.min_gain * 100.0
        )
    })
}

/// Finds the saturation point of a sweep: the last step that still scaled (closed loop: more
/// clients gave at least `min_gain` more throughput; open loop: the offered rate was achieved)
/// while meeting the error and p99 objectives. `points` must be in increasing level order.
pub fn saturation(points: &[CurvePoint], c: &SaturationCriteria) -> Saturation {
    let peak = points
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.throughput.total_cmp(&b.1.throughput));
    let (peak_index, peak_throughput) = match peak {
        Some((i, p)) => (Some(i), p.throughput),
        None => (None, 0.0),
    };
    for i in 0..points.len() {
        if let Some(reason) = RULES.iter().find_map(|rule| rule(points, i, c)) {
            let point_index = i.checked_sub(1);
            return Saturation {
                point_index,
                point_level: point_index.map(|j| points[j].level),
                point_throughput: point_index.map(|j| points[j].throughput),
                saturated_at_index: Some(i),
                peak_index,
                peak_throughput,
                reason,
            };
        }
    }
    let last = points.len().checked_sub(1);
    Saturation {
        point_index: None,
        point_level: None,
        point_throughput: None,
        saturated_at_index: None,
        peak_index,
        peak_throughput,
        reason: match last {
            Some(j) => format!(
                "not saturated: still scaling at the last level {} ({:.0}/s); extend the sweep",
                points[j].level, points[j].throughput
            ),
            None => "no steps".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(level: f64, tp: f64, p99: f64) -> CurvePoint {
        CurvePoint {
            level,
            throughput: tp,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            completed: (tp * 10.0) as u64,
            errors: 0,
            dropped: 0,
        }
    }

    #[test]
    fn closed_loop_knee() {
        let pts = vec![
            pt(1.0, 100.0, 12.0),
            pt(2.0, 190.0, 13.0),
            pt(4.0, 370.0, 14.0),
            pt(8.0, 380.0, 25.0),
            pt(16.0, 385.0, 50.0),
        ];
        let s = saturation(&pts, &SaturationCriteria::default());
        assert_eq!(s.point_index, Some(2));
        assert_eq!(s.point_level, Some(4.0));
        assert_eq!(s.saturated_at_index, Some(3));
        assert_eq!(s.peak_index, Some(4));
        assert!(s.reason.contains("4 to 8"), "{}", s.reason);
    }

    #[test]
    fn closed_loop_slo_and_errors() {
        let mut pts = vec![pt(1.0, 100.0, 12.0), pt(2.0, 200.0, 120.0)];
        let c = SaturationCriteria {
            slo_p99_ms: Some(100.0),
            ..SaturationCriteria::default()
        };
        let s = saturation(&pts, &c);
        assert_eq!(s.point_index, Some(0));
        pts[1].p99_ms = 20.0;
        pts[1].errors = 100; // 5% of 2000
        let s = saturation(&pts, &c);
        assert_eq!(s.point_index, Some(0));
        assert!(s.reason.contains("errors"));
    }

    #[test]
    fn open_loop_achieved_rate() {
        let pts = vec![
            pt(100.0, 100.0, 5.0),
            pt(200.0, 199.0, 6.0),
            pt(400.0, 300.0, 900.0),
        ];
        let c = SaturationCriteria {
            open_loop: true,
            ..SaturationCriteria::default()
        };
        let s = saturation(&pts, &c);
        assert_eq!(s.point_level, Some(200.0));
        assert_eq!(s.saturated_at_index, Some(2));
    }

    #[test]
    fn not_saturated_and_saturated_from_the_start() {
        let pts = vec![pt(1.0, 100.0, 1.0), pt(2.0, 200.0, 1.0)];
        let s = saturation(&pts, &SaturationCriteria::default());
        assert_eq!(s.point_index, None);
        assert_eq!(s.saturated_at_index, None);
        assert!(s.reason.starts_with("not saturated"));
        let mut bad = pt(1.0, 100.0, 1.0);
        bad.dropped = 500;
        let s = saturation(&[bad], &SaturationCriteria::default());
        assert_eq!(s.saturated_at_index, Some(0));
        assert_eq!(s.point_index, None);
        let s = saturation(&[], &SaturationCriteria::default());
        assert_eq!(s.peak_index, None);
    }
}
