//! SMTP: a real server on `aiosmtpd`, run from a small handler script (kept in
//! this crate as `smtp_server.py`, written beside the server's log at start).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{AIOSMTPD, Process};

/// The handler script, run with the Python that has aiosmtpd.
const SCRIPT: &str = include_str!("smtp_server.py");

/// The one user the SMTP server lets log in.
pub const SMTP_USER: &str = "mailer";
/// [`SMTP_USER`]'s password; any other is refused with 535.
pub const SMTP_PASSWORD: &str = "correct-horse-battery-staple";
/// A recipient the server refuses with a transient `451` (try again later).
pub const SMTP_TRANSIENT_FAILURE: &str = "busy@example.org";
/// A recipient the server refuses with a permanent `550` (no such user).
pub const SMTP_PERMANENT_FAILURE: &str = "unknown@example.org";

/// An SMTP server (aiosmtpd) on a free loopback port, stopped on drop.
///
/// Plain SMTP without TLS; it offers `AUTH PLAIN` and `LOGIN` and requires a
/// login before `MAIL FROM` (`530` otherwise); only [`SMTP_USER`] with
/// [`SMTP_PASSWORD`] logs in (`535` otherwise). Every message it accepts is
/// kept for [`SmtpServer::messages`]. [`SMTP_TRANSIENT_FAILURE`] and
/// [`SMTP_PERMANENT_FAILURE`] are refused as recipients with `451` and `550`.
#[derive(Debug)]
pub struct SmtpServer {
    _process: Process,
    maildir: PathBuf,
    /// Its host, `127.0.0.1`.
    pub host: String,
    /// Its port.
    pub port: u16,
}

/// One message the SMTP server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpMessage {
    /// The envelope sender (`MAIL FROM`).
    pub mail_from: String,
    /// The envelope recipients (`RCPT TO`) it accepted.
    pub rcpt_tos: Vec<String>,
    /// Who logged in to send it.
    pub login: Option<String>,
    /// The raw message (headers and body, as sent, CRLF line ends).
    pub data: String,
}

/// One leaf part of a received message (a body or an attachment), decoded
/// from its transfer encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimePart {
    /// Its `Content-Type` (`text/plain; charset=utf-8`, `image/jpeg`...).
    pub content_type: String,
    /// The file name of an attachment (`Content-Disposition` or `Content-Type`'s `name`).
    pub filename: Option<String>,
    /// The decoded bytes.
    pub body: Vec<u8>,
}

impl MimePart {
    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl SmtpMessage {
    /// A top-level header's value, unfolded and with RFC 2047 encoded words
    /// decoded (`Subject`, `To`...); names are case-insensitive.
    pub fn header(&self, name: &str) -> Option<String> {
        let (head, _) = split_head_body(&self.data);
        headers(head)
            .into_iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| decode_words(&value))
    }

    /// The leaf parts of the message, depth first (a message that is not
    /// multipart is one part), each decoded from base64 or quoted-printable.
    pub fn parts(&self) -> Vec<MimePart> {
        let mut parts = Vec::new();
        collect_parts(&self.data, &mut parts);
        parts
    }

    /// The first part whose `Content-Type` starts with `content_type`
    /// (`text/plain`, `text/html`, `image/`).
    pub fn part(&self, content_type: &str) -> Option<MimePart> {
        self.parts()
            .into_iter()
            .find(|part| part.content_type.starts_with(content_type))
    }
}

fn split_head_body(raw: &str) -> (&str, &str) {
    for separator in ["\r\n\r\n", "\n\n"] {
        if let Some(at) = raw.find(separator) {
            return (&raw[..at], &raw[at + separator.len()..]);
        }
    }
    (raw, "")
}

/// The headers of a head, folded lines joined.
fn headers(head: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push_str(line);
            }
        } else if let Some((key, value)) = line.split_once(':') {
            out.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    out
}

