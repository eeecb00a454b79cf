//! Plezi 0.12's Redis bus messages (`docs/endpoints.md`, "Plezi's Redis formats"): Ruby hashes
//! written with `to_yaml` — `{:method, :data, :type, :target, :server}` — read with a **safe
//! YAML subset**, strictly bounded. Only what Psych writes for such a hash is accepted: block
//! mappings and sequences, plain, single- and double-quoted scalars, literal and folded block
//! scalars, symbols (`:name`), `~`/empty for nil, booleans, integers and floats, and the empty
//! flow collections `[]` and `{}`. No tags, anchors, aliases or other documents: anything else is
//! an error, never code (Ruby's own reader needed a class allow-list for the same reason).

use serde_json::{Map, Number, Value};

/// The largest message read, in bytes.
pub const MAX_BYTES: usize = 64 * 1024;
/// The deepest nesting of collections.
pub const MAX_DEPTH: usize = 32;
/// The most values (scalars and collections) in one message.
pub const MAX_NODES: usize = 10_000;

/// Why a message is not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based line of the problem (0: the whole message).
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for YamlError {}

fn error(line: usize, message: impl Into<String>) -> YamlError {
    YamlError {
        line,
        message: message.into(),
    }
}

#[derive(Clone, Copy)]
struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

struct Parser<'a> {
    raw: Vec<&'a str>,
    lines: Vec<Line<'a>>,
    pos: usize,
    nodes: usize,
}

/// Reads one YAML document of the subset as a JSON value (symbols become strings without their
/// colon).
pub fn parse(text: &str) -> Result<Value, YamlError> {
    if text.len() > MAX_BYTES {
        return Err(error(0, format!("larger than {MAX_BYTES} bytes")));
    }
    let raw: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
    let mut lines = Vec::new();
    let mut started = false;
    for (i, l) in raw.iter().enumerate() {
        let body = l.trim_start_matches(' ');
        if body.starts_with('\t') {
            return Err(error(i + 1, "a tab in the indentation"));
        }
        let body = body.trim_end();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if !started && (body == "---" || body.starts_with("--- ")) {
            started = true;
            let rest = body[3..].trim();
            if !rest.is_empty() {
                lines.push(Line {
                    no: i + 1,
                    indent: 0,
                    text: rest,
                });
            }
            continue;
        }
        if body == "..." {
            break;
        }
        if body == "---" {
            return Err(error(i + 1, "one document only"));
        }
        started = true;
        lines.push(Line {
            no: i + 1,
            indent: l.len() - l.trim_start_matches(' ').len(),
            text: body,
        });
    }
    let mut parser = Parser {
        raw,
        lines,
        pos: 0,
        nodes: 0,
    };
    let Some(first) = parser.lines.first().copied() else {
        return Ok(Value::Null);
    };
    let value = parser.block(first.indent, 0)?;
    if let Some(extra) = parser.lines.get(parser.pos) {
        return Err(error(extra.no, "unexpected indentation"));
    }
    Ok(value)
}

/// Where `key: value` splits: the index of the `:` ending the key.
fn key_split(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    if let Some(&q) = bytes.first()
        && (q == b'\'' || q == b'"')
    {
        // A quoted key: skip to its closing quote.
        let mut i = 1;
        while i < bytes.len() {
            if bytes[i] == b'\\' && q == b'"' {
                i += 2;
                continue;
            }
            if bytes[i] == q {
                if q == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                    i += 2;
                    continue;
                }
                break;
            }
            i += 1;
        }
        i += 1;
        return (bytes.get(i) == Some(&b':') && matches!(bytes.get(i + 1), None | Some(b' ')))
            .then_some(i);
    }
    // A plain key (a symbol key starts with ':', which is not the separator).
    let start = usize::from(bytes.first() == Some(&b':'));
    for j in start..bytes.len() {
        if bytes[j] == b':' && matches!(bytes.get(j + 1), None | Some(b' ')) {
            return (j > start || start == 0 && j > 0).then_some(j);
        }
    }
    None
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

