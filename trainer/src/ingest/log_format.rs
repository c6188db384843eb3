//! Access logs in the operator's own format: an Apache `LogFormat` string
//! (`%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D`) or an nginx `log_format` one
//! (`$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent ...
//! $request_time`), compiled once into literals and fields and matched against each line.
//! A field ends where the literal after it begins (a quoted field at its closing quote, past
//! backslash escapes); a field with nothing after it runs to the end of the line. The response
//! time's unit comes from its directive (`%D` microseconds, `%T` seconds, `$request_time`
//! seconds), not from a guess.

use super::access_log::{AccessLine, LineError, ResponseTimeUnit, parse_clf_time};
use super::event::parse_rfc3339_utc;

/// What a field of the line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Client,
    /// `%t`: `[10/Oct/2000:13:55:36 -0700]`, brackets included.
    TimeBracketed,
    /// nginx `$time_local`: the same without brackets (the format has them as literals).
    TimeLocal,
    /// `$time_iso8601`.
    TimeIso8601,
    /// `%{sec}t`, `$msec`: Unix seconds (a fraction allowed).
    TimeEpoch,
    /// `%r`, `$request`: `METHOD /path PROTOCOL`.
    Request,
    Method,
    Path,
    Status,
    Bytes,
    Referrer,
    UserAgent,
    ResponseTime(ResponseTimeUnit),
    /// Anything else: skipped.
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Field(Field),
}

/// A compiled log format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    tokens: Vec<Token>,
}

/// Why a format string cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs, reason = "a variant's fields are named in its message")]
pub enum FormatError {
    #[error("log format: unknown directive {0:?}")]
    /// A directive this parser does not know.
    Unknown(String),
    #[error("log format: unsupported directive {0:?} ({1})")]
    /// A directive it knows but cannot use (why).
    Unsupported(String, &'static str),
    #[error("log format: {0:?} and the field before it have nothing between them to tell where one ends")]
    /// Two fields with nothing between them.
    Adjacent(String),
    #[error("log format: no {0} field ({1})")]
    /// A field every line needs is absent (which, and why).
    Missing(&'static str, &'static str),
}

impl LogFormat {
    /// Compiles an Apache (`%`) or nginx (`$`) format string.
    pub fn compile(spec: &str) -> Result<Self, FormatError> {
        let mut tokens: Vec<Token> = Vec::new();
        let mut literal = String::new();
        let mut rest = spec;
        while let Some(c) = rest.chars().next() {
            let (field, name, len) = match c {
                '%' => apache_directive(rest)?,
                '$' if rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '{') => {
                    nginx_variable(rest)?
                }
                _ => {
                    literal.push(c);
                    rest = &rest[c.len_utf8()..];
                    continue;
                }
            };
            rest = &rest[len..];
            let Some(field) = field else {
                literal.push('%'); // `%%`
                continue;
            };
            if !literal.is_empty() {
                tokens.push(Token::Literal(std::mem::take(&mut literal)));
            } else if matches!(tokens.last(), Some(Token::Field(_))) {
                return Err(FormatError::Adjacent(name.to_owned()));
            }
            tokens.push(Token::Field(field));
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        let has = |wanted: &[Field]| tokens.iter().any(|t| matches!(t, Token::Field(f) if wanted.contains(f)));
        if !has(&[Field::Client]) {
            return Err(FormatError::Missing("client address", "%h, %a or $remote_addr"));
        }
        if !has(&[Field::TimeBracketed, Field::TimeLocal, Field::TimeIso8601, Field::TimeEpoch]) {
            return Err(FormatError::Missing("time", "%t, %{sec}t, $time_local, $time_iso8601 or $msec"));
        }
        if !has(&[Field::Request, Field::Path]) {
            return Err(FormatError::Missing("request path", "%r, %U, $request or $request_uri"));
        }
        if !has(&[Field::Status]) {
            return Err(FormatError::Missing("status", "%s, %>s or $status"));
        }
        Ok(Self { tokens })
    }

