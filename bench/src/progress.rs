//! Progress bars on stderr (hidden with --no-progress or when stderr is not a terminal) and
//! phase notes.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Ui {
    enabled: bool,
}

impl Ui {
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }

    fn make(&self, len: u64, prefix: &str, template: &str) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4));
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        pb.set_style(style);
        pb.set_prefix(prefix.to_string());
        pb
    }

    /// A bar counting `len` steps.
    pub fn bar(&self, len: u64, prefix: &str) -> ProgressBar {
        self.make(
            len,
            prefix,
            "{prefix:>12} [{elapsed_precise}] [{bar:30}] {pos}/{len} {msg}",
        )
    }

    /// A bar over a duration (position in milliseconds).
    pub fn timed(&self, total: Duration, prefix: &str) -> ProgressBar {
        let ms = u64::try_from(total.as_millis()).unwrap_or(u64::MAX).max(1);
        self.make(
            ms,
            prefix,
            "{prefix:>12} [{elapsed_precise}] [{bar:30}] {percent:>3}% {msg}",
        )
    }

    /// A phase note on stderr.
    pub fn note(&self, msg: impl AsRef<str>) {
        eprintln!("bench: {}", msg.as_ref());
    }
}
