//! The bookkeeping's cases: percentiles, schedules, windows, corrections.

use super::*;
use api_client::Status;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[test]
fn histogram_bounds_are_valid() {
    let mut l = Latency::new();
    l.record(Duration::ZERO);
    l.record(Duration::from_secs(7200));
    let s = l.summary();
    assert_eq!(s.count, 2);
    assert!(s.min_ms <= 0.002);
    // clamped to one hour
    assert!((s.max_ms - 3_600_000.0).abs() / 3_600_000.0 < 0.001);
    let _ = Latency::with_sigfig(TIMELINE_SIGFIG);
}

#[test]
fn percentiles_of_uniform_latencies() {
    let mut l = Latency::new();
    for v in 1..=1000u64 {
        l.record(ms(v));
    }
    let s = l.summary();
    assert_eq!(s.count, 1000);
    let close = |a: f64, b: f64| (a - b).abs() / b < 0.002;
    assert!(close(s.p50_ms, 500.0), "{}", s.p50_ms);
    assert!(close(s.p90_ms, 900.0), "{}", s.p90_ms);
    assert!(close(s.p99_ms, 990.0), "{}", s.p99_ms);
    assert!(close(s.p999_ms, 999.0), "{}", s.p999_ms);
    assert!(close(s.max_ms, 1000.0), "{}", s.max_ms);
    assert!(close(s.mean_ms, 500.5), "{}", s.mean_ms);
}

#[test]
fn empty_summary_is_zero() {
    assert_eq!(Latency::new().summary(), LatencySummary::default());
}

#[test]
fn spectrum_covers_the_tail_the_samples_resolve() {
    let mut l = Latency::new();
    for v in 1..=1000u64 {
        l.record(ms(v));
    }
    let sp = l.spectrum();
    // 0..80 by tens, then 90 % … 99.9 % (1000 samples resolve three nines), then 100 %.
    assert_eq!(sp.len(), 9 + 21 + 1, "{sp:?}");
    assert_eq!(sp.first().map(|p| p.percentile), Some(0.0));
    let last = sp.last().copied().unwrap_or_default();
    assert_eq!(last.percentile, 100.0);
    assert!((last.ms - 1000.0).abs() < 1.0, "{last:?}");
    let at = |pct: f64| {
        sp.iter()
            .find(|p| (p.percentile - pct).abs() < 1e-9)
            .map(|p| p.ms)
    };
    let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() / b < 0.002);
    assert!(close(at(90.0), 900.0), "{:?}", at(90.0));
    assert!(close(at(99.0), 990.0), "{:?}", at(99.0));
    assert!(close(at(99.9), 999.0), "{:?}", at(99.9));
    assert!(at(99.99).is_none(), "1000 samples do not resolve 99.99 %");
    assert!(sp
        .windows(2)
        .all(|w| w[0].percentile < w[1].percentile && w[0].ms <= w[1].ms));
    assert!(Latency::new().spectrum().is_empty());
}

#[test]
fn the_last_partial_second_is_dropped() {
    let tl: Vec<TimelinePoint> = (0..6)
        .map(|t| TimelinePoint {
            t_s: t,
            completed: if t < 5 { 100 } else { 30 },
            ..TimelinePoint::default()
        })
        .collect();
    // The window ends at 5.3 s: second 5 holds 0.3 s of load, plotted it would read as a
    // drop to 30/s.
    let kept = whole_seconds(&tl, 5.3);
    assert_eq!(kept.len(), 5);
    assert!(kept.iter().all(|p| p.completed == 100));
    // A window ending exactly on a second keeps that second.
    assert_eq!(whole_seconds(&tl, 5.0).len(), 5);
    assert_eq!(whole_seconds(&tl, 6.0).len(), 6);
    assert!(whole_seconds(&tl, 0.5).is_empty());
}

#[test]
fn record_corrected_backfills_missing_samples() {
    // A closed-loop client meant to send every 10 ms is blocked for 100 ms by one request:
    // the correction adds the 9 requests it would have sent meanwhile (90, 80, …, 10 ms).
    let mut l = Latency::new();
    l.record_corrected(ms(100), ms(10));
    assert_eq!(l.count(), 10);
    let s = l.summary();
    assert!((s.min_ms - 10.0).abs() < 0.05, "{}", s.min_ms);
    assert!((s.max_ms - 100.0).abs() < 0.1, "{}", s.max_ms);
    // a fast answer is recorded once
    let mut f = Latency::new();
    f.record_corrected(ms(5), ms(10));
    assert_eq!(f.count(), 1);
}