    /// Parses one line; borrows from it and never panics.
    pub fn parse<'a>(&self, line: &'a str) -> Result<AccessLine<'a>, LineError> {
        let line = line.trim_end_matches(['\r', '\n']);
        let mut out = AccessLine {
            client: "",
            time: 0,
            method: "",
            path: "",
            status: 0,
            bytes: 0,
            referrer: None,
            user_agent: None,
            response_time: None,
            response_time_unit: None,
        };
        let mut rest = line;
        for (i, token) in self.tokens.iter().enumerate() {
            match token {
                Token::Literal(text) => rest = rest.strip_prefix(text.as_str()).ok_or(LineError::Mismatch)?,
                Token::Field(field) => {
                    let next = match self.tokens.get(i + 1) {
                        Some(Token::Literal(text)) => Some(text.as_str()),
                        _ => None,
                    };
                    let quoted = i > 0
                        && matches!(&self.tokens[i - 1], Token::Literal(t) if t.ends_with('"'))
                        && next.is_some_and(|n| n.starts_with('"'));
                    let (value, after) = split_field(rest, *field, next, quoted)?;
                    rest = after;
                    store(&mut out, *field, value)?;
                }
            }
        }
        if out.client.is_empty() || out.client == "-" {
            return Err(LineError::NoClient);
        }
        if out.path.is_empty() {
            return Err(LineError::BadRequest);
        }
        if out.status == 0 {
            return Err(LineError::BadStatus);
        }
        Ok(out)
    }
}

/// The field at the start of `rest` and what follows it.
fn split_field<'a>(
    rest: &'a str,
    field: Field,
    next: Option<&str>,
    quoted: bool,
) -> Result<(&'a str, &'a str), LineError> {
    if field == Field::TimeBracketed {
        let close = rest.strip_prefix('[').and_then(|r| r.find(']')).ok_or(LineError::NoTimestamp)?;
        return Ok((&rest[1..=close], &rest[close + 2..]));
    }
    let Some(next) = next else { return Ok((rest, "")) };
    let end = if quoted {
        // To the closing quote, past backslash escapes.
        let bytes = rest.as_bytes();
        let mut i = 0;
        loop {
            match bytes.get(i) {
                None => return Err(LineError::Mismatch),
                Some(b'\\') => i += 2,
                Some(b'"') => break i,
                Some(_) => i += 1,
            }
        }
    } else {
        rest.find(next).ok_or(LineError::Mismatch)?
    };
    Ok((&rest[..end], &rest[end..]))
}

fn store<'a>(out: &mut AccessLine<'a>, field: Field, value: &'a str) -> Result<(), LineError> {
    match field {
        Field::Client => out.client = value,
        Field::TimeBracketed | Field::TimeLocal => out.time = parse_clf_time(value).ok_or(LineError::BadTimestamp)?,
        Field::TimeIso8601 => out.time = parse_rfc3339_utc(value).ok_or(LineError::BadTimestamp)?,
        Field::TimeEpoch => {
            let seconds: f64 = value.parse().map_err(|_| LineError::BadTimestamp)?;
            if !(0.0..1e11).contains(&seconds) {
                return Err(LineError::BadTimestamp);
            }
            out.time = seconds as u64;
        }
        Field::Request => {
            let mut parts = value.split(' ');
            match (parts.next(), parts.next()) {
                (Some(m), Some(p)) if !m.is_empty() && p.starts_with('/') => (out.method, out.path) = (m, p),
                _ => return Err(LineError::BadRequest),
            }
        }
        Field::Method => out.method = value,
        Field::Path if value.starts_with('/') => out.path = value,
        Field::Path => return Err(LineError::BadRequest),
        Field::Status => {
            out.status = value.parse().ok().filter(|s| (100..=599).contains(s)).ok_or(LineError::BadStatus)?;
        }
        Field::Bytes => out.bytes = if value == "-" { 0 } else { value.parse().map_err(|_| LineError::BadBytes)? },
        Field::Referrer => out.referrer = Some(value),
        Field::UserAgent => out.user_agent = Some(value),
        Field::ResponseTime(unit) => {
            if value != "-" && !value.is_empty() {
                out.response_time = Some(value);
                out.response_time_unit = Some(unit);
            }
        }
        Field::Ignored => {}
    }
    Ok(())
}

