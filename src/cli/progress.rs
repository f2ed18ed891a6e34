//! Progress bars on standard error, drawn only when standard error is a
//! terminal and the user did not ask for quiet.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use metagov_sim::simulate::Progress;

/// A progress bar on standard error (drawn only when `show` and standard
/// error is a terminal), labelled `message`, counting to `len`.
pub fn progress_bar(len: u64, show: bool, message: &str) -> ProgressBar {
    styled_bar(len, show, message, "{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
}

/// [`progress_bar`] counting bytes (shown as KiB, MiB, GiB).
pub fn bytes_bar(len: u64, show: bool, message: &str) -> ProgressBar {
    styled_bar(len, show, message, "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)")
}

fn styled_bar(len: u64, show: bool, message: &str, template: &'static str) -> ProgressBar {
    let target = if show { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(
        ProgressStyle::with_template(template)
            // Invariant: the templates above are literals that indicatif accepts.
            .expect("progress template is valid")
            .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

/// A simulation's [`Progress`] drawn as a bar, once the run says how long it is.
pub struct Bar {
    show: bool,
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A bar that draws only when `show`.
    pub fn new(show: bool) -> Self {
        Bar { show, bar: None }
    }
}

impl Progress for Bar {
    fn start(&mut self, total: u64, label: &str) {
        self.bar = Some(progress_bar(total, self.show, label));
    }

    fn advance(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
