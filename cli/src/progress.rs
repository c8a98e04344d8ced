//! Live progress of a sync on a terminal: a tag bar, a byte bar, and one line per finished tag.
//! Drawn on stderr, and only when both stdout and stderr are terminals, so pipes, redirected
//! output and logs stay clean.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use regmirror::Digest;
use regmirror::engine::{Progress, ProgressEvent, TagStatus};

use crate::output::escaped;

/// The bars of one run.
#[derive(Debug, Clone)]
pub struct TtyProgress {
    multi: MultiProgress,
    tags: ProgressBar,
    bytes: ProgressBar,
    /// Bytes reported so far per blob, to turn "done of this blob" into increments.
    blobs: Arc<Mutex<HashMap<Digest, u64>>>,
    /// Tags whose copy has started (they are staged together, so a count says more than a name).
    started: Arc<AtomicUsize>,
}

impl TtyProgress {
    /// Bars on stderr if `wanted` and both stdout and stderr are terminals; `None` otherwise.
    pub fn start(wanted: bool) -> Option<TtyProgress> {
        if !wanted || !std::io::stderr().is_terminal() || !std::io::stdout().is_terminal() {
            return None;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let tags = multi.add(
            ProgressBar::no_length().with_style(
                ProgressStyle::with_template("{spinner} tags  {pos}/{len} {wide_msg}")
                    .expect("a valid template"),
            ),
        );
        tags.set_message("listing and planning");
        tags.enable_steady_tick(Duration::from_millis(120));
        let bytes = multi.add(
            ProgressBar::new(0).with_style(
                ProgressStyle::with_template(
                    "  bytes {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .expect("a valid template"),
            ),
        );
        Some(TtyProgress {
            multi,
            tags,
            bytes,
            blobs: Arc::default(),
            started: Arc::default(),
        })
    }

    /// The engine-side callback that drives the bars.
    pub fn sink(&self) -> Progress {
        let me = self.clone();
        Progress::new(move |event| me.on(event))
    }

    fn on(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::Planned { selected, to_copy } => {
                self.tags.set_length(selected as u64);
                self.tags
                    .set_message(format!("{to_copy} to copy, {} current", selected - to_copy));
            }
            ProgressEvent::TagStarted { .. } => {
                let n = self.started.fetch_add(1, Ordering::Relaxed) + 1;
                self.tags.set_message(format!("copying {n} tags"));
            }
            ProgressEvent::TagFinished {
                tag, status, error, ..
            } => {
                self.tags.inc(1);
                let tag = escaped(&tag);
                let line = match status {
                    TagStatus::Synced => format!("  synced   {tag}"),
                    TagStatus::Failed => format!(
                        "  FAILED   {tag}: {}",
                        escaped(error.as_deref().unwrap_or("unknown error"))
                    ),
                    TagStatus::Skipped => format!("  skipped  {tag} (platform filter)"),
                    // Current tags are the quiet majority of a routine run.
                    TagStatus::Current => return,
                };
                // Printing above the bars fails only if stderr is gone; nothing to do then.
                let _ = self.multi.println(line);
            }
            ProgressEvent::BlobBytes {
                digest,
                done,
                total,
            } => {
                let mut blobs = self.blobs.lock().unwrap_or_else(|e| e.into_inner());
                let before = match blobs.get(&digest) {
                    Some(before) => *before,
                    None => {
                        self.bytes.inc_length(total);
                        0
                    }
                };
                // A retried blob starts over; count only progress beyond the best so far.
                if done > before {
                    self.bytes.inc(done - before);
                    blobs.insert(digest, done);
                }
            }
            _ => {}
        }
    }

    /// Remove the bars (the summary follows).
    pub fn finish(&self) {
        self.tags.finish_and_clear();
        self.bytes.finish_and_clear();
        let _ = self.multi.clear();
    }
}
