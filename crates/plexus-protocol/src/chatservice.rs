//! chat-service's protocol on Socket.IO (`docs/chat-service.md`): its error codes and how they
//! read, its commands and their argument checks, its rule for names, and its form of binary
//! data inside JSON. Sans-IO: the server's `chatservice` module runs the commands.
//!
//! The semantics are chat-service 1.0.0's (`src/ChatServiceError.js`,
//! `src/ArgumentsValidator.js`, `src/utils.js`), checked against the running server
//! (`seeds-protocols.md` §2.1).

use crate::socketio::Arg;
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// A chat-service error code (`ChatServiceError.code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    BadArgument,
    InternalError,
    InvalidName,
    InvalidSocket,
    NoCommand,
    ListLimitExceeded,
    NoList,
    NoLogin,
    NoRoom,
    NoSocket,
    NoUser,
    NoUserOnline,
    NotAllowed,
    NotJoined,
    RoomExists,
    Timeout,
    UserExists,
    UserOnline,
    WrongArgumentsCount,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 19] = [
        ErrorKind::BadArgument,
        ErrorKind::InternalError,
        ErrorKind::InvalidName,
        ErrorKind::InvalidSocket,
        ErrorKind::NoCommand,
        ErrorKind::ListLimitExceeded,
        ErrorKind::NoList,
        ErrorKind::NoLogin,
        ErrorKind::NoRoom,
        ErrorKind::NoSocket,
        ErrorKind::NoUser,
        ErrorKind::NoUserOnline,
        ErrorKind::NotAllowed,
        ErrorKind::NotJoined,
        ErrorKind::RoomExists,
        ErrorKind::Timeout,
        ErrorKind::UserExists,
        ErrorKind::UserOnline,
        ErrorKind::WrongArgumentsCount,
    ];

    /// The code as clients see it (`"noRoom"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadArgument => "badArgument",
            ErrorKind::InternalError => "internalError",
            ErrorKind::InvalidName => "invalidName",
            ErrorKind::InvalidSocket => "invalidSocket",
            ErrorKind::NoCommand => "noCommand",
            ErrorKind::ListLimitExceeded => "listLimitExceeded",
            ErrorKind::NoList => "noList",
            ErrorKind::NoLogin => "noLogin",
            ErrorKind::NoRoom => "noRoom",
            ErrorKind::NoSocket => "noSocket",
            ErrorKind::NoUser => "noUser",
            ErrorKind::NoUserOnline => "noUserOnline",
            ErrorKind::NotAllowed => "notAllowed",
            ErrorKind::NotJoined => "notJoined",
            ErrorKind::RoomExists => "roomExists",
            ErrorKind::Timeout => "timeout",
            ErrorKind::UserExists => "userExists",
            ErrorKind::UserOnline => "userOnline",
            ErrorKind::WrongArgumentsCount => "wrongArgumentsCount",
        }
    }

    pub fn parse(code: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == code)
    }

    /// The `util.format` template of the message.
    pub fn template(self) -> &'static str {
        match self {
            ErrorKind::BadArgument => "Bad argument at position %d, value %j",
            ErrorKind::InternalError => "%s",
            ErrorKind::InvalidName => "String %s contains invalid characters",
            ErrorKind::InvalidSocket => "Socket %s is not connected",
            ErrorKind::NoCommand => "No such command %s",
            ErrorKind::ListLimitExceeded => "Exceeded %s size limit",
            ErrorKind::NoList => "No such list %s",
            ErrorKind::NoLogin => "No login provided",
            ErrorKind::NoRoom => "No such room %s",
            ErrorKind::NoSocket => "Command %s requires a valid socket",
            ErrorKind::NoUser => "No such user %s",
            ErrorKind::NoUserOnline => "No such user online %s",
            ErrorKind::NotAllowed => "Action is not allowed",
            ErrorKind::NotJoined => "Not joined to room %s",
            ErrorKind::RoomExists => "Room %s already exists",
            ErrorKind::Timeout => "Server operation timeout",
            ErrorKind::UserExists => "User %s already exists",
            ErrorKind::UserOnline => "User %s is online",
            ErrorKind::WrongArgumentsCount => "Expected %s arguments, got %s",
        }
    }
}

