//! One tokio timer per connection and kind of deadline, moved on from one deadline to the next.
//!
//! A tokio timer that is waited for is filed in the runtime's timer wheel, and taken out again when it is
//! dropped: a lock and a list update each time, for every request if every request had timers of its own. A
//! connection's deadlines of one kind come one after another, each later than the one before (the next
//! request's headers, the next request's time limit), and moving a filed timer to a later deadline is one
//! atomic update (see `Sleep::reset`): the timer stays where it is filed until that moment comes, and is then
//! filed again for its new deadline. So a connection keeps one timer per kind of deadline in a [`TimerSlot`],
//! and each [`Deadline`] borrows it while it is waited for.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

type Timer = Pin<Box<Sleep>>;

/// Where a connection keeps its timer of one kind between deadlines. Clones share it.
#[derive(Clone, Default)]
pub struct TimerSlot(Arc<Mutex<Option<Timer>>>);

impl TimerSlot {
    /// A deadline at `at`, waited for with this slot's timer.
    pub fn deadline(&self, at: Instant) -> Deadline {
        Deadline { at, slot: self.clone(), timer: None }
    }

    fn take(&self) -> Option<Timer> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Keeps `timer` for the next deadline, unless the slot has one already (deadlines that overlapped).
    fn put_back(&self, timer: Timer) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(timer);
        }
    }

    /// The timer the slot holds, to tell timers apart.
    #[cfg(test)]
    pub(crate) fn held(&self) -> Option<*const Sleep> {
        self.0.lock().expect("slot").as_ref().map(|t| &**t as *const Sleep)
    }
}

/// A future that completes at `at`. Its first poll takes the slot's timer (or makes one, when the slot is
/// empty: another deadline of the slot holds it) and moves it to `at`; dropping it gives the timer back.
pub struct Deadline {
    at: Instant,
    slot: TimerSlot,
    timer: Option<Timer>,
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let at = this.at;
        let timer = this
            .timer
            .get_or_insert_with(|| this.slot.take().unwrap_or_else(|| Box::pin(tokio::time::sleep_until(at))));
        if timer.deadline() != at {
            timer.as_mut().reset(at);
        }
        timer.as_mut().poll(cx)
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            self.slot.put_back(timer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn elapsed(deadline: &mut Deadline) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(deadline).poll(&mut cx).is_ready()
    }

    fn in_secs(s: f64) -> Instant {
        Instant::now() + Duration::from_secs_f64(s)
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_one_after_another_move_one_timer_on() {
        let slot = TimerSlot::default();
        assert_eq!(slot.held(), None, "no timer before a deadline is waited for");
        let mut first = slot.deadline(in_secs(10.0));
        assert!(!elapsed(&mut first));
        assert_eq!(slot.held(), None, "the waiting deadline holds the timer");
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!elapsed(&mut first));
        drop(first);
        let one = slot.held().expect("given back");
        let mut second = slot.deadline(in_secs(10.0));
        assert!(!elapsed(&mut second));
        drop(second);
        assert_eq!(slot.held(), Some(one), "the same tokio timer, moved on");
        // The first deadline (10 s after it was set) passes; the third, set now, has 10 s to go.
        let mut third = slot.deadline(in_secs(10.0));
        assert!(!elapsed(&mut third));
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(!elapsed(&mut third), "a timer moved on does not fire at its first deadline");
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(elapsed(&mut third));
        drop(third);
        // A fired timer is filed again for the next deadline.
        let mut fourth = slot.deadline(in_secs(1.0));
        assert!(!elapsed(&mut fourth));
        tokio::time::advance(Duration::from_millis(1_100)).await;
        assert!(elapsed(&mut fourth));
    }

    #[tokio::test(start_paused = true)]
    async fn overlapping_deadlines_of_one_slot_each_fire_at_their_own_time() {
        let slot = TimerSlot::default();
        let mut later = slot.deadline(in_secs(5.0));
        let mut sooner = slot.deadline(in_secs(1.0));
        assert!(!elapsed(&mut later) && !elapsed(&mut sooner));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(elapsed(&mut sooner));
        assert!(!elapsed(&mut later), "the timer of the one is not moved by the other");
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(elapsed(&mut later));
        drop(sooner);
        let kept = slot.held().expect("one given back");
        drop(later);
        assert_eq!(slot.held(), Some(kept), "the slot keeps one timer, the other is dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_moves_the_timer_back() {
        let slot = TimerSlot::default();
        let mut far = slot.deadline(in_secs(30.0));
        assert!(!elapsed(&mut far));
        drop(far);
        let mut near = slot.deadline(in_secs(1.0));
        assert!(!elapsed(&mut near));
        tokio::time::advance(Duration::from_millis(1_100)).await;
        assert!(elapsed(&mut near));
    }

    #[tokio::test(start_paused = true)]
    async fn slots_have_timers_of_their_own() {
        let (a, b) = (TimerSlot::default(), TimerSlot::default());
        let mut soon = a.deadline(in_secs(1.0));
        let mut later = b.deadline(in_secs(5.0));
        assert!(!elapsed(&mut soon) && !elapsed(&mut later));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(elapsed(&mut soon));
        assert!(!elapsed(&mut later));
    }
}
