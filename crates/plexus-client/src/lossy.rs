//! A bounded channel sender that never blocks the connection task: when the reader is behind,
//! items are dropped and counted, and the count is delivered (as a "lagged" item) before the
//! next item that fits. A gap is therefore always visible to the reader, never silent.

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Items that can report a gap.
pub(crate) trait Lag: Sized {
    fn lagged(missed: u64) -> Self;

    /// How many events this item carries (a batch counts each of its events).
    fn weight(&self) -> u64 {
        1
    }
}

pub(crate) struct LossySender<T> {
    tx: mpsc::Sender<T>,
    missed: u64,
}

/// What happened to a sent item.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    Delivered,
    Dropped,
    /// The receiver is gone.
    Closed,
}

impl<T: Lag> LossySender<T> {
    pub(crate) fn new(tx: mpsc::Sender<T>) -> LossySender<T> {
        LossySender { tx, missed: 0 }
    }

    pub(crate) fn send(&mut self, item: T) -> Sent {
        if self.missed > 0 {
            // The notice goes right before the item that follows the gap: both, or else the
            // notice alone (counting this item as missed too) when only one slot is free.
            match self.tx.try_reserve_many(2) {
                Ok(mut permits) => {
                    let missed = std::mem::take(&mut self.missed);
                    if let Some(p) = permits.next() {
                        p.send(T::lagged(missed));
                    }
                    if let Some(p) = permits.next() {
                        p.send(item);
                    }
                    return Sent::Delivered;
                }
                Err(TrySendError::Closed(())) => return Sent::Closed,
                Err(TrySendError::Full(())) => {}
            }
            self.missed += item.weight();
            return match self.tx.try_reserve() {
                Ok(p) => {
                    p.send(T::lagged(std::mem::take(&mut self.missed)));
                    Sent::Dropped
                }
                Err(TrySendError::Full(())) => Sent::Dropped,
                Err(TrySendError::Closed(())) => Sent::Closed,
            };
        }
        match self.tx.try_send(item) {
            Ok(()) => Sent::Delivered,
            Err(TrySendError::Full(item)) => {
                self.missed += item.weight();
                Sent::Dropped
            }
            Err(TrySendError::Closed(_)) => Sent::Closed,
        }
    }

    /// Sends a final item if there is room (it may be lost to a full buffer; the channel closing
    /// right after tells the reader the same).
    pub(crate) fn send_last(&mut self, item: T) {
        let _ = self.tx.try_send(item);
    }

    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Item {
        N(u32),
        Lagged(u64),
    }

    impl Lag for Item {
        fn lagged(missed: u64) -> Item {
            Item::Lagged(missed)
        }
    }

    #[test]
    fn drops_are_counted_and_reported_before_the_next_item() {
        let (tx, mut rx) = mpsc::channel(3);
        let mut s = LossySender::new(tx);
        for n in 1..=3 {
            assert_eq!(s.send(Item::N(n)), Sent::Delivered);
        }
        assert_eq!(s.send(Item::N(4)), Sent::Dropped);
        assert_eq!(s.send(Item::N(5)), Sent::Dropped);
        assert_eq!(rx.try_recv().unwrap(), Item::N(1));
        assert_eq!(rx.try_recv().unwrap(), Item::N(2));
        // Two free slots: the notice, then the item.
        assert_eq!(s.send(Item::N(6)), Sent::Delivered);
        assert_eq!(rx.try_recv().unwrap(), Item::N(3));
        assert_eq!(rx.try_recv().unwrap(), Item::Lagged(2));
        assert_eq!(rx.try_recv().unwrap(), Item::N(6));
        assert_eq!(s.send(Item::N(7)), Sent::Delivered);
        assert_eq!(rx.try_recv().unwrap(), Item::N(7));
    }

    #[test]
    fn with_one_free_slot_the_notice_counts_the_item_too() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut s = LossySender::new(tx);
        assert_eq!(s.send(Item::N(1)), Sent::Delivered);
        assert_eq!(s.send(Item::N(2)), Sent::Dropped);
        assert_eq!(rx.try_recv().unwrap(), Item::N(1));
        assert_eq!(s.send(Item::N(3)), Sent::Dropped);
        assert_eq!(rx.try_recv().unwrap(), Item::Lagged(2));
        assert_eq!(s.send(Item::N(4)), Sent::Delivered);
        assert_eq!(rx.try_recv().unwrap(), Item::N(4));
    }

    #[test]
    fn a_dropped_receiver_is_reported() {
        let (tx, rx) = mpsc::channel(1);
        let mut s = LossySender::new(tx);
        drop(rx);
        assert!(s.is_closed());
        assert_eq!(s.send(Item::N(1)), Sent::Closed);
    }
}