impl<'a> Parser<'a> {
    fn count(&mut self, line: usize) -> Result<(), YamlError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(error(line, format!("more than {MAX_NODES} values")));
        }
        Ok(())
    }

    /// The block (mapping, sequence or scalar) starting at the current line, at `indent`.
    fn block(&mut self, indent: usize, depth: usize) -> Result<Value, YamlError> {
        let Some(line) = self.lines.get(self.pos).copied() else {
            return Ok(Value::Null);
        };
        if depth > MAX_DEPTH {
            return Err(error(line.no, format!("nested deeper than {MAX_DEPTH}")));
        }
        if is_item(line.text) {
            self.sequence(indent, None, depth)
        } else if key_split(line.text).is_some() {
            self.mapping(indent, None, depth)
        } else {
            self.pos += 1;
            self.count(line.no)?;
            self.scalar_or_block(line.text, line, indent)
        }
    }

    fn sequence(
        &mut self,
        indent: usize,
        mut first: Option<Line<'a>>,
        depth: usize,
    ) -> Result<Value, YamlError> {
        if depth > MAX_DEPTH {
            let no = first.map_or(0, |l| l.no);
            return Err(error(no, format!("nested deeper than {MAX_DEPTH}")));
        }
        let mut items = Vec::new();
        loop {
            let line = match first.take() {
                Some(line) => line,
                None => match self.lines.get(self.pos).copied() {
                    Some(line) if line.indent == indent && is_item(line.text) => {
                        self.pos += 1;
                        line
                    }
                    Some(line) if line.indent > indent => {
                        return Err(error(line.no, "unexpected indentation"));
                    }
                    _ => break,
                },
            };
            self.count(line.no)?;
            let rest = line.text[1..].trim_start();
            let value = if rest.is_empty() {
                self.nested(indent, depth, true)?
            } else if is_item(rest) {
                // `- - item`: a sequence whose items line up after the dash.
                let inner = indent + (line.text.len() - rest.len());
                let first = Line {
                    no: line.no,
                    indent: inner,
                    text: rest,
                };
                self.sequence(inner, Some(first), depth + 1)?
            } else if key_split(rest).is_some() {
                // `- key: value`: a mapping whose keys line up after the dash.
                let inner = indent + (line.text.len() - rest.len());
                let first = Line {
                    no: line.no,
                    indent: inner,
                    text: rest,
                };
                self.mapping(inner, Some(first), depth + 1)?
            } else {
                self.scalar_or_block(rest, line, indent)?
            };
            items.push(value);
        }
        Ok(Value::Array(items))
    }

    /// What follows a `key:` or `-` with nothing after it: a deeper block, a sequence at the
    /// same indentation (after a key), or nil.
    fn nested(
        &mut self,
        indent: usize,
        depth: usize,
        in_sequence: bool,
    ) -> Result<Value, YamlError> {
        match self.lines.get(self.pos).copied() {
            Some(next) if next.indent > indent => self.block(next.indent, depth + 1),
            Some(next) if !in_sequence && next.indent == indent && is_item(next.text) => {
                self.sequence(indent, None, depth + 1)
            }
            _ => Ok(Value::Null),
        }
    }

    fn mapping(
        &mut self,
        indent: usize,
        mut first: Option<Line<'a>>,
        depth: usize,
    ) -> Result<Value, YamlError> {
        let mut map = Map::new();
        loop {
            let line = match first.take() {
                Some(line) => line,
                None => match self.lines.get(self.pos).copied() {
                    Some(line) if line.indent == indent && !is_item(line.text) => {
                        self.pos += 1;
                        line
                    }
                    Some(line) if line.indent > indent => {
                        return Err(error(line.no, "unexpected indentation"));
                    }
                    _ => break,
                },
            };
            self.count(line.no)?;
            let Some(split) = key_split(line.text) else {
                return Err(error(line.no, "expected `key: value`"));
            };
            let key = match scalar(&line.text[..split], line.no)? {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            let rest = line.text[split + 1..].trim_start();
            let value = if rest.is_empty() {
                self.nested(indent, depth, false)?
            } else {
                self.scalar_or_block(rest, line, indent)?
            };
            if map.insert(key, value).is_some() {
                return Err(error(line.no, "a key given twice"));
            }
        }
        Ok(Value::Object(map))
    }

    /// A scalar on a line, or a block scalar (`|`, `>`) whose lines follow, indented more
    /// than `indent`.
    fn scalar_or_block(
        &mut self,
        text: &str,
        line: Line<'a>,
        indent: usize,
    ) -> Result<Value, YamlError> {
        let Some(style) = text.chars().next().filter(|c| *c == '|' || *c == '>') else {
            return scalar(text, line.no);
        };
        let chomp = &text[1..];
        if !matches!(chomp, "" | "-" | "+") {
            return Err(error(line.no, "unsupported block scalar header"));
        }
        // The block's lines, blank ones included, from the raw text.
        let mut body: Vec<&str> = Vec::new();
        let mut next_no = line.no;
        while let Some(next) = self.lines.get(self.pos).copied() {
            if next.indent <= indent {
                break;
            }
            // Blank lines between the last taken line and this one belong to the block.
            for raw in &self.raw[next_no..next.no - 1] {
                body.push(raw);
            }
            body.push(self.raw[next.no - 1]);
            next_no = next.no;
            self.pos += 1;
        }
        let common = body
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start_matches(' ').len())
            .min()
            .unwrap_or(0);
        let lines: Vec<&str> = body.iter().map(|l| l.get(common..).unwrap_or("")).collect();
        let mut out = if style == '|' {
            lines.join("\n")
        } else {
            lines.join(" ")
        };
        match chomp {
            "-" => {}
            _ if !out.is_empty() => out.push('\n'),
            _ => {}
        }
        Ok(Value::String(out))
    }
}

