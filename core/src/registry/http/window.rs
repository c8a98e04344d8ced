//! The per-host cap of small requests (manifest `HEAD`s and `GET`s, blob `HEAD`s, tag lists,
//! small blobs), widened where the registry is far away.
//!
//! Small requests are bound by round trips, not bandwidth: with `n` of them in flight and a
//! round trip of `rtt`, a registry sees `n / rtt` of them a second (Little's law). What a
//! registry minds is that rate, not the count in flight: 32 in flight at 1 ms is 32 000 requests
//! a second, at 50 ms only 640, and a 10 000-tag repository's manifests then take 16 s to ask
//! about. So the cap is the configured one while the round trip is at most
//! [`SHORT_ROUND_TRIP`], and beyond that grows with it (never asking for more than the
//! configured cap would at that round trip: 6 400 requests a second at the default 32), up to
//! [`GROWTH`] times the configured cap.
//!
//! The round trip is the fastest answer to a manifest or blob `HEAD` yet (time to its response
//! headers),
//! first taken once a full window of them has been answered: every answer takes at least one
//! round trip, while a busy registry's answers take longer, and the first of a burst can be
//! slow for reasons of its own (a new connection, a machine busy for a moment); the fastest of
//! a window of them is the link. Later answers can only lower it, so a widened window cannot
//! justify itself by the queue it builds. Round trips shorter than [`FAR`] keep the configured
//! cap whatever they are: a registry on the same site gains nothing from more requests in
//! flight. Nor does one next door on a machine so busy that its answers take as long as a far
//! one's: there the round trip grows with the window (the time is queueing, not distance), so
//! a window whose first answers (as many as the configured cap) to requests sent once it was
//! widened were none faster than [`SLOWER`] times the round trip it was widened for goes back
//! to the configured cap, for good.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The configured cap is the rate of requests a registry gets at this round trip: beyond
/// [`FAR`], the cap grows in proportion to the round trip.
pub(crate) const SHORT_ROUND_TRIP: Duration = Duration::from_millis(5);
/// Round trips shorter than this keep the configured cap.
pub(crate) const FAR: Duration = Duration::from_millis(20);
/// A widened window whose answers all take this many times the round trip it was widened for
/// did not meet a long link but a queue.
pub(crate) const SLOWER: u32 = 2;
/// The cap grows to at most this many times the configured one (256 at the default 32, reached
/// at a 40 ms round trip). HTTP/1.1 carries one request per connection at a time, so this is
/// also how many connections the registry sees from one client, and how many file descriptors
/// they take; 256 over a 50 ms link asks about 5 000 manifests a second.
pub(crate) const GROWTH: usize = 8;

/// A semaphore whose size follows the registry's round trip.
#[derive(Debug)]
pub(crate) struct Window {
    permits: Arc<Semaphore>,
    /// The configured cap: the size while round trips are short.
    base: usize,
    sized: Mutex<Sized>,
}

#[derive(Debug)]
struct Sized {
    /// Permits in existence (held or free).
    size: usize,
    /// The size the round trip calls for; permits beyond it are forgotten as they come back.
    wanted: usize,
    /// The fastest answer yet.
    fastest: Option<Duration>,
    /// Answers seen; the window is resized once there are `base` of them.
    answers: usize,
    /// When the window was widened, and for what round trip.
    widened: Option<(Instant, Duration)>,
    /// The fastest answer to a request sent since then, and how many there were.
    since_widened: (Option<Duration>, usize),
    /// Widening did not pay: the configured cap stands.
    queued: bool,
}

impl Window {
    /// A window of `base` slots (at least 1) until round trips are measured.
    pub(crate) fn new(base: usize) -> Window {
        let base = base.max(1);
        Window {
            permits: Arc::new(Semaphore::new(base)),
            base,
            sized: Mutex::new(Sized {
                size: base,
                wanted: base,
                fastest: None,
                answers: 0,
                widened: None,
                since_widened: (None, 0),
                queued: false,
            }),
        }
    }

    /// Wait for a free slot.
    pub(crate) async fn acquire(&self) -> OwnedSemaphorePermit {
        loop {
            let permit = Arc::clone(&self.permits)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let mut sized = self.sized();
            if sized.size <= sized.wanted {
                return permit;
            }
            // The window shrank while this slot was held: a slot handed on from one holder to
            // a waiter never passes through the free ones `observe` forgets.
            permit.forget();
            sized.size -= 1;
        }
    }

