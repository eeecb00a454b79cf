//! Durable messages (`mail` pushes): the [`Mail`] values the application handles, the
//! [`Mailbox`] stream that yields them, and the bookkeeping that turns "handled" into cumulative
//! `ack {seq}` requests.
//!
//! The server's rules (`docs/protocol.md` section 4.7): a connection receives the user's
//! unacknowledged backlog in `seq` order right after authenticating, then live messages; `ack`
//! covers every `seq` up to the one given; whatever is not acknowledged comes again on the next
//! connection. So the client acknowledges `seq` only once every message it received with a lower
//! `seq` was handled, and it recognises a redelivered message it already handed out (same `seq`
//! and `sent_ms`) instead of handing it out twice.

use crate::config::MailAck;
use futures_util::Stream;
use plexus_protocol::Payload;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// What became of a [`Mail`] the application had: identified across connections by its `seq`
/// and when it was sent (a user's inbox that expired starts again at `seq` 1, with other send
/// times).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MailDone {
    pub seq: u64,
    pub sent_ms: u64,
    /// Handled (to acknowledge), or let go unhandled (to deliver again on the next connection).
    pub handled: bool,
}

/// A durable message for this client's user.
///
/// Handle it, then let it go: with [`MailAck::OnDrop`] (the default) dropping it after it was
/// read from the [`Mailbox`] marks it handled, and the client acknowledges it (once every
/// earlier message is handled too). [`Mail::ack`] does the same explicitly;
/// [`Mail::leave_unacknowledged`] keeps it on the server, to be delivered again on the next
/// connection.
pub struct Mail {
    /// The user's sequence number of the message: +1 per message of the user's inbox.
    pub seq: u64,
    pub payload: Payload,
    /// When it was sent, in Unix milliseconds.
    pub sent_ms: u64,
    done: Option<mpsc::UnboundedSender<MailDone>>,
    auto: bool,
    /// Set once the application received it: unread mail dropped with the stream is not
    /// handled.
    armed: bool,
}

impl Mail {
    pub(crate) fn new(
        seq: u64,
        payload: Payload,
        sent_ms: u64,
        done: mpsc::UnboundedSender<MailDone>,
        mode: MailAck,
    ) -> Mail {
        Mail {
            seq,
            payload,
            sent_ms,
            done: Some(done),
            auto: mode == MailAck::OnDrop,
            armed: false,
        }
    }

    /// Marks the message handled: the client acknowledges it as soon as every earlier message
    /// is handled too.
    pub fn ack(mut self) {
        self.finish(true);
    }

    /// Does not acknowledge the message: it stays in the user's inbox and is delivered again
    /// on the next connection — and so, acknowledgements being cumulative, is every later one.
    pub fn leave_unacknowledged(mut self) {
        self.finish(false);
    }

    /// Forgets the message: it never reached the application, and the driver knows it.
    pub(crate) fn defuse(mut self) {
        self.done = None;
    }

    fn finish(&mut self, handled: bool) {
        if let Some(done) = self.done.take() {
            // The client may have stopped; then nothing is acknowledged, and the server
            // delivers the message again.
            let _ = done.send(MailDone {
                seq: self.seq,
                sent_ms: self.sent_ms,
                handled,
            });
        }
    }
}

impl Drop for Mail {
    fn drop(&mut self) {
        // Unread (the mailbox was dropped), dropped in explicit mode, or dropped by a panic:
        // not handled, so delivered again on the next connection.
        let handled = self.auto && self.armed && !std::thread::panicking();
        self.finish(handled);
    }
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("seq", &self.seq)
            .field("payload", &self.payload)
            .field("sent_ms", &self.sent_ms)
            .finish()
    }
}

/// The stream of durable messages, from [`crate::Client::mail`].
///
/// It holds at most [`crate::ClientConfig::mail_buffer`] unread messages; what does not fit is
/// neither delivered nor acknowledged, and comes again on the next connection. It ends when the
/// client stops.
pub struct Mailbox {
    rx: mpsc::Receiver<Mail>,
}

impl Mailbox {
    pub(crate) fn new(rx: mpsc::Receiver<Mail>) -> Mailbox {
        Mailbox { rx }
    }

