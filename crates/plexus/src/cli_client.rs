//! `plexus sub`, `plexus pub` and `plexus call`: the CLI as a client of a Plexus server, on the
//! `plexus-client` crate.
//!
//! Output is JSON, one value per line, on stdout; errors are JSON on stderr. Exit codes: 0 done,
//! 1 the server refused (an error reply, a refused subscription) or a timeout, 2 the connection
//! could not be made or was lost for good, 130 interrupted.

use plexus_client::{
    Client, ClientConfig, ClientError, ErrorKind, Event, HistoryOptions, Payload, Position,
    Publication, SubscribeOptions, Subscribed, SubscriptionEvent, UnsubscribeReason,
};
use plexus_protocol::BinaryField;
use serde_json::{Map, Value, json};

/// Exit code: the server refused, or no answer in time.
const EXIT_REFUSED: i32 = 1;
/// Exit code: no connection.
const EXIT_CONNECTION: i32 = 2;
/// Exit code: interrupted (Ctrl-C).
const EXIT_INTERRUPTED: i32 = 130;

/// Where and how to connect.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnArgs {
    /// The server's WebSocket endpoint.
    #[arg(long, env = "PLEXUS_URL", default_value = "ws://127.0.0.1:8000/ws")]
    pub url: String,
    /// A connection token, sent in `connect`.
    #[arg(long, env = "PLEXUS_TOKEN")]
    pub token: Option<String>,
    /// Credentials, sent in `connect` for the server's auth hook (its `connect` backend): any
    /// JSON, such as '{"login":"ann","password":"…"}'. May go with --token.
    #[arg(long, env = "PLEXUS_CREDENTIALS", value_name = "JSON", value_parser = parse_credentials)]
    pub credentials: Option<Value>,
    /// Use MessagePack frames (`plexus.v1.msgpack`) instead of JSON.
    #[arg(long)]
    pub msgpack: bool,
}

/// `plexus sub`: print a channel's publications, one JSON line each.
#[derive(clap::Args, Debug)]
pub struct SubArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The channel to subscribe to.
    #[arg(long)]
    pub channel: String,
    /// Exit after this many publications (default: run until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
    /// Recover from this position: print the publications after OFFSET first, then the live
    /// ones. EPOCH defaults to the channel's current one. Says on stderr whether it recovered.
    #[arg(long, value_name = "OFFSET[:EPOCH]", value_parser = parse_since)]
    pub since: Option<Since>,
    /// Print the channel's last N publications first (where it keeps a history), then the live
    /// ones.
    #[arg(long, value_name = "N", conflicts_with = "since")]
    pub history: Option<u32>,
}

/// `--since OFFSET[:EPOCH]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Since {
    pub offset: u64,
    pub epoch: Option<String>,
}

fn parse_since(text: &str) -> Result<Since, String> {
    let (offset, epoch) = match text.split_once(':') {
        Some((offset, epoch)) if !epoch.is_empty() => (offset, Some(epoch.to_owned())),
        Some(_) => return Err("the epoch after `:` is empty".into()),
        None => (text, None),
    };
    let offset = offset
        .parse()
        .map_err(|_| format!("`{offset}` is not an offset (an unsigned integer)"))?;
    Ok(Since { offset, epoch })
}

fn parse_credentials(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

/// `plexus pub`: publish to a channel and print where the publication landed.
#[derive(clap::Args, Debug)]
pub struct PubArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The channel to publish to.
    #[arg(long)]
    pub channel: String,
    /// An event name for the publication (Socket.IO subscribers receive it as this event
    /// instead of `message`).
    #[arg(long)]
    pub event: Option<String>,
    /// The payload: JSON text; anything that is not valid JSON is sent as a JSON string.
    pub data: String,
}

/// `plexus call`: call a command (RPC) on the server and print its result.
#[derive(clap::Args, Debug)]
pub struct CallArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The command's name.
    pub method: String,
    /// The payload: JSON text (default `null`); anything that is not valid JSON is sent as a
    /// JSON string.
    pub data: Option<String>,
}