#[test]
fn intended_schedule() {
    assert_eq!(intended_offset(0, 100.0), Duration::ZERO);
    assert_eq!(intended_offset(100, 100.0), Duration::from_secs(1));
    assert_eq!(intended_offset(3, 1000.0), ms(3));
    assert_eq!(intended_offset(5, 0.0), Duration::ZERO);
    assert_eq!(latency_since(ms(10), ms(4)), Duration::ZERO);
    assert_eq!(latency_since(ms(4), ms(10)), ms(6));
}

/// (intended, sent, done)
type Timing = (Duration, Duration, Duration);

/// A single-server queue: request `i` arrives at `i × interval`, request 0 takes `stall`,
/// the others `service`. Returns (intended, sent, done) for each request for an open-loop
/// client (sends at the intended time, never waits) and for a one-client closed loop
/// (sends when the previous answer arrives).
fn simulate(
    n: u64,
    interval: Duration,
    stall: Duration,
    service: Duration,
) -> (Vec<Timing>, Vec<Timing>) {
    let mut open = Vec::new();
    let mut server_free = Duration::ZERO;
    for i in 0..n {
        let intended = interval * i as u32;
        let start = intended.max(server_free);
        let done = start + if i == 0 { stall } else { service };
        server_free = done;
        open.push((intended, intended, done));
    }
    let mut closed = Vec::new();
    let mut t = Duration::ZERO;
    for i in 0..n {
        let sent = t.max(interval * i as u32);
        let done = sent + if i == 0 { stall } else { service };
        closed.push((sent, sent, done));
        t = done;
    }
    (open, closed)
}

/// Records successful checkouts given as (intended, sent, done).
fn record_successes(r: &mut Recorder, samples: &[Timing]) {
    for (intended, sent, done) in samples {
        r.record_sample(&Sample {
            op: "checkout",
            status: Status::Http(200),
            class: Class::Success,
            intended: *intended,
            sent: *sent,
            done: *done,
        });
    }
}

#[test]
fn open_loop_charges_the_stall_to_every_queued_request() {
    let interval = ms(1);
    let (open, closed) = simulate(1000, interval, ms(500), Duration::from_micros(100));
    assert_eq!(open.len(), 1000);
    let mut open_r = Recorder::new(Duration::ZERO, None);
    record_successes(&mut open_r, &open);
    let mut closed_raw = Recorder::new(Duration::ZERO, Some(interval));
    record_successes(&mut closed_raw, &closed);
    let open_s = open_r.latency.summary();
    let raw_s = closed_raw.latency.summary();
    let co_s = closed_raw
        .latency_co
        .as_ref()
        .map(|l| l.summary())
        .unwrap_or_default();
    // Raw closed-loop numbers hide the stall: only one slow sample out of 1000.
    assert!(raw_s.p50_ms < 0.2, "raw p50 {}", raw_s.p50_ms);
    assert!(raw_s.p99_ms < 0.2, "raw p99 {}", raw_s.p99_ms);
    // Open loop: the ~500 requests queued behind the stall wait up to 500 ms.
    assert!(open_s.p50_ms > 1.0, "open p50 {}", open_s.p50_ms);
    assert!(open_s.p90_ms > 350.0, "open p90 {}", open_s.p90_ms);
    assert!(open_s.max_ms >= 499.0, "open max {}", open_s.max_ms);
    // The corrected closed-loop histogram recovers the same tail.
    assert!(co_s.count >= 1000 + 400, "co count {}", co_s.count);
    assert!(co_s.p90_ms > 300.0, "co p90 {}", co_s.p90_ms);
    assert!(co_s.max_ms >= 499.0);
}