/// One scalar: quoted, a symbol, nil, a boolean, a number, `[]`, `{}`, or plain text.
fn scalar(text: &str, line: usize) -> Result<Value, YamlError> {
    let text = text.trim();
    match text {
        "" | "~" | "null" => return Ok(Value::Null),
        "true" => return Ok(Value::Bool(true)),
        "false" => return Ok(Value::Bool(false)),
        "[]" => return Ok(Value::Array(Vec::new())),
        "{}" => return Ok(Value::Object(Map::new())),
        _ => {}
    }
    let first = text.as_bytes()[0];
    match first {
        b'\'' => single_quoted(text, line),
        b'"' => double_quoted(text, line),
        b'!' | b'&' | b'*' | b'%' | b'@' | b'`' => {
            Err(error(line, "tags, anchors and aliases are not read"))
        }
        b'[' | b'{' => Err(error(line, "only the empty flow collections are read")),
        b':' if text.len() > 1 => match &text[1..] {
            quoted if quoted.starts_with('"') => double_quoted(quoted, line),
            quoted if quoted.starts_with('\'') => single_quoted(quoted, line),
            symbol => Ok(Value::String(symbol.to_owned())),
        },
        _ => {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Value::Number(i.into()));
            }
            if text
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
                && text.bytes().any(|b| b.is_ascii_digit())
                && let Ok(f) = text.parse::<f64>()
                && let Some(n) = Number::from_f64(f)
            {
                return Ok(Value::Number(n));
            }
            Ok(Value::String(text.to_owned()))
        }
    }
}

fn single_quoted(text: &str, line: usize) -> Result<Value, YamlError> {
    let inner = text
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .filter(|_| text.len() >= 2)
        .ok_or_else(|| error(line, "an unterminated single-quoted string"))?;
    if inner.replace("''", "").contains('\'') {
        return Err(error(line, "a stray quote in a single-quoted string"));
    }
    Ok(Value::String(inner.replace("''", "'")))
}

fn double_quoted(text: &str, line: usize) -> Result<Value, YamlError> {
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|_| text.len() >= 2)
        .ok_or_else(|| error(line, "an unterminated double-quoted string"))?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Err(error(line, "a stray quote in a double-quoted string")),
            '\\' => {
                let escaped = chars
                    .next()
                    .ok_or_else(|| error(line, "a string ending in a backslash"))?;
                match escaped {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '0' => out.push('\0'),
                    'e' => out.push('\u{1b}'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    ' ' | '/' | '"' | '\\' => out.push(escaped),
                    'x' | 'u' | 'U' => {
                        let len = match escaped {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = chars.by_ref().take(len).collect();
                        let c = u32::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.len() == len)
                            .and_then(char::from_u32)
                            .ok_or_else(|| error(line, "a bad escape"))?;
                        out.push(c);
                    }
                    _ => return Err(error(line, format!("an unknown escape \\{escaped}"))),
                }
            }
            c => out.push(c),
        }
    }
    Ok(Value::String(out))
}