    /// The next durable message, in `seq` order.
    pub async fn next(&mut self) -> Option<Mail> {
        futures_util::StreamExt::next(self).await
    }
}

impl Stream for Mailbox {
    type Item = Mail;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Mail>> {
        self.rx.poll_recv(cx).map(|mail| {
            mail.map(|mut mail| {
                mail.armed = true;
                mail
            })
        })
    }
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox").finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    sent_ms: u64,
    /// Handed to the application (not lost to a full buffer).
    delivered: bool,
    handled: bool,
}

/// What to do with an arriving `mail` push.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// Hand it to the application.
    Deliver,
    /// The application has (or had) it already.
    Known,
}

/// The driver's record of durable messages, between arrival and acknowledgement.
#[derive(Debug)]
pub(crate) struct MailTracker {
    /// This connection's messages that no confirmed `ack` covers yet, by `seq`.
    open: BTreeMap<u64, Slot>,
    /// The highest `seq` the server confirmed acknowledged on this connection.
    confirmed: u64,
    /// The highest `seq` of an `ack` sent on this connection (answered or not).
    sent: u64,
    /// Messages of earlier connections that were not acknowledged: the server sends them
    /// again, and they must not reach the application twice.
    carried: BTreeMap<u64, Slot>,
    max_carried: usize,
}

impl MailTracker {
    pub(crate) fn new(max_carried: usize) -> MailTracker {
        MailTracker {
            open: BTreeMap::new(),
            confirmed: 0,
            sent: 0,
            carried: BTreeMap::new(),
            max_carried,
        }
    }

    pub(crate) fn arrive(&mut self, seq: u64, sent_ms: u64) -> Arrival {
        if seq <= self.confirmed || self.open.contains_key(&seq) {
            return Arrival::Known; // the server never does this; be safe all the same
        }
        // The backlog comes in `seq` order: a carried message below this one that has not come
        // again was acknowledged (or expired) meanwhile.
        let above = self.carried.split_off(&(seq + 1));
        let earlier = std::mem::replace(&mut self.carried, above);
        match earlier.get(&seq) {
            Some(slot) if slot.sent_ms == sent_ms && slot.delivered => {
                self.open.insert(seq, *slot);
                Arrival::Known
            }
            _ => {
                let slot = Slot {
                    sent_ms,
                    delivered: true,
                    handled: false,
                };
                self.open.insert(seq, slot);
                Arrival::Deliver
            }
        }
    }

    /// The message could not be handed to the application (full buffer, no reader).
    pub(crate) fn undelivered(&mut self, seq: u64) {
        if let Some(slot) = self.open.get_mut(&seq) {
            slot.delivered = false;
        }
    }

    /// The application is done with a message: it handled it, or let it go unhandled (then
    /// the next connection hands it out again).
    pub(crate) fn finished(&mut self, done: MailDone) {
        for slots in [&mut self.open, &mut self.carried] {
            if let Some(slot) = slots.get_mut(&done.seq)
                && slot.sent_ms == done.sent_ms
            {
                if done.handled {
                    slot.handled = true;
                } else {
                    slot.delivered = false;
                }
                return;
            }
        }
    }

    /// The `seq` to acknowledge now, if any: the highest one with every open message up to it
    /// handled, above what was already sent.
    pub(crate) fn ack_due(&self) -> Option<u64> {
        let mut due = None;
        for (&seq, slot) in &self.open {
            if !slot.handled {
                break;
            }
            due = Some(seq);
        }
        due.filter(|&seq| seq > self.sent)
    }

    pub(crate) fn ack_sent(&mut self, seq: u64) {
        self.sent = self.sent.max(seq);
    }

    /// The server answered the `ack` of `seq`. On an error the messages stay open, and are
    /// acknowledged with the next handled one (or delivered again on the next connection).
    pub(crate) fn ack_answered(&mut self, seq: u64, ok: bool) {
        if ok {
            self.confirmed = self.confirmed.max(seq);
            self.open = self.open.split_off(&(self.confirmed + 1));
        } else if self.sent == seq {
            self.sent = self.confirmed;
        }
    }