    /// Learn from one small request that took `took` to its response headers: resize to what
    /// the fastest answer yet calls for, once a window of them has been answered. Growing adds
    /// slots at once; shrinking forgets free ones, and held ones as they come back.
    pub(crate) fn observe(&self, took: Duration) {
        let mut sized = self.sized();
        let fastest = sized.fastest.map_or(took, |fastest| fastest.min(took));
        sized.fastest = Some(fastest);
        sized.answers = sized.answers.saturating_add(1);
        if sized.answers < self.base {
            return;
        }
        let sent = Instant::now().checked_sub(took);
        if let Some((at, rtt)) = sized.widened
            && !sized.queued
            && sent.is_some_and(|sent| sent >= at)
        {
            let (since, count) = sized.since_widened;
            let since = since.map_or(took, |since| since.min(took));
            sized.since_widened = (Some(since), count + 1);
            sized.queued = count + 1 >= self.base && since > rtt * SLOWER;
        }
        sized.wanted = if sized.queued {
            self.base
        } else {
            self.wanted(fastest)
        };
        if sized.wanted > self.base && sized.widened.is_none() {
            sized.widened = Some((Instant::now(), fastest));
        }
        if sized.wanted > sized.size {
            self.permits.add_permits(sized.wanted - sized.size);
            sized.size = sized.wanted;
        } else if sized.wanted < sized.size {
            sized.size -= self.permits.forget_permits(sized.size - sized.wanted);
        }
    }

    /// The size for a round trip of `rtt`: `base` below [`FAR`], else `base` per
    /// [`SHORT_ROUND_TRIP`] of it, up to `GROWTH * base`.
    fn wanted(&self, rtt: Duration) -> usize {
        if rtt < FAR {
            return self.base;
        }
        let scaled = self.base as u128 * rtt.as_micros() / SHORT_ROUND_TRIP.as_micros();
        usize::try_from(scaled)
            .unwrap_or(usize::MAX)
            .clamp(self.base, self.base.saturating_mul(GROWTH))
    }

    fn sized(&self) -> std::sync::MutexGuard<'_, Sized> {
        self.sized.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Slots in existence now (held or free).
    #[cfg(test)]
    fn size(&self) -> usize {
        self.sized().size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A window of `base` that has seen a full window of answers taking `rtt`.
    fn measured(base: usize, rtt: Duration) -> Window {
        let window = Window::new(base);
        for _ in 0..base {
            window.observe(rtt);
        }
        window
    }

    #[test]
    fn short_round_trips_keep_the_configured_cap() {
        for rtt in [ms(19), ms(5), ms(0)] {
            assert_eq!(measured(32, rtt).size(), 32, "{rtt:?}");
        }
    }

    #[test]
    fn long_round_trips_grow_it_in_proportion_up_to_the_bound() {
        assert_eq!(measured(32, ms(20)).size(), 128);
        assert_eq!(measured(32, ms(25)).size(), 160);
        assert_eq!(measured(32, ms(50)).size(), 256);
        assert_eq!(measured(32, Duration::from_secs(3600)).size(), 256);
        assert_eq!(measured(32, ms(50)).permits.available_permits(), 256);
    }

    #[test]
    fn it_is_resized_once_a_full_window_has_been_answered() {
        let window = Window::new(32);
        // A slow first answer (say, a busy moment) decides nothing alone.
        window.observe(ms(50));
        for _ in 1..31 {
            window.observe(ms(60));
        }
        assert_eq!(window.size(), 32);
        window.observe(ms(2));
        assert_eq!(window.size(), 32);
        let window = Window::new(32);
        for _ in 0..32 {
            window.observe(ms(50));
        }
        assert_eq!(window.size(), 256);
    }

    #[test]
    fn a_window_whose_answers_slow_down_with_it_goes_back_for_good() {
        let window = measured(4, ms(40));
        assert_eq!(window.size(), 32);
        // An answer to a request sent before the window widened says nothing about it.
        window.observe(ms(500));
        std::thread::sleep(ms(100));
        for _ in 0..3 {
            window.observe(ms(81));
        }
        assert_eq!(window.size(), 32, "not a full window of answers yet");
        window.observe(ms(81));
        assert_eq!(window.size(), 4, "never faster than twice the round trip");
        window.observe(ms(50));
        assert_eq!(window.size(), 4);

        let window = measured(4, ms(40));
        std::thread::sleep(ms(100));
        for _ in 0..3 {
            window.observe(ms(81));
        }
        window.observe(ms(79));
        assert_eq!(
            window.size(),
            32,
            "one answer within twice the round trip: a long link"
        );
    }

    #[tokio::test]
    async fn a_faster_answer_shrinks_it_as_slots_come_back() {
        let window = Arc::new(measured(4, ms(40)));
        assert_eq!(window.size(), 32);
        let held: Vec<_> = futures::future::join_all((0..30).map(|_| window.acquire())).await;
        // A faster answer: only the free slots can go at once, the held ones as they come
        // back, even when handed to a waiter.
        window.observe(ms(1));
        assert_eq!(window.size(), 30);
        let waiter = tokio::spawn({
            let window = Arc::clone(&window);
            async move { drop(window.acquire().await) }
        });
        drop(held);
        waiter.await.unwrap();
        assert_eq!(window.size(), 4);
        assert_eq!(window.permits.available_permits(), 4);
    }
}