/// One Apache directive at the start of `spec` (which starts with `%`): the field (`None` for
/// `%%`), its text, and its length.
fn apache_directive(spec: &str) -> Result<(Option<Field>, &str, usize), FormatError> {
    let bytes = spec.as_bytes();
    let mut i = 1;
    // Conditions and redirect modifiers: `%>s`, `%<s`, `%400,501{User-agent}i`, `%!200r`.
    while i < bytes.len() && matches!(bytes[i], b'<' | b'>' | b'!' | b',' | b'0'..=b'9') {
        i += 1;
    }
    let argument = if bytes.get(i) == Some(&b'{') {
        let close = spec[i..].find('}').ok_or_else(|| FormatError::Unknown(spec.to_owned()))? + i;
        let argument = &spec[i + 1..close];
        i = close + 1;
        Some(argument)
    } else {
        None
    };
    let letter = spec[i..].chars().next().ok_or_else(|| FormatError::Unknown(spec.to_owned()))?;
    let len = i + letter.len_utf8();
    let name = &spec[..len];
    let arg = argument.map(str::to_ascii_lowercase);
    let field = match (letter, arg.as_deref()) {
        ('%', None) => return Ok((None, name, len)),
        ('h' | 'a', _) => Field::Client,
        ('t', None) => Field::TimeBracketed,
        ('t', Some("sec")) => Field::TimeEpoch,
        ('t', Some(_)) => return Err(FormatError::Unsupported(name.to_owned(), "use %t or %{sec}t")),
        ('r', None) => Field::Request,
        ('m', None) => Field::Method,
        ('U', None) => Field::Path,
        ('s', None) => Field::Status,
        ('b' | 'B' | 'O', None) => Field::Bytes,
        ('i', Some("referer" | "referrer")) => Field::Referrer,
        ('i', Some("user-agent")) => Field::UserAgent,
        ('D', None) | ('T', Some("us")) => Field::ResponseTime(ResponseTimeUnit::Microseconds),
        ('T', Some("ms")) => Field::ResponseTime(ResponseTimeUnit::Milliseconds),
        ('T', None | Some("s")) => Field::ResponseTime(ResponseTimeUnit::Seconds),
        ('i' | 'o' | 'C' | 'e' | 'n' | 'p' | 'P' | '^', Some(_)) => Field::Ignored,
        ('l' | 'u' | 'q' | 'H' | 'v' | 'V' | 'p' | 'P' | 'X' | 'k' | 'L' | 'f' | 'I' | 'S' | 'R' | 'A', None) => {
            Field::Ignored
        }
        _ => return Err(FormatError::Unknown(name.to_owned())),
    };
    Ok((Some(field), name, len))
}

/// One nginx variable at the start of `spec` (`$name` or `${name}`).
fn nginx_variable(spec: &str) -> Result<(Option<Field>, &str, usize), FormatError> {
    let (name, len) = if let Some(braced) = spec.strip_prefix("${") {
        let close = braced.find('}').ok_or_else(|| FormatError::Unknown(spec.to_owned()))?;
        (&braced[..close], close + 3)
    } else {
        let end = spec[1..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(spec.len(), |e| e + 1);
        (&spec[1..end], end)
    };
    let field = match name {
        "remote_addr" | "binary_remote_addr" => Field::Client,
        "time_local" => Field::TimeLocal,
        "time_iso8601" => Field::TimeIso8601,
        "msec" => Field::TimeEpoch,
        "request" => Field::Request,
        "request_method" => Field::Method,
        "request_uri" | "uri" | "document_uri" => Field::Path,
        "status" => Field::Status,
        "body_bytes_sent" | "bytes_sent" => Field::Bytes,
        "http_referer" => Field::Referrer,
        "http_user_agent" => Field::UserAgent,
        "request_time" => Field::ResponseTime(ResponseTimeUnit::Seconds),
        _ => Field::Ignored,
    };
    Ok((Some(field), &spec[..len], len))
}

#[cfg(test)]
mod tests;