/// Runs `plexus sub`; returns the process exit code.
pub async fn sub(args: SubArgs) -> anyhow::Result<i32> {
    // A long-running subscriber rides out server restarts: reconnect is on.
    let client = match Client::connect(config(&args.conn, true)).await {
        Ok(client) => client,
        Err(e) => return Ok(fail(&e)),
    };
    let mut events = client.events();
    let mut options = SubscribeOptions::default();
    if let Some(since) = &args.since {
        let epoch = match &since.epoch {
            Some(epoch) => epoch.clone(),
            None => current_epoch(&client, &args.channel).await,
        };
        options = options.since(Position {
            offset: since.offset,
            epoch,
        });
    }
    if let Some(n) = args.history {
        options = options.history(n);
    }
    let mut subscription = match client.subscribe(args.channel.as_str(), options).await {
        Ok(s) => s,
        Err(e) => return Ok(fail(&e)),
    };
    if let Some(since) = &args.since {
        eprintln!(
            "plexus: {}",
            recovery_note(subscription.subscribed(), since.offset)
        );
    }
    let mut printed = 0u64;
    if args.count == Some(0) {
        client.disconnect().await;
        return Ok(0);
    }
    let code = loop {
        tokio::select! {
            event = subscription.next() => match event {
                Some(SubscriptionEvent::Publication(p)) => {
                    println!("{}", publication_json(&p));
                    printed += 1;
                    if args.count.is_some_and(|n| printed >= n) {
                        break 0;
                    }
                }
                Some(SubscriptionEvent::Subscribed(s)) => eprintln!("plexus: {}", restore_note(&s)),
                Some(SubscriptionEvent::Lagged { missed }) => {
                    eprintln!("plexus: {missed} publications dropped: output too slow")
                }
                Some(SubscriptionEvent::Unsubscribed(reason)) => break ended(&reason),
                Some(_) => {}
                None => break EXIT_CONNECTION,
            },
            Some(event) = events.next() => if let Some(code) = connection_event(event) {
                break code;
            },
            _ = tokio::signal::ctrl_c() => break EXIT_INTERRUPTED,
        }
    };
    client.disconnect().await;
    Ok(code)
}

/// What a long-running command (`sub`, `record watch`) does with a connection event: says a
/// reconnect on stderr, and ends (with the exit code) when the client gave up.
pub(crate) fn connection_event(event: Event) -> Option<i32> {
    match event {
        Event::Disconnected {
            code,
            reason,
            will_reconnect: true,
        } => {
            let code = code
                .map(|c| c.0.to_string())
                .unwrap_or_else(|| "none".into());
            eprintln!("plexus: disconnected ({code}: {reason}); reconnecting");
            None
        }
        Event::GaveUp { error, .. } => Some(fail(&error)),
        _ => None,
    }
}

/// The channel's current epoch, for `--since OFFSET` without one. Where the channel keeps no
/// history there is nothing to recover, and the server says so whatever the epoch.
async fn current_epoch(client: &Client, channel: &str) -> String {
    match client
        .history(channel, HistoryOptions::default().limit(0))
        .await
    {
        Ok(history) => history.position.epoch,
        Err(_) => String::new(),
    }
}

/// What the first subscribe of `--since` did.
fn recovery_note(s: &Subscribed, since: u64) -> String {
    let at = &s.position;
    match (s.recovered, s.reason.as_deref()) {
        (Some(true), _) => format!(
            "recovered {} publications of {} after offset {since} (epoch {}); then live",
            at.offset.saturating_sub(since),
            s.channel,
            at.epoch
        ),
        (_, reason) => format!(
            "could not recover {} after offset {since} ({}); live from offset {} (epoch {})",
            s.channel,
            reason.unwrap_or("the server did not say"),
            at.offset,
            at.epoch
        ),
    }
}

/// What a restore after a reconnect (or a repaired gap) did.
fn restore_note(s: &Subscribed) -> String {
    let at = &s.position;
    match (s.recovered, s.reason.as_deref()) {
        (Some(true), _) => format!(
            "resubscribed to {}; recovered the publications missed meanwhile (up to offset {})",
            s.channel, at.offset
        ),
        (Some(false), reason) => format!(
            "resubscribed to {} at offset {} (epoch {}); could not recover the publications \
             missed meanwhile ({})",
            s.channel,
            at.offset,
            at.epoch,
            reason.unwrap_or("the server did not say")
        ),
        (None, _) => format!(
            "resubscribed to {} at offset {} after a reconnect; publications made meanwhile \
             are not shown",
            s.channel, at.offset
        ),
    }
}