/// A chat-service error: a code and the values its message names.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatError {
    pub kind: ErrorKind,
    pub args: Vec<Value>,
}

impl ChatError {
    pub fn new(kind: ErrorKind, args: Vec<Value>) -> ChatError {
        ChatError { kind, args }
    }

    /// The error as chat-service sends it by default: `"ChatServiceError: <message>"`.
    pub fn message(&self) -> String {
        format!(
            "ChatServiceError: {}",
            util_format(self.kind.template(), &self.args)
        )
    }

    /// The error with `useRawErrorObjects`: `{name, code, args}`.
    pub fn raw(&self) -> Value {
        json!({"name": "ChatServiceError", "code": self.kind.as_str(), "args": self.args})
    }

    /// The error in the form the service is configured for.
    pub fn to_value(&self, raw: bool) -> Value {
        if raw {
            self.raw()
        } else {
            Value::String(self.message())
        }
    }
}

impl std::fmt::Display for ChatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ChatError {}

/// Node's `util.format` for the placeholders chat-service uses: `%s` (a string as it is, other
/// values as `String(v)` would write them), `%d` (a number), `%j` (JSON), `%%`. A placeholder
/// without a value stays as it is; values without a placeholder follow, space-separated.
pub fn util_format(template: &str, args: &[Value]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = args.iter();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some('%') => {
                chars.next();
                out.push('%');
            }
            Some(p @ ('s' | 'd' | 'j')) => {
                chars.next();
                match rest.next() {
                    Some(v) => match p {
                        's' => out.push_str(&js_string(v)),
                        'd' => out.push_str(&js_number(v)),
                        _ => out.push_str(&v.to_string()),
                    },
                    None => {
                        out.push('%');
                        out.push(p);
                    }
                }
            }
            _ => out.push('%'),
        }
    }
    for v in rest {
        out.push(' ');
        out.push_str(&js_string(v));
    }
    out
}

/// `String(v)` for JSON values (arrays join their items with commas; objects read
/// `[object Object]`).
fn js_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !item.is_null() {
                    out.push_str(&js_string(item));
                }
            }
            out
        }
        Value::Object(_) => "[object Object]".into(),
    }
}

/// `%d`: `Number(v)` as text (`NaN` for what is not a number).
fn js_number(v: &Value) -> String {
    let n = match v {
        Value::Number(n) => return n.to_string(),
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Null => 0.0,
        Value::String(s) if s.trim().is_empty() => 0.0,
        Value::String(s) => match s.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => n,
            _ => return "NaN".into(),
        },
        _ => return "NaN".into(),
    };
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// chat-service's rule for user and room names: no control characters, no `:`, `{`, `}`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| matches!(c, '\u{0}'..='\u{1f}' | ':' | '{' | '}' | '\u{7f}'))
}

/// What one argument of a command must be (`ArgumentsValidator`'s `check-types` checkers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ArgCheck {
    /// `check.string`.
    String,
    /// `check.array.of.string`.
    StringArray,
    /// `check.boolean`.
    Boolean,
    /// `check.greaterOrEqual(v, n)`: a finite number not below `n`.
    AtLeast(f64),
    /// A message: exactly `{textMessage: string}`, or with a message checker any plain object.
    Message,
    /// Anything.
    Any,
}

