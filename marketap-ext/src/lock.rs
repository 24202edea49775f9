//! Locking that goes on after a panic. A panic while a
//! [`Mutex`] is held poisons it; every lock in this crate guards state that
//! is whole after each step (counters, vectors pushed to whole, maps of
//! plain values), so the next holder takes it as it is instead of
//! panicking in turn.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking it as it is if a panic poisoned it.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_taken_as_it_is() {
        let mutex = Mutex::new(vec![1]);
        let panicked = std::panic::catch_unwind(|| {
            let mut held = lock(&mutex);
            held.push(2);
            panic!("while holding the lock");
        });
        assert!(panicked.is_err() && mutex.is_poisoned());
        assert_eq!(*lock(&mutex), [1, 2]);
    }
}