/// Runs `plexus pub`; returns the process exit code.
pub async fn publish(args: PubArgs) -> anyhow::Result<i32> {
    let client = match Client::connect(config(&args.conn, false)).await {
        Ok(client) => client,
        Err(e) => return Ok(fail(&e)),
    };
    let data = parse_data(&args.data);
    let result = match args.event {
        Some(event) => client.publish_event(args.channel, event, data).await,
        None => client.publish(args.channel, data).await,
    };
    client.disconnect().await;
    match result {
        Ok(position) => {
            println!(
                "{}",
                json!({"offset": position.offset, "epoch": position.epoch})
            );
            Ok(0)
        }
        Err(e) => Ok(fail(&e)),
    }
}

/// Runs `plexus call`; returns the process exit code.
pub async fn call(args: CallArgs) -> anyhow::Result<i32> {
    let client = match Client::connect(config(&args.conn, false)).await {
        Ok(client) => client,
        Err(e) => return Ok(fail(&e)),
    };
    let payload = args
        .data
        .as_deref()
        .map(parse_data)
        .unwrap_or_else(Payload::null);
    let result = client.call(args.method.as_str(), payload).await;
    client.disconnect().await;
    match result {
        Ok(payload) => {
            match &payload {
                Payload::Json(raw) => println!("{}", raw.get()),
                Payload::Binary(_) => println!("{}", payload_json(&payload, Map::new())),
            }
            Ok(0)
        }
        Err(e) => Ok(fail(&e)),
    }
}

pub(crate) fn config(conn: &ConnArgs, reconnect: bool) -> ClientConfig {
    let mut config = ClientConfig::new(conn.url.as_str()).reconnect(reconnect);
    if conn.msgpack {
        config = config.msgpack();
    }
    if let Some(token) = &conn.token {
        config = config.token(token.as_str());
    }
    if let Some(credentials) = &conn.credentials {
        config = config.credentials(credentials.clone());
    }
    config
}

/// JSON text as given, or the whole argument as a JSON string.
fn parse_data(text: &str) -> Payload {
    Payload::from_json_str(text)
        .unwrap_or_else(|_| Payload::json(text).expect("a string always serializes to JSON"))
}

/// `{..fields, "data": <json>}` or `{..fields, "binary": "<base64>"}`.
fn payload_json(payload: &Payload, mut fields: Map<String, Value>) -> Value {
    match payload {
        Payload::Json(raw) => {
            let data = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
            fields.insert("data".into(), data);
        }
        Payload::Binary(bytes) => {
            // The protocol's own field type writes standard padded base64 in JSON.
            let binary = serde_json::to_value(BinaryField(bytes.clone())).unwrap_or(Value::Null);
            fields.insert("binary".into(), binary);
        }
    }
    Value::Object(fields)
}

fn publication_json(p: &Publication) -> Value {
    let mut fields = Map::new();
    fields.insert("channel".into(), json!(p.channel));
    fields.insert("offset".into(), json!(p.offset));
    fields.insert("epoch".into(), json!(p.epoch));
    if let Some(event) = &p.event {
        fields.insert("event".into(), json!(event));
    }
    let mut value = payload_json(&p.payload, fields);
    if let (Some(publisher), Value::Object(map)) = (&p.publisher, &mut value) {
        let mut who = Map::new();
        who.insert("conn".into(), json!(publisher.conn));
        if let Some(user) = &publisher.user {
            who.insert("user".into(), json!(user));
        }
        if let Some(info) = publisher.info.as_ref().and_then(Payload::as_json_str) {
            who.insert(
                "info".into(),
                serde_json::from_str(info).unwrap_or(Value::Null),
            );
        }
        map.insert("publisher".into(), Value::Object(who));
    }
    value
}