impl ArgCheck {
    /// Whether `value` passes; `custom_messages` says whether a message checker hook accepts
    /// any object (`directMessagesChecker` / `roomMessagesChecker`).
    pub fn accepts(self, value: &Value, custom_messages: bool) -> bool {
        match self {
            ArgCheck::String => value.is_string(),
            ArgCheck::StringArray => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            ArgCheck::Boolean => value.is_boolean(),
            ArgCheck::AtLeast(min) => value.as_f64().is_some_and(|n| n.is_finite() && n >= min),
            ArgCheck::Message if custom_messages => value.is_object(),
            ArgCheck::Message => value.as_object().is_some_and(|o| {
                o.len() == 1 && o.get("textMessage").is_some_and(Value::is_string)
            }),
            ArgCheck::Any => true,
        }
    }
}

/// A client command: its name and its arguments' checks.
#[derive(Clone, Copy, Debug)]
pub struct CommandSpec {
    pub name: &'static str,
    pub args: &'static [ArgCheck],
}

use ArgCheck::{Any, AtLeast, Boolean, Message, String as Str, StringArray};

/// Every client command of chat-service 1.0.0 (`rpc-client-requests.js`).
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "directAddToList",
        args: &[Str, StringArray],
    },
    CommandSpec {
        name: "directGetAccessList",
        args: &[Str],
    },
    CommandSpec {
        name: "directGetWhitelistMode",
        args: &[],
    },
    CommandSpec {
        name: "directMessage",
        args: &[Str, Message],
    },
    CommandSpec {
        name: "directRemoveFromList",
        args: &[Str, StringArray],
    },
    CommandSpec {
        name: "directSetWhitelistMode",
        args: &[Boolean],
    },
    CommandSpec {
        name: "listOwnSockets",
        args: &[],
    },
    CommandSpec {
        name: "roomAddToList",
        args: &[Str, Str, StringArray],
    },
    CommandSpec {
        name: "roomCreate",
        args: &[Str, Boolean],
    },
    CommandSpec {
        name: "roomDelete",
        args: &[Str],
    },
    CommandSpec {
        name: "roomGetAccessList",
        args: &[Str, Str],
    },
    CommandSpec {
        name: "roomGetOwner",
        args: &[Str],
    },
    CommandSpec {
        name: "roomGetWhitelistMode",
        args: &[Str],
    },
    CommandSpec {
        name: "roomHistoryGet",
        args: &[Str, AtLeast(0.0), AtLeast(1.0)],
    },
    CommandSpec {
        name: "roomHistoryInfo",
        args: &[Str],
    },
    CommandSpec {
        name: "roomJoin",
        args: &[Str],
    },
    CommandSpec {
        name: "roomLeave",
        args: &[Str],
    },
    CommandSpec {
        name: "roomMessage",
        args: &[Str, Message],
    },
    CommandSpec {
        name: "roomNotificationsInfo",
        args: &[Str],
    },
    CommandSpec {
        name: "roomRecentHistory",
        args: &[Str],
    },
    CommandSpec {
        name: "roomRemoveFromList",
        args: &[Str, Str, StringArray],
    },
    CommandSpec {
        name: "roomSetWhitelistMode",
        args: &[Str, Boolean],
    },
    CommandSpec {
        name: "roomUserSeen",
        args: &[Str, Str],
    },
    CommandSpec {
        name: "systemMessage",
        args: &[Any],
    },
];

/// The spec of a command, by name.
pub fn command(name: &str) -> Option<&'static CommandSpec> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// A command's arguments after the checks: the ones the command takes, and the rest (given to
/// hooks as `restArgs`).
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    pub args: Vec<Value>,
    pub rest: Vec<Value>,
}

