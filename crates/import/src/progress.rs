//! A progress bar for the command line, driven by the importer's progress
//! callback.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::source::{Progress, ProgressUnit};

/// Below this many rows (or bytes, about that many rows of CSV) the bar is
/// not worth showing.
pub const MIN_ROWS: u64 = 5_000;
pub const MIN_BYTES: u64 = 512 * 1024;

/// A bar for `total` units, hidden when the job is small or stderr is not
/// a terminal (logs and pipes get no control characters). Feed it with
/// [`update`].
pub fn bar(total: u64, unit: ProgressUnit) -> ProgressBar {
    let big = match unit {
        ProgressUnit::Rows => total >= MIN_ROWS,
        ProgressUnit::Bytes => total >= MIN_BYTES,
    };
    if !big || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    }
    let template = match unit {
        ProgressUnit::Rows => "{bar:40} {pos}/{len} lignes ({eta})",
        ProgressUnit::Bytes => "{bar:40} {bytes}/{total_bytes} ({eta})",
    };
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// Moves `bar` to `progress`.
pub fn update(bar: &ProgressBar, progress: Progress) {
    bar.set_length(progress.total);
    bar.set_position(progress.done);
}

/// Creates the bar on the first progress report (when the total is known)
/// and keeps it current: `read_path(path, &options, &mut |p| bar.report(p))`.
#[derive(Debug, Default)]
pub struct BarReporter {
    bar: Option<ProgressBar>,
}

impl BarReporter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn report(&mut self, progress: Progress) {
        let bar = self
            .bar
            .get_or_insert_with(|| bar(progress.total, progress.unit));
        update(bar, progress);
    }

    /// Removes the bar from the terminal.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