/// Prints the error as JSON on stderr; returns the exit code for it.
pub(crate) fn fail(e: &ClientError) -> i32 {
    let mut body = Map::new();
    if let Some(code) = e.code() {
        body.insert("code".into(), json!(code.0));
    }
    body.insert("message".into(), json!(e.message()));
    if let Some(data) = e.data().and_then(Payload::as_json_str) {
        body.insert(
            "data".into(),
            serde_json::from_str(data).unwrap_or(Value::Null),
        );
    }
    if let Some(close) = e.close_code() {
        body.insert("close_code".into(), json!(close.0));
    }
    eprintln!("{}", Value::Object(body));
    exit_code(e)
}

fn exit_code(e: &ClientError) -> i32 {
    match e.kind() {
        ErrorKind::Connect | ErrorKind::Closed | ErrorKind::Disconnected | ErrorKind::Config => {
            EXIT_CONNECTION
        }
        // A refused connect is the server's answer, yet the connection is what failed.
        ErrorKind::Server if e.close_code().is_some() => EXIT_CONNECTION,
        _ => EXIT_REFUSED,
    }
}

fn ended(reason: &UnsubscribeReason) -> i32 {
    match reason {
        UnsubscribeReason::Server(why) => {
            eprintln!(
                "{}",
                json!({"message": format!("unsubscribed by the server: {why}")})
            );
            EXIT_REFUSED
        }
        UnsubscribeReason::ResubscribeFailed(e) => fail(e),
        _ => {
            eprintln!("{}", json!({"message": "the connection closed"}));
            EXIT_CONNECTION
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_json_or_else_a_json_string() {
        assert_eq!(parse_data(r#"{"a":1}"#).as_json_str(), Some(r#"{"a":1}"#));
        assert_eq!(parse_data("42").as_json_str(), Some("42"));
        assert_eq!(
            parse_data("hello world").as_json_str(),
            Some(r#""hello world""#)
        );
        assert_eq!(
            parse_data(r#"say "hi""#).as_json_str(),
            Some(r#""say \"hi\"""#)
        );
    }

    #[test]
    fn since_is_an_offset_with_an_optional_epoch() {
        assert_eq!(
            parse_since("41"),
            Ok(Since {
                offset: 41,
                epoch: None
            })
        );
        assert_eq!(
            parse_since("41:b3e1"),
            Ok(Since {
                offset: 41,
                epoch: Some("b3e1".into())
            })
        );
        assert!(parse_since("x:b3e1").is_err());
        assert!(parse_since("41:").is_err());
        assert!(parse_since("-1").is_err());
    }

    #[test]
    fn recovery_notes_say_whether_it_worked() {
        let mut s = Subscribed {
            channel: "c".into(),
            position: Position {
                offset: 46,
                epoch: "b3e1".into(),
            },
            recovered: Some(true),
            reason: None,
            resubscribed: false,
            server_side: false,
        };
        assert_eq!(
            recovery_note(&s, 44),
            "recovered 2 publications of c after offset 44 (epoch b3e1); then live"
        );
        s.recovered = Some(false);
        s.reason = Some("epoch_changed".into());
        assert_eq!(
            recovery_note(&s, 44),
            "could not recover c after offset 44 (epoch_changed); live from offset 46 (epoch b3e1)"
        );
        assert!(restore_note(&s).contains("could not recover"));
        s.recovered = Some(true);
        assert!(restore_note(&s).contains("recovered the publications missed"));
    }

    #[test]
    fn publications_print_data_or_base64_and_the_publisher() {
        let p = Publication {
            channel: "c".into(),
            offset: 3,
            epoch: "e".into(),
            payload: Payload::binary(vec![1u8, 2, 3]),
            publisher: Some(plexus_client::Publisher {
                conn: "n-1".into(),
                user: Some("u".into()),
                info: None,
            }),
            event: None,
        };
        assert_eq!(
            publication_json(&p),
            json!({"channel": "c", "offset": 3, "epoch": "e", "binary": "AQID",
                   "publisher": {"conn": "n-1", "user": "u"}})
        );
        let p = Publication {
            payload: Payload::json(&json!({"t": "hi"})).unwrap(),
            publisher: None,
            ..p
        };
        assert_eq!(
            publication_json(&p),
            json!({"channel": "c", "offset": 3, "epoch": "e", "data": {"t": "hi"}})
        );
        let p = Publication {
            event: Some("chat".into()),
            ..p
        };
        assert_eq!(
            publication_json(&p),
            json!({"channel": "c", "offset": 3, "epoch": "e", "event": "chat", "data": {"t": "hi"}})
        );
    }
}

/// `plexus sockety …`: the CLI as a Sockety client.
#[derive(clap::Subcommand, Debug)]
pub enum SocketyCommand {
    /// Send a request and print its response (data and files) or fast reply as one JSON line.
    Call(SocketyCallArgs),
}

/// `plexus sockety call ACTION [DATA] [--file F]…`.
#[derive(clap::Args, Debug)]
pub struct SocketyCallArgs {
    /// The server: `tcp://HOST:PORT`, `tls://HOST:PORT`, `ws://HOST:PORT/sockety` or `wss://…`.
    #[arg(
        long,
        env = "PLEXUS_SOCKETY_URL",
        default_value = "tcp://127.0.0.1:8001"
    )]
    pub url: String,
    /// A connection token, sent with `plexus.connect` first.
    #[arg(long, env = "PLEXUS_TOKEN")]
    pub token: Option<String>,
    /// A PEM file of certificates to trust besides the usual roots (a server's own CA).
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
    /// A file to attach (repeatable).
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<std::path::PathBuf>,
    /// Where to write the files of the response (by their names); not written without it.
    #[arg(long, value_name = "DIR")]
    pub save_files: Option<std::path::PathBuf>,
    /// How long to wait for the answer, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// The action.
    pub action: String,
    /// The data, as given (JSON text for Plexus commands).
    pub data: Option<String>,
}

/// Runs `plexus sockety`; returns the process exit code.
pub async fn sockety(command: SocketyCommand) -> anyhow::Result<i32> {
    use plexus_client::sockety::{self, Draft, OutFile, Reply};
    let SocketyCommand::Call(args) = command;
    let options = sockety::Options {
        ca_file: args.ca_file.clone(),
        token: args.token.clone(),
        ..sockety::Options::default()
    };
    let (peer, _incoming) = match sockety::connect(&args.url, options).await {
        Ok(connected) => connected,
        Err(e) => return Ok(fail(&e)),
    };
    let mut draft = Draft::new(args.action.as_str());
    if let Some(data) = &args.data {
        draft = draft.data(data.clone().into_bytes());
    }
    for path in &args.files {
        let file = OutFile::open(path)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        draft = draft.file(file);
    }
    let timeout = std::time::Duration::from_millis(args.timeout_ms);
    let reply = match tokio::time::timeout(timeout, peer.request(draft)).await {
        Err(_) => {
            eprintln!("{}", json!({"error": {"kind": "timeout"}}));
            return Ok(EXIT_REFUSED);
        }
        Ok(Err(e)) => {
            eprintln!(
                "{}",
                json!({"error": {"kind": "connection", "message": e.to_string()}})
            );
            return Ok(EXIT_CONNECTION);
        }
        Ok(Ok(reply)) => reply,
    };
    let code = match reply {
        Reply::Fast(code) => {
            println!(
                "{}",
                json!({"fast_reply": code, "name": sockety::fast_reply_name(code)})
            );
            if code == sockety::fast::ACCEPT {
                0
            } else {
                EXIT_REFUSED
            }
        }
        Reply::Response(mut response) => {
            let data = match std::str::from_utf8(&response.data) {
                Ok(text) => serde_json::from_str::<Value>(text).unwrap_or_else(|_| json!(text)),
                Err(_) => json!({"base64": BinaryField(response.data.clone())}),
            };
            let mut files = Vec::new();
            for file in std::mem::take(&mut response.files) {
                files.push(json!({"name": file.name, "size": file.size}));
                if let Some(dir) = &args.save_files {
                    let name = std::path::Path::new(&file.name)
                        .file_name()
                        .map(|n| n.to_owned())
                        .unwrap_or_else(|| "file".into());
                    let bytes = file.bytes().await?;
                    tokio::fs::write(dir.join(name), bytes).await?;
                }
            }
            let mut line = json!({"data": data});
            if !files.is_empty() {
                line["files"] = Value::Array(files);
            }
            println!("{line}");
            0
        }
    };
    peer.close().await;
    Ok(code)
}
