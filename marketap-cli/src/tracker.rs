//! Which lines are done: the items handed to delivery and not yet
//! finished, by their index in the item stream, each with its line; and
//! the checkpoint line, below which everything is done. Only items in
//! flight are held, so memory is bounded by the window, whatever the
//! input's length; the window also bounds how far delivery may run ahead
//! of the checkpoint, and so how many items a resume can send twice.

use std::collections::VecDeque;

/// The items in flight and the checkpoint they allow.
#[derive(Debug)]
pub struct Tracker {
    /// The item index of `pending`'s front.
    base: u64,
    /// Each pending item's line, and whether it is done.
    pending: VecDeque<(u64, bool)>,
    /// Every line before this one was read and handed over (an item, a
    /// written reject, or nothing).
    read_to: u64,
    /// Items held at most.
    window: usize,
}

impl Tracker {
    /// A tracker whose lines before `start_line` are done, holding at most
    /// `window` items.
    pub fn new(start_line: u64, window: usize) -> Self {
        Self {
            base: 0,
            pending: VecDeque::with_capacity(window),
            read_to: start_line,
            window,
        }
    }

    /// An item on `line` was handed to delivery (the next index).
    pub fn push(&mut self, line: u64) {
        self.pending.push_back((line, false));
        self.read_to = self.read_to.max(line + 1);
    }

    /// Every line before `line` was read and handed over.
    pub fn read_to(&mut self, line: u64) {
        self.read_to = self.read_to.max(line);
    }

    /// The `count` items from index `offset` are done.
    pub fn complete(&mut self, offset: u64, count: usize) {
        for index in offset..offset + count as u64 {
            if let Some(slot) = index
                .checked_sub(self.base)
                .and_then(|i| self.pending.get_mut(i as usize))
            {
                slot.1 = true;
            }
        }
        while self.pending.front().is_some_and(|(_, done)| *done) {
            self.pending.pop_front();
            self.base += 1;
        }
    }

    /// The line below which everything is done.
    pub fn checkpoint(&self) -> u64 {
        self.pending.front().map_or(self.read_to, |(line, _)| *line)
    }

    /// Whether the window is full: no more items until some are done.
    pub fn is_full(&self) -> bool {
        self.pending.len() >= self.window
    }

    /// Items handed over and not done.
    pub fn in_flight(&self) -> usize {
        self.pending.iter().filter(|(_, done)| !done).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_stops_at_the_lowest_item_not_done() {
        let mut tracker = Tracker::new(5, 4);
        assert_eq!(tracker.checkpoint(), 5);
        // Items on lines 5, 6, 8, 9 (line 7 was rejected).
        for line in [5, 6, 8, 9] {
            tracker.push(line);
        }
        assert!(tracker.is_full());
        assert_eq!(tracker.checkpoint(), 5);
        tracker.complete(2, 2); // a later request ends first
        assert_eq!(tracker.checkpoint(), 5);
        assert!(tracker.is_full());
        tracker.complete(0, 2);
        assert_eq!(tracker.checkpoint(), 10);
        assert!(!tracker.is_full());
        assert_eq!(tracker.in_flight(), 0);
        // Lines 10 and 11 were blank or rejected.
        tracker.read_to(12);
        assert_eq!(tracker.checkpoint(), 12);
        tracker.push(12);
        tracker.complete(4, 1);
        assert_eq!(tracker.checkpoint(), 13);
    }
}