/// Splits and checks a command's arguments as chat-service does: too few is
/// `wrongArgumentsCount` (`Expected N arguments, got M`), extra ones become the rest, and the
/// first argument that fails its check is `badArgument` (its 0-based position and value).
pub fn check_args(
    spec: &CommandSpec,
    mut args: Vec<Value>,
    custom_messages: bool,
) -> Result<Checked, ChatError> {
    let wanted = spec.args.len();
    if args.len() < wanted {
        return Err(ChatError::new(
            ErrorKind::WrongArgumentsCount,
            vec![json!(wanted), json!(args.len())],
        ));
    }
    let rest = args.split_off(wanted);
    for (i, (check, value)) in spec.args.iter().zip(&args).enumerate() {
        if !check.accepts(value, custom_messages) {
            return Err(ChatError::new(
                ErrorKind::BadArgument,
                vec![json!(i), value.clone()],
            ));
        }
    }
    Ok(Checked { args, rest })
}

/// Binary data inside a JSON value, as chat-service stores it: `{"type":"Buffer","data":[…]}`.
pub fn buffer_value(bytes: &[u8]) -> Value {
    json!({"type": "Buffer", "data": bytes})
}

/// An event argument as a JSON value, binary data as [`buffer_value`].
pub fn arg_to_value(arg: Arg) -> Value {
    match arg {
        Arg::Json(raw) => serde_json::from_str(raw.get()).unwrap_or(Value::Null),
        Arg::Binary(bytes) => buffer_value(&bytes),
        Arg::Array(items) => Value::Array(items.into_iter().map(arg_to_value).collect()),
        Arg::Object(entries) => Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k, arg_to_value(v)))
                .collect::<Map<String, Value>>(),
        ),
    }
}

/// The bytes of a [`buffer_value`] (every `data` item an integer 0–255).
fn as_buffer(value: &Value) -> Option<Bytes> {
    let o = value.as_object()?;
    if o.len() != 2 || o.get("type")?.as_str()? != "Buffer" {
        return None;
    }
    o.get("data")?
        .as_array()?
        .iter()
        .map(|b| b.as_u64().filter(|b| *b <= 255).map(|b| b as u8))
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

fn has_buffer(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(has_buffer),
        Value::Object(o) => as_buffer(value).is_some() || o.values().any(has_buffer),
        _ => false,
    }
}

