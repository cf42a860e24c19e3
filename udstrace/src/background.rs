//! A value computed on a thread of its own and waited for where it is first needed: the start's
//! long reads (`/proc/kallsyms`, aya's parse of the kernel's BTF) run while it does the rest.

use std::{
    sync::{Mutex, OnceLock, PoisonError},
    thread::JoinHandle,
};

/// The value `T` a thread is computing (see the module).
pub(crate) struct Background<T> {
    thread: Mutex<Option<JoinHandle<T>>>,
    value: OnceLock<T>,
}

impl<T: Send + 'static> Background<T> {
    /// Starts `work` on a thread of its own.
    #[must_use]
    pub(crate) fn start(work: impl FnOnce() -> T + Send + 'static) -> Self {
        Self {
            thread: Mutex::new(Some(std::thread::spawn(work))),
            value: OnceLock::new(),
        }
    }

    /// Whether the thread is still at work.
    pub(crate) fn running(&self) -> bool {
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Whether the value was already waited for.
    pub(crate) fn ready(&self) -> bool {
        self.value.get().is_some()
    }

    /// The value, once the thread is done; `failed()` if the thread panicked.
    pub(crate) fn get(&self, failed: impl FnOnce() -> T) -> &T {
        self.value.get_or_init(|| {
            let thread = self
                .thread
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            thread.and_then(|t| t.join().ok()).unwrap_or_else(failed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Background;

    #[test]
    fn waits_once_and_keeps_the_value() {
        let b = Background::start(|| 6 * 7);
        assert_eq!(*b.get(|| 0), 42);
        assert!(b.ready() && !b.running());
        assert_eq!(*b.get(|| 0), 42);
    }

    #[test]
    fn a_thread_that_panicked_gives_the_fallback() {
        let b: Background<u32> = Background::start(|| panic!("on purpose"));
        assert_eq!(*b.get(|| 7), 7);
    }
}