/// A Plezi 0.12 bus message.
#[derive(Clone, Debug, PartialEq)]
pub struct BusMessage {
    /// The method (event) to run on the targets.
    pub method: String,
    /// Its arguments.
    pub data: Vec<Value>,
    /// A controller's name, or `all`; absent for a unicast.
    pub kind: Option<String>,
    /// A unicast's connection.
    pub target: Option<String>,
    /// The sending server's uuid.
    pub server: Option<String>,
}

/// Reads a bus message: `:method` and `:data` are required, with `:type` (broadcast) or
/// `:target` (unicast).
pub fn bus_message(text: &str) -> Result<BusMessage, YamlError> {
    let Value::Object(map) = parse(text)? else {
        return Err(error(0, "not a mapping"));
    };
    let string = |key: &str| match map.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let method = string("method").ok_or_else(|| error(0, "no :method"))?;
    let data = match map.get("data") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) | None => return Err(error(0, "no :data")),
        Some(other) => vec![other.clone()],
    };
    let kind = string("type");
    let target = string("target");
    if kind.is_none() && target.is_none() {
        return Err(error(0, "neither :type nor :target"));
    }
    Ok(BusMessage {
        method,
        data,
        kind,
        target,
        server: string("server"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What Ruby 2.x's Psych writes for Plezi 0.12's `{method:, data:, type:, server:}.to_yaml`.
    const BROADCAST: &str = "---\n:method: :chat\n:data:\n- hello there\n- 42\n- :sym\n- 3.5\n- true\n- \n- name: bob\n  age: 7\n- - nested\n:type: ChatController\n:target: \n:server: 2b3f5d1c-9a7e-4a0e-8f11-2f6e0c9d1a44\n";

    #[test]
    fn what_psych_writes_for_a_broadcast_is_read() {
        let m = bus_message(BROADCAST).unwrap();
        assert_eq!(m.method, "chat");
        assert_eq!(m.kind.as_deref(), Some("ChatController"));
        assert_eq!(m.target, None);
        assert_eq!(
            m.server.as_deref(),
            Some("2b3f5d1c-9a7e-4a0e-8f11-2f6e0c9d1a44")
        );
        assert_eq!(
            Value::Array(m.data),
            json!(["hello there", 42, "sym", 3.5, true, null, {"name": "bob", "age": 7}, ["nested"]])
        );
    }

    #[test]
    fn quoting_block_scalars_and_unicasts() {
        let text = "---\n:method: :_push\n:data:\n- 'it''s'\n- \"tab\\there \\u00e9\"\n- |-\n  two\n  lines\n- \":not_a_symbol\"\n- []\n- {}\n:target: abc-12\n";
        let m = bus_message(text).unwrap();
        assert_eq!(m.method, "_push");
        assert_eq!(m.target.as_deref(), Some("abc-12"));
        assert_eq!(
            Value::Array(m.data),
            json!(["it's", "tab\there é", "two\nlines", ":not_a_symbol", [], {
            }])
        );
    }

    #[test]
    fn anything_outside_the_subset_is_an_error() {
        for bad in [
            "--- !ruby/object:Foo\nx: 1\n",
            ":method: &a :chat\n:data: *a\n:type: all\n",
            ":method: :m\n:data: [1, 2]\n:type: all\n",
            ":method: :m\n:method: :n\n:data: []\n:type: all\n",
            ":method: 'open\n:data: []\n:type: all\n",
            ":method: \"\\q\"\n:data: []\n:type: all\n",
            ":method: :m\n  :data: []\n",
            "\t:method: :m\n",
            "a: 1\n---\nb: 2\n",
        ] {
            assert!(parse(bad).is_err() || bus_message(bad).is_err(), "{bad:?}");
        }
        // Bounds: size, depth, values.
        assert!(parse(&"a".repeat(MAX_BYTES + 1)).is_err());
        let deep: String = (0..=MAX_DEPTH + 1)
            .map(|i| format!("{}k:\n", " ".repeat(i * 2)))
            .collect();
        assert!(parse(&deep).unwrap_err().message.contains("deeper"));
        let wide = "- 1\n".repeat(MAX_NODES + 1);
        assert!(parse(&wide).unwrap_err().message.contains("values"));
        // Missing fields.
        assert!(bus_message(":data: []\n:type: all\n").is_err());
        assert!(bus_message(":method: :m\n:type: all\n").is_err());
        assert!(bus_message(":method: :m\n:data: []\n").is_err());
    }
}