/// A JSON value as an event argument, every [`buffer_value`] revived as binary data (sent as
/// an attachment).
pub fn value_to_arg(value: Value) -> Arg {
    if !has_buffer(&value) {
        return Arg::from(value);
    }
    if let Some(bytes) = as_buffer(&value) {
        return Arg::Binary(bytes);
    }
    match value {
        Value::Array(items) => Arg::Array(items.into_iter().map(value_to_arg).collect()),
        Value::Object(o) => Arg::Object(o.into_iter().map(|(k, v)| (k, value_to_arg(v))).collect()),
        other => Arg::from(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_chat_service_writes_them() {
        let e = ChatError::new(ErrorKind::NoRoom, vec![json!("room1")]);
        assert_eq!(e.message(), "ChatServiceError: No such room room1");
        assert_eq!(
            e.raw(),
            json!({"name": "ChatServiceError", "code": "noRoom", "args": ["room1"]})
        );
        let e = ChatError::new(ErrorKind::WrongArgumentsCount, vec![json!(2), json!(0)]);
        assert_eq!(e.message(), "ChatServiceError: Expected 2 arguments, got 0");
        let e = ChatError::new(ErrorKind::BadArgument, vec![json!(0), json!(null)]);
        assert_eq!(
            e.message(),
            "ChatServiceError: Bad argument at position 0, value null"
        );
        let e = ChatError::new(ErrorKind::BadArgument, vec![json!(1), json!({"a": [1]})]);
        assert_eq!(
            e.message(),
            r#"ChatServiceError: Bad argument at position 1, value {"a":[1]}"#
        );
        let e = ChatError::new(ErrorKind::NotAllowed, vec![]);
        assert_eq!(
            e.to_value(false),
            json!("ChatServiceError: Action is not allowed")
        );
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn util_format_placeholders() {
        assert_eq!(util_format("%s and %s", &[json!("a")]), "a and %s");
        assert_eq!(util_format("%s", &[json!("a"), json!(2)]), "a 2");
        assert_eq!(util_format("100%% %d", &[json!("7")]), "100% 7");
        assert_eq!(util_format("%d", &[json!("x")]), "NaN");
        assert_eq!(util_format("%s", &[json!(["a", "b"])]), "a,b");
        assert_eq!(util_format("%s", &[json!({"a": 1})]), "[object Object]");
        assert_eq!(util_format("%j", &[json!("q")]), "\"q\"");
    }

    #[test]
    fn names() {
        assert!(valid_name("room 1 ✓"));
        for bad in ["", "user}1", "a:b", "{", "a\u{7f}", "tab\there"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn argument_checks_follow_chat_service() {
        let join = command("roomJoin").unwrap();
        assert_eq!(
            check_args(join, vec![], false).unwrap_err(),
            ChatError::new(ErrorKind::WrongArgumentsCount, vec![json!(1), json!(0)])
        );
        // Extra arguments are the rest, for hooks.
        assert_eq!(
            check_args(join, vec![json!("r"), json!(true)], false).unwrap(),
            Checked {
                args: vec![json!("r")],
                rest: vec![json!(true)]
            }
        );
        let create = command("roomCreate").unwrap();
        assert_eq!(
            check_args(create, vec![json!(null), json!(false)], false).unwrap_err(),
            ChatError::new(ErrorKind::BadArgument, vec![json!(0), json!(null)])
        );
        let get = command("roomHistoryGet").unwrap();
        assert!(check_args(get, vec![json!("r"), json!(0), json!(1)], false).is_ok());
        assert!(check_args(get, vec![json!("r"), json!(-1), json!(1)], false).is_err());
        assert!(check_args(get, vec![json!("r"), json!(0), json!(0)], false).is_err());
        assert!(check_args(get, vec![json!("r"), json!("0"), json!(1)], false).is_err());
        let message = command("roomMessage").unwrap();
        let text = json!({"textMessage": "hi"});
        assert!(check_args(message, vec![json!("r"), text], false).is_ok());
        let custom = json!({"textMessage": "hi", "extra": 1});
        assert!(check_args(message, vec![json!("r"), custom.clone()], false).is_err());
        assert!(check_args(message, vec![json!("r"), custom], true).is_ok());
        assert!(check_args(message, vec![json!("r"), json!([1])], true).is_err());
        let add = command("roomAddToList").unwrap();
        assert!(
            check_args(
                add,
                vec![json!("r"), json!("whitelist"), json!(["a"])],
                false
            )
            .is_ok()
        );
        assert!(
            check_args(
                add,
                vec![json!("r"), json!("whitelist"), json!(["a", 1])],
                false
            )
            .is_err()
        );
        assert!(command("roomTeleport").is_none());
        assert_eq!(COMMANDS.len(), 24);
    }

    #[test]
    fn binary_data_survives_the_json_form() {
        let arg = Arg::Object(vec![
            ("textMessage".into(), Arg::from(json!("x"))),
            (
                "blob".into(),
                Arg::Array(vec![Arg::Binary(Bytes::from_static(&[0, 255, 7]))]),
            ),
        ]);
        let value = arg_to_value(arg.clone());
        assert_eq!(
            value,
            json!({"textMessage": "x", "blob": [{"type": "Buffer", "data": [0, 255, 7]}]})
        );
        let back = value_to_arg(value);
        assert_eq!(arg_to_value(back.clone()), arg_to_value(arg));
        let Arg::Object(entries) = back else { panic!() };
        let Some((_, Arg::Array(items))) = entries.iter().find(|(k, _)| k == "blob") else {
            panic!()
        };
        assert_eq!(items[0], Arg::Binary(Bytes::from_static(&[0, 255, 7])));
        // Something that only looks like a buffer stays JSON.
        let odd = json!({"type": "Buffer", "data": [256]});
        assert_eq!(value_to_arg(odd.clone()), Arg::from(odd));
    }
}
