//! The threads a model computes on, at a lower OS scheduling priority
//! (ARCHITECTURE.md, "Inference threads").
//!
//! A model run can keep every core busy for as long as its queue is full;
//! cache hits and the rest of the HTTP side must not wait behind it. So
//! every thread that computes for a model runs at the model's `nice`: the
//! model's own run threads here (one per instance, they call the session's
//! run and take part in its parallel sections), and ONNX Runtime's
//! intra-op pool threads, which the backend creates through [`spawn`].
//! The HTTP side (tokio's workers, the blocking pool) keeps the server's
//! priority, so when both want a core, the scheduler gives it to them
//! first; when they do not, the model gets all of it.
//!
//! A priority can only be lowered without privileges, never raised back,
//! so these threads are the model's alone and never run anything else.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{mpsc, Arc},
    thread,
};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Work for a run thread; it answers through its own channel.
type Task = Box<dyn FnOnce() + Send>;

/// Spawn an OS thread named `name` that runs `work` at `nice` below the
/// server's priority.
pub(crate) fn spawn(
    name: String,
    nice: u8,
    work: impl FnOnce() + Send + 'static,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name(name).spawn(move || {
        lower_priority(nice);
        work();
    })
}

/// Lower the calling thread's priority to `nice` below the server's (the
/// main thread's, so a thread created by a lowered one is not lowered
/// twice), at most to the lowest priority. Linux only: nice is per thread
/// there. Nothing to do at 0; a refusal is logged, not fatal.
fn lower_priority(nice: u8) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on this process's and this thread's
        // own ids.
        let done = unsafe {
            let server = libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t);
            let target = (server + libc::c_int::from(nice)).min(19);
            libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, target)
        };
        if done != 0 {
            tracing::warn!(
                "cannot lower an inference thread's priority by {nice}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// A model's run threads: `count` threads `nice` below the server's
/// priority, taking runs from one queue. The batcher starts at most
/// `count` runs at once (one per instance slot), so a free thread is always
/// waiting; the queue only hands work over. Dropping it ends the threads
/// once they are idle.
pub(crate) struct RunThreads {
    tx: mpsc::SyncSender<Task>,
}

impl RunThreads {
    pub(crate) fn spawn(model: &str, count: usize, nice: u8) -> Result<RunThreads> {
        let count = count.max(1);
        let (tx, rx) = mpsc::sync_channel::<Task>(count);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..count {
            let rx = rx.clone();
            spawn(format!("run-{model}-{i}"), nice, move || loop {
                // The lock is released before the task runs.
                let task = rx.lock().recv();
                match task {
                    Ok(task) => task(),
                    Err(_) => break,
                }
            })
            .map_err(|e| {
                Error::Unavailable(format!("cannot start a thread for model `{model}`: {e}"))
            })?;
        }
        Ok(RunThreads { tx })
    }

    /// Run `work` on one of the threads and wait for its result; a panic
    /// in `work` becomes [`Error::Compute`].
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let task: Task = Box::new(move || {
            let _ = reply.send(catch_unwind(AssertUnwindSafe(work)));
        });
        self.tx
            .try_send(task)
            .map_err(|_| Error::Compute("no run thread is free".into()))?;
        match answer.await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(_)) => Err(Error::Compute("the model run panicked".into())),
            Err(_) => Err(Error::Compute("a run thread ended".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The niceness of thread `tid` (the server's: the process id).
    #[cfg(target_os = "linux")]
    fn nice_of(tid: libc::pid_t) -> i32 {
        // SAFETY: a plain system call on this process's own ids.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) }
    }

    #[cfg(target_os = "linux")]
    fn own_nice() -> i32 {
        // SAFETY: the calling thread's own id.
        nice_of(unsafe { libc::gettid() })
    }

    #[tokio::test]
    async fn work_runs_at_the_lower_priority_and_panics_become_errors() {
        let threads = RunThreads::spawn("t", 2, 7).unwrap();
        #[cfg(target_os = "linux")]
        {
            let (server, caller) = (nice_of(std::process::id() as libc::pid_t), own_nice());
            let nice = threads.run(own_nice).await.unwrap();
            assert_eq!(nice, (server + 7).min(19), "the server is at {server}");
            assert_eq!(own_nice(), caller, "the caller's priority is untouched");
        }
        assert_eq!(threads.run(|| 6 * 7).await.unwrap(), 42);
        let e = threads.run(|| panic!("boom")).await.unwrap_err();
        assert!(matches!(e, Error::Compute(_)), "{e}");
        assert_eq!(
            threads.run(|| 1).await.unwrap(),
            1,
            "a panic ends no thread"
        );
    }
}