/// A parameter of a header value (`boundary`, `filename`, `name`), unquoted.
fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|part| {
        let (key, value) = part.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

fn collect_parts(raw: &str, parts: &mut Vec<MimePart>) {
    let (head, body) = split_head_body(raw);
    let headers = headers(head);
    let get = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    let content_type = get("Content-Type").unwrap_or_else(|| "text/plain".into());
    if content_type.to_ascii_lowercase().starts_with("multipart/") {
        let boundary = parameter(&content_type, "boundary").unwrap_or_default();
        let delimiter = format!("--{boundary}");
        let mut current: Option<Vec<&str>> = None;
        for line in body.split("\r\n") {
            if line.trim_end() == delimiter || line.trim_end() == format!("{delimiter}--") {
                if let Some(lines) = current.take() {
                    collect_parts(&lines.join("\r\n"), parts);
                }
                if line.trim_end() == delimiter {
                    current = Some(Vec::new());
                }
            } else if let Some(lines) = current.as_mut() {
                lines.push(line);
            }
        }
        return;
    }
    let encoding = get("Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let body = match encoding.as_str() {
        "base64" => {
            use base64::Engine as _;
            let clean: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(clean)
                .unwrap_or_else(|e| panic!("a base64 part does not decode: {e}"))
        }
        "quoted-printable" => quoted_printable(body),
        _ => body.as_bytes().to_vec(),
    };
    let filename = get("Content-Disposition")
        .and_then(|value| parameter(&value, "filename"))
        .or_else(|| parameter(&content_type, "name"));
    parts.push(MimePart {
        content_type,
        filename,
        body,
    });
}

fn quoted_printable(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' if bytes[i + 1..].starts_with(b"\n") => i += 2,
            b'=' => {
                let byte = text
                    .get(i + 1..i + 3)
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                match byte {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`);
/// the white space between two encoded words is dropped.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let before = &rest[..start];
        let word = rest[start + 2..].splitn(3, '?').collect::<Vec<_>>();
        let decoded = match word.as_slice() {
            [_charset, encoding, tail] => tail.find("?=").and_then(|end| {
                let text = &tail[..end];
                let bytes = match encoding.to_ascii_lowercase().as_str() {
                    "b" => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD
                            .decode(text)
                            .ok()?
                    }
                    "q" => quoted_printable(&text.replace('_', " ")),
                    _ => return None,
                };
                let consumed = start + 2 + word[0].len() + 1 + word[1].len() + 1 + end + 2;
                Some((String::from_utf8_lossy(&bytes).into_owned(), consumed))
            }),
            _ => None,
        };
        match decoded {
            Some((text, consumed)) => {
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = &rest[consumed..];
                last_was_word = true;
            }
            None => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Starts the SMTP server, or explains why not: under CI that is a failure,
/// never a skip.
pub fn smtp() -> Option<SmtpServer> {
    let (process, port) = AIOSMTPD.start(|port, scratch| {
        let script = scratch.join("smtp_server.py");
        std::fs::write(&script, SCRIPT)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", script.display()));
        vec![
            // Unbuffered, so that a failed start's log is complete.
            "-u".into(),
            script.display().to_string(),
            port.to_string(),
            scratch.join("mail").display().to_string(),
            SMTP_USER.into(),
            SMTP_PASSWORD.into(),
        ]
    })?;
    let maildir = process.scratch.join("mail");
    Some(SmtpServer {
        _process: process,
        maildir,
        host: "127.0.0.1".into(),
        port,
    })
}

impl SmtpServer {
    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The messages accepted so far, oldest first.
    pub fn messages(&self) -> Vec<SmtpMessage> {
        let Ok(entries) = std::fs::read_dir(&self.maildir) else {
            return Vec::new();
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension().is_some_and(|ext| ext == "json")
                    && !path
                        .file_name()
                        .is_some_and(|name| name.to_string_lossy().starts_with('.'))
            })
            .collect();
        names.sort();
        names
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let record: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
                let text_of = |key: &str| record[key].as_str().map(str::to_string);
                SmtpMessage {
                    mail_from: text_of("mail_from").unwrap_or_default(),
                    rcpt_tos: record["rcpt_tos"]
                        .as_array()
                        .map(|list| {
                            list.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    login: text_of("login"),
                    data: text_of("data").unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Waits (10 s at most) until at least `count` messages were accepted,
    /// and returns them all; panics when they do not arrive.
    pub fn wait_for_messages(&self, count: usize) -> Vec<SmtpMessage> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP server accepted {} messages, not {count}",
                messages.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
