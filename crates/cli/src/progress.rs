//! Progress bars (indicatif): drawn on stderr only when it is a terminal and `--quiet` is off;
//! plain (no colors) when `NO_COLOR` is set.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How a command shows progress.
#[derive(Clone, Copy, Debug)]
pub struct Ui {
    /// Draw bars at all.
    pub bars: bool,
    /// Use colors.
    pub color: bool,
    /// Print informational messages on stderr.
    pub chatty: bool,
}

impl Ui {
    /// Decides from `--quiet`, whether stderr is a terminal and `NO_COLOR`.
    pub fn detect(quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Ui {
            bars: tty && !quiet,
            color: tty && !no_color,
            chatty: !quiet,
        }
    }

    fn target(&self) -> ProgressDrawTarget {
        if self.bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        }
    }

    /// A bar counting to `len` (or a spinner when `len` is 0).
    pub fn bar(&self, len: u64, prefix: &str) -> ProgressBar {
        let pb = if len == 0 {
            ProgressBar::with_draw_target(None, self.target())
        } else {
            ProgressBar::with_draw_target(Some(len), self.target())
        };
        pb.set_style(self.style(len == 0));
        pb.set_prefix(prefix.to_string());
        pb
    }

    /// A group of bars drawn together.
    pub fn multi(&self) -> MultiProgress {
        MultiProgress::with_draw_target(self.target())
    }

    /// The style for bars (`spinner` for unknown lengths).
    pub fn style(&self, spinner: bool) -> ProgressStyle {
        let template = match (spinner, self.color) {
            (true, _) => "{spinner} {prefix:>12} {elapsed:>4} {msg}",
            (false, true) => {
                "{prefix:>12} [{bar:30.cyan/blue}] {pos:>6}/{len:6} {elapsed:>4} {wide_msg}"
            }
            (false, false) => "{prefix:>12} [{bar:30}] {pos:>6}/{len:6} {elapsed:>4} {wide_msg}",
        };
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ")
    }

    /// Prints an informational line on stderr (suspending bars), unless quiet.
    pub fn note(&self, text: impl AsRef<str>) {
        if self.chatty {
            eprintln!("{}", text.as_ref());
        }
    }
}
