//! Durable delivery to users (Mesa sync, Plezi identity mailboxes), built on
//! [`crate::engine::MailboxStore`].
//!
//! A user is *registered* while its inbox lives: from its first authenticated connection until
//! `Limits::mailbox_lifetime` after its last. A durable message gets the user's next sequence
//! number, goes live to every connection of the user, and stays until acknowledged (`ack`,
//! cumulative) or expired. A connection that authenticates receives the unacknowledged backlog
//! first, in order, then the live messages; none twice.

use crate::connection::{Connection, HoldKey};
use crate::engine::{Control, EngineError};
use crate::error::Error;
use crate::model::Event;
use crate::node::{Node, engine_error};
use plexus_protocol::{ErrorCode, Payload};
use std::sync::Arc;
use std::time::Duration;

/// The result of a durable send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurableOutcome {
    /// Whether the user has an inbox (Plezi `notify` returning true/false). Nothing is stored
    /// for an unregistered user.
    pub registered: bool,
    /// The message's sequence number, when stored.
    pub seq: Option<u64>,
}

impl Node {
    /// Sends `payload` to `user` durably: kept until acknowledged or `ttl` (default
    /// `Limits::mail_ttl`) passes. A full inbox is an error (`limit_exceeded`), never a silent
    /// drop.
    pub async fn send_durable(
        &self,
        user: &str,
        payload: Payload,
        ttl: Option<Duration>,
    ) -> Result<DurableOutcome, Error> {
        let mailbox = &self.engine().mailbox;
        if !mailbox.is_registered(user).await.map_err(engine_error)? {
            return Ok(DurableOutcome {
                registered: false,
                seq: None,
            });
        }
        let ttl = ttl.unwrap_or(self.limits().mail_ttl);
        let mail = match mailbox
            .push(user, payload, ttl, self.limits().mailbox_max_messages)
            .await
        {
            Ok(mail) => mail,
            Err(EngineError::Limit(m)) => return Err(Error::new(ErrorCode::LIMIT_EXCEEDED, m)),
            Err(e) => return Err(engine_error(e)),
        };
        let seq = mail.seq;
        self.control(Control::Mail {
            user: Arc::from(user),
            mail,
        })
        .await?;
        Ok(DurableOutcome {
            registered: true,
            seq: Some(seq),
        })
    }

    /// Whether `user` has an inbox.
    pub async fn is_registered(&self, user: &str) -> Result<bool, Error> {
        self.engine()
            .mailbox
            .is_registered(user)
            .await
            .map_err(engine_error)
    }

    /// Keeps `payload` for `user` whether or not it has an inbox yet (one is created): Mesa's
    /// store for an offline user, bounded by `Limits::mailbox_max_messages` and `ttl` (default
    /// `Limits::mail_ttl`). Unlike [`Node::send_durable`] nothing goes live.
    pub async fn keep_mail(
        &self,
        user: &str,
        payload: Payload,
        ttl: Option<Duration>,
    ) -> Result<u64, Error> {
        let mailbox = &self.engine().mailbox;
        mailbox
            .register(user, self.limits().mailbox_lifetime)
            .await
            .map_err(engine_error)?;
        let ttl = ttl.unwrap_or(self.limits().mail_ttl);
        match mailbox
            .push(user, payload, ttl, self.limits().mailbox_max_messages)
            .await
        {
            Ok(mail) => Ok(mail.seq),
            Err(EngineError::Limit(m)) => Err(Error::new(ErrorCode::LIMIT_EXCEEDED, m)),
            Err(e) => Err(engine_error(e)),
        }
    }

    /// Takes `user`'s waiting durable messages: returns them in order and acknowledges them
    /// (Mesa's redelivery reads its store, then deletes it).
    pub async fn take_mail(&self, user: &str) -> Result<Vec<crate::engine::Mail>, Error> {
        let mailbox = &self.engine().mailbox;
        let pending = mailbox.pending(user).await.map_err(engine_error)?;
        if let Some(last) = pending.last() {
            mailbox.ack(user, last.seq).await.map_err(engine_error)?;
        }
        Ok(pending)
    }

    /// The durable messages waiting in `user`'s mailbox, oldest first (at most
    /// `mailbox_max_messages`: a mailbox never holds more).
    pub async fn pending_mail(&self, user: &str) -> Result<Vec<crate::engine::Mail>, Error> {
        self.engine()
            .mailbox
            .pending(user)
            .await
            .map_err(engine_error)
    }

    /// Acknowledges `user`'s durable messages up to `seq`; returns how many still wait.
    pub async fn ack_mail(&self, user: &str, seq: u64) -> Result<u64, Error> {
        // An acknowledging user is alive: its inbox lives on.
        let _ = self
            .engine()
            .mailbox
            .register(user, self.limits().mailbox_lifetime)
            .await;
        self.engine()
            .mailbox
            .ack(user, seq)
            .await
            .map_err(engine_error)
    }

    /// Registers the user's inbox and delivers its backlog (or, without `sync`, drops it). The
    /// connection's mail stream must be held (it is, from before the connection joined its
    /// user), so live messages wait behind the backlog.
    pub(crate) async fn open_mailbox(&self, conn: &Arc<Connection>, sync: bool) {
        let Some(user) = conn.identity().map(|i| i.user.clone()) else {
            return;
        };
        let mailbox = &self.engine().mailbox;
        let pending = match mailbox
            .register(&user, self.limits().mailbox_lifetime)
            .await
        {
            Ok(()) => mailbox.pending(&user).await.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(%user, error = %e, "mailbox unavailable");
                Vec::new()
            }
        };
        let last = pending.last().map_or(0, |m| m.seq);
        conn.note_mail(last);
        if !sync {
            if last > 0 {
                let _ = mailbox.ack(&user, last).await;
            }
            let _ = conn.release(&HoldKey::Mail, last);
            return;
        }
        let pace = self.limits().mail_redelivery_pace;
        let conn = conn.clone();
        let deliver = async move {
            for (i, mail) in pending.iter().enumerate() {
                if i > 0 && !pace.is_zero() {
                    tokio::time::sleep(pace).await;
                }
                conn.send_event(&Event::Mail(mail));
            }
            if conn.release(&HoldKey::Mail, last).is_err() {
                conn.close(
                    plexus_protocol::CloseCode::INSUFFICIENT_STATE,
                    "too many durable messages arrived during sync",
                );
            }
        };
        if pace.is_zero() {
            deliver.await;
        } else {
            tokio::spawn(deliver);
        }
    }
}
