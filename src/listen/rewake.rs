//! A connection that wakes itself while it is polled is polled again at
//! once, instead of through the scheduler.
//!
//! Why: hyper's HTTP/1 request body is a channel whose sender registers
//! the connection's waker, and the handler taking the body wakes that
//! waker, though the sender is gone by then (the body was whole in the
//! first read). The connection is its own handler's task, so every request
//! with a body woke its task during its own poll, and tokio put it at the
//! back of the run queue and polled the whole connection again through the
//! scheduler, for nothing: about 280 of a single-row infer hit's 16,250
//! server instructions (the wrapper costs a KV GET hit, which has no body,
//! about 70). Here the wake only marks the poll, which runs again right
//! away (ARCHITECTURE.md §1, "The hot path"). Wakes from elsewhere, or
//! after the poll, reach the task as before; a connection that keeps waking
//! itself (hyper yielding after many pipelined requests, tokio's budget)
//! goes back to the scheduler after [`AGAIN`] polls.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    task::{Context, Poll, Wake, Waker},
};

use futures::task::AtomicWaker;

/// Polls in a row before a self-wake goes to the scheduler.
const AGAIN: usize = 2;

const IDLE: u8 = 0;
const POLLING: u8 = 1;
const WOKEN: u8 = 2;

/// The waker handed to the connection.
struct Marker {
    /// [`IDLE`], [`POLLING`] or [`WOKEN`] (during the poll).
    state: AtomicU8,
    /// The task's own waker, for wakes outside a poll.
    task: AtomicWaker,
}

impl Wake for Marker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let marked =
            self.state
                .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire);
        // Already marked: the poll runs again anyway.
        if marked == Err(IDLE) {
            self.task.wake();
        }
    }
}

pin_project_lite::pin_project! {
    /// `F`, polled again at once when it woke itself while polled.
    pub(super) struct Rewake<F> {
        #[pin]
        inner: F,
        marker: Arc<Marker>,
        waker: Waker,
    }
}

impl<F> Rewake<F> {
    pub(super) fn new(inner: F) -> Rewake<F> {
        let marker = Arc::new(Marker {
            state: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        Rewake {
            inner,
            waker: Waker::from(marker.clone()),
            marker,
        }
    }

    pub(super) fn inner(self: Pin<&mut Self>) -> Pin<&mut F> {
        self.project().inner
    }
}

impl<F: Future> Future for Rewake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        this.marker.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(this.waker);
        for _ in 0..AGAIN {
            this.marker.state.store(POLLING, Ordering::Release);
            let poll = this.inner.as_mut().poll(&mut inner_cx);
            let state = this.marker.state.swap(IDLE, Ordering::AcqRel);
            if poll.is_ready() || state != WOKEN {
                return poll;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts its wakes.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A task that counts its wakes, and its waker.
    fn counted() -> (Arc<Count>, Waker) {
        let task = Arc::new(Count(AtomicUsize::new(0)));
        (task.clone(), Waker::from(task))
    }

    #[test]
    fn a_self_wake_polls_again_and_other_wakes_reach_the_task() {
        let (task, task_waker) = counted();
        let mut cx = Context::from_waker(&task_waker);
        let polls = AtomicUsize::new(0);
        let saved = std::sync::Mutex::new(None);
        // Wakes itself on its first poll, is ready on its second; then
        // stays pending and keeps its waker.
        let mut future = std::pin::pin!(Rewake::new(std::future::poll_fn(|cx| {
            let n = polls.fetch_add(1, Ordering::Relaxed);
            *saved.lock().unwrap() = Some(cx.waker().clone());
            match n {
                0 => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                1 => Poll::Ready(()),
                _ => Poll::Pending,
            }
        })));
        assert_eq!(future.as_mut().poll(&mut cx), Poll::Ready(()));
        assert_eq!(polls.load(Ordering::Relaxed), 2, "polled again at once");
        assert_eq!(task.0.load(Ordering::Relaxed), 0, "the task not woken");

        // A wake after the poll reaches the task.
        assert_eq!(future.as_mut().poll(&mut cx), Poll::Pending);
        saved.lock().unwrap().take().unwrap().wake();
        assert_eq!(task.0.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_future_that_keeps_waking_itself_goes_back_to_the_scheduler() {
        let (task, task_waker) = counted();
        let mut cx = Context::from_waker(&task_waker);
        let polls = AtomicUsize::new(0);
        let mut future = std::pin::pin!(Rewake::new(std::future::poll_fn(|cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            cx.waker().wake_by_ref();
            Poll::<()>::Pending
        })));
        assert_eq!(future.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(polls.load(Ordering::Relaxed), AGAIN);
        assert_eq!(
            task.0.load(Ordering::Relaxed),
            1,
            "woken once, by the wrapper"
        );
    }
}
