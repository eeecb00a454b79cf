//! `plexus record get|set|patch|delete|watch`: records (`docs/records.md`) from the command line,
//! on the `plexus-client` crate. Output and exit codes as for `plexus sub` (`cli_client`).

use crate::cli_client::{ConnArgs, config, connection_event, fail};
use plexus_client::{Client, ClientError, RecordMode, RecordState, RecordVersion};
use serde_json::{Value, json};

/// Exit code: interrupted (Ctrl-C).
const EXIT_INTERRUPTED: i32 = 130;

#[derive(clap::Subcommand, Debug)]
pub enum RecordCommand {
    /// Print a record: `{"id", "value", "version", "epoch"}` (`null` at version 0 when absent).
    Get {
        #[command(flatten)]
        conn: ConnArgs,
        id: String,
    },
    /// Replace a record's value (creating it); print `{"version", "epoch"}`.
    Set {
        #[command(flatten)]
        conn: ConnArgs,
        id: String,
        /// The value: JSON text; anything that is not valid JSON is a JSON string.
        value: String,
        /// Write only while the record is at this version (0: only if it does not exist).
        #[arg(long)]
        expect: Option<u64>,
    },
    /// Apply an RFC 6902 JSON Patch, e.g. '[{"op":"replace","path":"/name","value":"Ada"}]'.
    Patch {
        #[command(flatten)]
        conn: ConnArgs,
        id: String,
        /// The patch: a JSON array of operations.
        patch: String,
        /// Write only while the record is at this version.
        #[arg(long)]
        expect: Option<u64>,
    },
    /// Delete a record.
    Delete {
        #[command(flatten)]
        conn: ConnArgs,
        id: String,
        /// Delete only while the record is at this version.
        #[arg(long)]
        expect: Option<u64>,
    },
    /// Print the record now, then one line per version, until interrupted: `{"id", "version",
    /// "epoch", "value"}`. Resyncs by itself after a reconnect.
    Watch {
        #[command(flatten)]
        conn: ConnArgs,
        id: String,
        /// Receive patches (applied here) instead of whole values.
        #[arg(long)]
        patch: bool,
        /// Exit after this many lines (the first is the current value).
        #[arg(long)]
        count: Option<u64>,
    },
}

/// Runs a `plexus record` command; returns the process exit code.
pub async fn record(command: RecordCommand) -> anyhow::Result<i32> {
    match command {
        RecordCommand::Get { conn, id } => {
            one_shot(&conn, |c| async move {
                c.record(id).await.map(|s| state_json(&s))
            })
            .await
        }
        RecordCommand::Set {
            conn,
            id,
            value,
            expect,
        } => {
            let value = serde_json::from_str(&value).unwrap_or(Value::String(value));
            one_shot(&conn, |c| async move {
                c.set_record(id, value, expect)
                    .await
                    .map(|v| version_json(&v))
            })
            .await
        }
        RecordCommand::Patch {
            conn,
            id,
            patch,
            expect,
        } => {
            let patch: Value = serde_json::from_str(&patch)
                .map_err(|e| anyhow::anyhow!("the patch is not JSON: {e}"))?;
            one_shot(&conn, |c| async move {
                c.patch_record(id, patch, expect)
                    .await
                    .map(|v| version_json(&v))
            })
            .await
        }
        RecordCommand::Delete { conn, id, expect } => {
            one_shot(&conn, |c| async move {
                c.delete_record(id, expect).await.map(|v| version_json(&v))
            })
            .await
        }
        RecordCommand::Watch {
            conn,
            id,
            patch,
            count,
        } => watch(&conn, id, patch, count).await,
    }
}

async fn one_shot<F, Fut>(conn: &ConnArgs, f: F) -> anyhow::Result<i32>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<Value, ClientError>>,
{
    let client = match Client::connect(config(conn, false)).await {
        Ok(client) => client,
        Err(e) => return Ok(fail(&e)),
    };
    let result = f(client.clone()).await;
    client.disconnect().await;
    match result {
        Ok(value) => {
            println!("{value}");
            Ok(0)
        }
        Err(e) => Ok(fail(&e)),
    }
}

async fn watch(
    conn: &ConnArgs,
    id: String,
    patch: bool,
    count: Option<u64>,
) -> anyhow::Result<i32> {
    // A long-running watcher rides out server restarts: reconnect is on.
    let client = match Client::connect(config(conn, true)).await {
        Ok(client) => client,
        Err(e) => return Ok(fail(&e)),
    };
    let mut events = client.events();
    let mode = if patch {
        RecordMode::Patch
    } else {
        RecordMode::Full
    };
    let mut watch = match client.watch_record(id, mode).await {
        Ok(w) => w,
        Err(e) => return Ok(fail(&e)),
    };
    let mut printed = 0u64;
    let mut print = |state: &RecordState| {
        println!("{}", state_json(state));
        printed += 1;
        count.is_some_and(|n| printed >= n)
    };
    if count == Some(0) || print(watch.current()) {
        client.disconnect().await;
        return Ok(0);
    }
    let code = loop {
        tokio::select! {
            state = watch.next() => match state {
                Some(Ok(state)) => {
                    if print(&state) {
                        break 0;
                    }
                }
                Some(Err(e)) => eprintln!("plexus: resync failed: {}", e.message()),
                None => break 2,
            },
            Some(event) = events.next() => if let Some(code) = connection_event(event) {
                break code;
            },
            _ = tokio::signal::ctrl_c() => break EXIT_INTERRUPTED,
        }
    };
    drop(watch);
    client.disconnect().await;
    Ok(code)
}

fn state_json(s: &RecordState) -> Value {
    json!({"id": s.id, "version": s.version, "epoch": s.epoch, "value": s.value})
}

fn version_json(v: &RecordVersion) -> Value {
    json!({"version": v.version, "epoch": v.epoch})
}