#[test]
fn warmup_is_excluded_but_kept_in_timeline() {
    let mut r = Recorder::new(Duration::from_secs(1), None);
    for (i, class) in [Class::Success, Class::Business, Class::Error]
        .into_iter()
        .enumerate()
    {
        let t = Duration::from_millis(500 + 600 * i as u64);
        r.record_sample(&Sample {
            op: "checkout",
            status: Status::Http(200),
            class,
            intended: t,
            sent: t,
            done: t + ms(10),
        });
    }
    r.record_dropped(ms(200));
    r.record_dropped(ms(1500));
    assert_eq!(r.warmup_samples, 1);
    assert_eq!(
        r.counts,
        Counts {
            ok: 0,
            business: 1,
            error: 1
        }
    );
    assert_eq!(r.dropped, 1);
    let tl = r.timeline.points();
    assert_eq!(tl.len(), 2);
    assert_eq!(tl[0].completed, 1);
    assert_eq!(tl[0].dropped, 1);
    assert_eq!(tl[1].completed, 2);
    assert_eq!(tl[1].dropped, 1);
    assert!((tl[1].p50_ms - 10.0).abs() < 0.2);
    assert_eq!(r.statuses.get("200"), Some(&2));
    assert_eq!(r.per_op.get("checkout").map(|o| o.counts.total()), Some(2));
}

#[test]
fn late_completions_count_in_latency_not_in_throughput() {
    let mut r = Recorder::new(ms(0), None).with_window_end(ms(3000));
    let mut add = |sent: u64, done: u64| {
        r.record_sample(&Sample {
            op: "checkout",
            status: Status::Http(200),
            class: Class::Success,
            intended: ms(sent),
            sent: ms(sent),
            done: ms(done),
        })
    };
    add(100, 200);
    add(2900, 2950);
    add(2000, 19_000); // sent in the window, answered 16 s after it
    assert_eq!(r.counts.ok, 3);
    assert_eq!(r.in_window.ok, 2);
    assert_eq!(r.after_window, 1);
    assert_eq!(r.last_done, ms(19_000));
    assert!((r.latency.summary().max_ms - 17_000.0).abs() < 20.0);
    assert_eq!(r.per_op.get("checkout").map(|o| o.in_window), Some(2));
}

#[test]
fn timeline_ranges_merge_seconds() {
    let mut t = Timeline::default();
    // 100 answers of 10 ms in second 0, one of 1 s in second 2, one error in second 3.
    for i in 0..100 {
        t.record(ms(i * 5), Class::Success, ms(10));
    }
    t.record(ms(2500), Class::Business, ms(1000));
    t.record(ms(3500), Class::Error, ms(20));
    t.record_dropped(ms(1500));
    let all = t.range(0, 4);
    assert_eq!(
        (all.completed, all.ok, all.business, all.error),
        (102, 100, 1, 1)
    );
    assert_eq!(all.dropped, 1);
    assert!((all.p50_ms - 10.0).abs() < 0.2, "{}", all.p50_ms);
    assert!((all.max_ms - 1000.0).abs() < 10.0, "{}", all.max_ms);
    let tail = t.range(2, 3);
    assert_eq!((tail.t_s, tail.completed), (2, 1));
    assert!((tail.p99_ms - 1000.0).abs() < 10.0, "{}", tail.p99_ms);
    assert_eq!(t.range(4, 10).completed, 0);
    assert_eq!(t.range(4, 10).p99_ms, 0.0);
}

#[test]
fn finals_are_counted_by_outcome() {
    let mut r = Recorder::new(Duration::ZERO, None);
    let mk = |outcome, at| FinalSample {
        intended: ms(0),
        final_at: ms(at),
        outcome,
        via: "poll",
        polls: 2,
    };
    r.record_final(&mk(FinalOutcome::Succeeded, 20));
    r.record_final(&mk(FinalOutcome::Failed("insufficient_stock".into()), 40));
    r.record_final(&mk(FinalOutcome::TimedOut, 60_000));
    let s = r.final_summary();
    assert_eq!(s.observed, 3);
    assert_eq!(s.finals, 2);
    assert_eq!(s.outcomes.get("failed:insufficient_stock"), Some(&1));
    assert_eq!(s.outcomes.get("timed_out"), Some(&1));
    assert_eq!(s.polls, 6);
    assert!((s.time_to_final.max_ms - 40.0).abs() < 0.1);
}