    /// The connection ended: what it did not get acknowledged comes again on the next one.
    pub(crate) fn connection_ended(&mut self) {
        self.sent = 0;
        self.confirmed = 0;
        self.carried.append(&mut self.open);
        while self.carried.len() > self.max_carried {
            self.carried.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(seq: u64, sent_ms: u64) -> MailDone {
        MailDone {
            seq,
            sent_ms,
            handled: true,
        }
    }

    #[test]
    fn a_message_let_go_unhandled_comes_again_and_holds_later_acks_back() {
        let mut t = MailTracker::new(16);
        assert_eq!(t.arrive(1, 10), Arrival::Deliver);
        assert_eq!(t.arrive(2, 20), Arrival::Deliver);
        t.finished(MailDone {
            seq: 1,
            sent_ms: 10,
            handled: false,
        });
        t.finished(done(2, 20));
        assert_eq!(t.ack_due(), None, "1 was not handled");
        t.connection_ended();
        assert_eq!(t.arrive(1, 10), Arrival::Deliver, "handed out again");
        assert_eq!(t.arrive(2, 20), Arrival::Known);
        t.finished(done(1, 10));
        assert_eq!(t.ack_due(), Some(2));
    }

    #[test]
    fn an_ack_waits_for_every_earlier_message() {
        let mut t = MailTracker::new(16);
        for seq in 1..=3 {
            assert_eq!(t.arrive(seq, 100 + seq), Arrival::Deliver);
        }
        t.finished(done(2, 102));
        assert_eq!(t.ack_due(), None, "1 is not handled yet");
        t.finished(done(1, 101));
        assert_eq!(t.ack_due(), Some(2));
        t.ack_sent(2);
        assert_eq!(t.ack_due(), None, "sent already");
        t.finished(done(3, 103));
        assert_eq!(
            t.ack_due(),
            Some(3),
            "acks are cumulative: no need to wait for 2's answer"
        );
        t.ack_sent(3);
        t.ack_answered(2, true);
        t.ack_answered(3, false);
        assert_eq!(t.ack_due(), Some(3), "a failed ack is tried again");
        t.ack_sent(3);
        t.ack_answered(3, true);
        assert_eq!(t.ack_due(), None);
        assert!(t.open.is_empty());
    }

    #[test]
    fn redelivered_messages_are_not_handed_out_twice() {
        let mut t = MailTracker::new(16);
        assert_eq!(t.arrive(1, 10), Arrival::Deliver);
        assert_eq!(t.arrive(2, 20), Arrival::Deliver);
        assert_eq!(t.arrive(3, 30), Arrival::Deliver);
        t.undelivered(3); // the buffer was full
        t.finished(done(1, 10));
        t.ack_sent(1); // lost with the connection
        t.connection_ended();
        // The next connection's backlog: 1 (handled, ack lost), 2 (still with the app), 3.
        assert_eq!(t.arrive(1, 10), Arrival::Known);
        assert_eq!(t.ack_due(), Some(1), "handled before: acknowledged again");
        assert_eq!(t.arrive(2, 20), Arrival::Known);
        assert_eq!(
            t.arrive(3, 30),
            Arrival::Deliver,
            "it never reached the app"
        );
        t.finished(done(2, 20)); // the app finishes the mail of the earlier connection
        t.finished(done(3, 30));
        t.ack_sent(1);
        t.ack_answered(1, true);
        assert_eq!(t.ack_due(), Some(3));
    }

    #[test]
    fn a_new_inbox_with_the_same_seqs_is_delivered() {
        let mut t = MailTracker::new(16);
        assert_eq!(t.arrive(1, 10), Arrival::Deliver);
        assert_eq!(t.arrive(2, 20), Arrival::Deliver);
        t.connection_ended();
        // The inbox expired meanwhile and restarted at 1.
        assert_eq!(t.arrive(1, 99), Arrival::Deliver);
        // Skipped carried messages are forgotten: 2 came before 3 or not at all.
        assert_eq!(t.arrive(3, 100), Arrival::Deliver);
        t.connection_ended();
        assert_eq!(t.arrive(2, 20), Arrival::Deliver);
    }

    #[test]
    fn carried_messages_are_bounded() {
        let mut t = MailTracker::new(2);
        for seq in 1..=5 {
            t.arrive(seq, seq);
        }
        t.connection_ended();
        assert_eq!(t.carried.keys().copied().collect::<Vec<_>>(), [4, 5]);
    }
}
