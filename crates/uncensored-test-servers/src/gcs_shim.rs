//! A small HTTP/1.1 shim in front of gcp-storage-emulator, so that
//! object_store 0.14's `GoogleCloudStorage` can use the emulator's storage.
//!
//! object_store speaks GCS's XML API (`/{bucket}/{object}`, `/{bucket}?list-type=2`).
//! gcp-storage-emulator 2026.7.19 implements the JSON API
//! (`/storage/v1`, `/upload/storage/v1`, `/download/storage/v1`) but only a
//! sliver of the XML API, and what it has is not enough:
//!
//! - its XML `PUT` stores the object but answers without `ETag` or
//!   `x-goog-generation` (object_store fails every put with "missing ETag"),
//!   and it parses a body sent as `Content-Type: application/json` as JSON
//!   (the upload then dies without a response) and un-gzips one sent with
//!   `Content-Encoding: gzip`;
//! - its XML `GET` has no `ETag` and no `Last-Modified` (object_store fails
//!   every get), and understands only `Range: bytes=a-b` and `bytes=a-`;
//! - `HEAD`, XML `DELETE` and the XML bucket listing answer 501;
//! - it ignores every precondition (`x-goog-if-generation-match`, and
//!   `ifGenerationMatch` on the JSON API), so a `PutMode::Create` would
//!   silently overwrite.
//!
//! The shim therefore answers the XML-API requests itself, with the
//! emulator's JSON API as its storage:
//!
//! - `PUT /{bucket}/{object}`: checks `x-goog-if-generation-match` (`0` =
//!   "only if absent", or a generation) against the object's JSON metadata,
//!   answering 412 `PreconditionFailed` like GCS when it does not hold; then
//!   stores the body with a JSON-API multipart upload (the body base64-encoded,
//!   so it is stored byte for byte whatever its type), carrying
//!   `Content-Type`, `Cache-Control`, `Content-Disposition`,
//!   `Content-Encoding`, `Content-Language`, `x-goog-storage-class` and
//!   `x-goog-meta-*` as object metadata; answers with `ETag` (the quoted hex
//!   MD5, as GCS does for simple uploads), `x-goog-generation` and
//!   `x-goog-hash`;
//! - `GET` and `HEAD /{bucket}/{object}`: read the JSON metadata (404
//!   `NoSuchKey` when absent) and, for `GET`, the content; answer with
//!   `Content-Length`, `ETag`, `Last-Modified` (the metadata's `updated`),
//!   `x-goog-generation`, `Content-Type` and the other metadata headers.
//!   `?generation=` must name the live generation (the emulator keeps no
//!   older ones). `Range` (`bytes=a-b`, `bytes=a-`, `bytes=-n`) is cut by the
//!   shim (206 with `Content-Range`, or 416); `If-Match`, `If-None-Match`,
//!   `If-Modified-Since` and `If-Unmodified-Since` are checked by it;
//! - `DELETE /{bucket}/{object}`: the JSON API's delete (204, or 404);
//! - `GET /{bucket}?list-type=2`: the JSON API's `objects.list` with `prefix`
//!   and `delimiter`, turned into a `ListBucketResult` (404 `NoSuchBucket`
//!   for a missing bucket); `max-keys`, `start-after` and
//!   `continuation-token` are applied by the shim over the full listing.
//!
//! Every request to the emulator is made under one mutex, held across a
//! precondition check and the write it guards, so a conditional create is
//! atomic with respect to every other request through the shim (the emulator
//! itself serves one request at a time). Requests made to the emulator
//! directly bypass that.
//!
//! Everything else (the JSON API, under `/storage/v1`, `/upload`,
//! `/download`, `/batch`, `/b/...`, and `/`) is forwarded unchanged, so
//! bucket names `storage`, `upload`, `download`, `batch`, `b` and `wipe`
//! cannot be used through the shim.
//!
//! What a test through the shim therefore does NOT prove: that real GCS's
//! XML API behaves like this (its headers, status codes and error bodies here
//! are the shim's imitation); XML multipart uploads (`?uploads`,
//! `?uploadId=`; answered 501), copies (`x-goog-copy-source`; 501), other
//! preconditions (`x-goog-if-metageneration-match`; 501), and signed URLs
//! (the shim, like the emulator, checks no signature and no expiry: a signed
//! URL is served like any unsigned request). Authentication is not checked
//! either. Each connection serves one request and is closed
//! (`Connection: close`); the shim listens on `127.0.0.1` only.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::http;

/// The largest request head (request line and headers) the shim reads.
const MAX_HEAD: usize = 64 * 1024;
/// How long the shim waits for a client to send its request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP dates, as in `Last-Modified`.
const HTTP_DATE: &str = "%a, %d %b %Y %H:%M:%S GMT";
/// The first path segments the emulator uses for its own API: requests under
/// them are forwarded unchanged instead of being taken as XML-API buckets.
const EMULATOR_PATHS: [&str; 7] = ["", "storage", "upload", "download", "batch", "b", "wipe"];

/// The shim's listening thread; stopped (no new connections) on drop.
#[derive(Debug)]
pub(crate) struct GcsShim {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// What every connection thread shares.
#[derive(Debug)]
struct Shared {
    /// The emulator's base URL, `http://127.0.0.1:PORT`.
    emulator: String,
    /// Held around every exchange with the emulator.
    lock: Mutex<()>,
}

impl GcsShim {
    /// Listens on a free `127.0.0.1` port and serves each connection on its
    /// own thread, in front of the emulator at `emulator`.
    pub(crate) fn start(emulator: String) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            emulator,
            lock: Mutex::new(()),
        });
        let accept = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("gcs-shim".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let shared = Arc::clone(&shared);
                        let _ = std::thread::Builder::new()
                            .name("gcs-shim-connection".into())
                            .spawn(move || serve(&shared, stream));
                    }
                })?
        };
        Ok(Self {
            address,
            stop,
            accept: Some(accept),
        })
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for GcsShim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

// ------------------------------------------------------------- HTTP plumbing

/// A request as read from a client, its body de-chunked.
#[derive(Debug)]
struct Request {
    method: String,
    /// The path, still percent-encoded.
    path: String,
    /// The query string after `?`, still encoded (empty when none).
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The first query parameter called `name`, decoded.
    fn param(&self, name: &str) -> Option<String> {
        self.query
            .split('&')
            .filter_map(|pair| match pair.split_once('=') {
                Some((key, value)) => Some((key, value)),
                None if !pair.is_empty() => Some((pair, "")),
                None => None,
            })
            .find(|(key, _)| query_decode(key) == name)
            .map(|(_, value)| query_decode(value))
    }
}

/// A response to write back to the client.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn with_body(mut self, content_type: &str, body: Vec<u8>) -> Self {
        self.body = body;
        self.with_header("Content-Type", content_type)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Serves one request on `stream` and closes it.
fn serve(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let (head_only, response) = match read_request(&mut reader, &mut writer) {
        Ok(request) => (request.method == "HEAD", handle(shared, &request)),
        Err(why) => (false, xml_error(400, "InvalidArgument", &why)),
    };
    let _ = write_response(&mut writer, response, head_only);
    let _ = writer.shutdown(std::net::Shutdown::Both);
}

/// Reads one request: the head, then a `Content-Length` or chunked body.
fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> Result<Request, String> {
    let mut lines = Vec::new();
    let mut size = 0;
    loop {
        let mut line = String::new();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the request: {e}"))?;
        size += read;
        if read == 0 || size > MAX_HEAD {
            return Err("incomplete or oversized request head".into());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let mut lines = lines.into_iter();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(format!("bad request line {request_line:?}"));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| {
            line.split_once(':')
                .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        })
        .collect();
    if header(&headers, "expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        writer
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|e| e.to_string())?;
    }
    let body = if header(&headers, "transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        read_chunked(reader)?
    } else if let Some(length) = header(&headers, "content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("bad Content-Length {length:?}"))?;
        let mut body = vec![0; length];
        reader
            .read_exact(&mut body)
            .map_err(|e| format!("cannot read the body: {e}"))?;
        body
    } else {
        Vec::new()
    };
    Ok(Request {
        method: method.to_ascii_uppercase(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
    })
}

/// Reads a chunked body, and the trailers after it.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| format!("bad chunk size {:?}", line.trim()))?;
        if size == 0 {
            break;
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|e| e.to_string())?;
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
    }
    // Trailers, up to the empty line.
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if read == 0 || line.trim().is_empty() {
            return Ok(body);
        }
    }
}

/// Writes `response` with `Connection: close`. `Content-Length` is the body's
/// length unless the handler set it (a `HEAD` names the object's size); no
/// body is written for `HEAD`, 204 and 304.
fn write_response(
    stream: &mut TcpStream,
    response: Response,
    head_only: bool,
) -> std::io::Result<()> {
    let Response {
        status,
        mut headers,
        body,
    } = response;
    let bodiless = matches!(status, 204 | 304);
    if !bodiless && header(&headers, "content-length").is_none() {
        headers.push(("Content-Length".into(), body.len().to_string()));
    }
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in &headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    if !head_only && !bodiless {
        stream.write_all(&body)?;
    }
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        _ => "Status",
    }
}

/// A GCS-style XML error.
fn xml_error(status: u16, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{}</Message></Error>",
        xml_escape(message)
    );
    Response::new(status).with_body("application/xml; charset=UTF-8", body.into_bytes())
}

fn not_implemented(what: &str) -> Response {
    xml_error(
        501,
        "NotImplemented",
        &format!("{what} is not implemented by the GCS emulator's shim"),
    )
}

/// An answer from the emulator that the shim did not expect.
fn bad_gateway(what: &str, response: &http::Response) -> Response {
    xml_error(
        502,
        "InternalError",
        &format!(
            "{what}: the emulator answered {}: {}",
            response.status,
            response.text().trim()
        ),
    )
}

// ------------------------------------------------------------------ routing

/// Answers one request: the XML API's object and bucket requests itself, the
/// rest forwarded.
fn handle(shared: &Shared, request: &Request) -> Response {
    let path = request.path.strip_prefix('/').unwrap_or(&request.path);
    let (bucket, object) = match path.split_once('/') {
        Some((bucket, object)) => (bucket, Some(object)),
        None => (path, None),
    };
    // One exchange with the emulator at a time: a precondition check and the
    // write it guards are one step for every other request through the shim.
    let _guard = shared.lock.lock().unwrap_or_else(PoisonError::into_inner);
    if EMULATOR_PATHS.contains(&bucket) {
        return forward(shared, request);
    }
    let bucket = percent_decode(bucket);
    let object = object.filter(|o| !o.is_empty()).map(percent_decode);
    let (bucket, object) = match (bucket, object.transpose()) {
        (Ok(bucket), Ok(object)) => (bucket, object),
        _ => return xml_error(400, "InvalidArgument", "the path is not UTF-8"),
    };
    let unsupported = request.headers.iter().find(|(name, _)| {
        let name = name.to_ascii_lowercase();
        name.starts_with("x-goog-if-") && name != "x-goog-if-generation-match"
            || name == "x-goog-copy-source"
    });
    if let Some((name, _)) = unsupported {
        return not_implemented(name);
    }
    let multipart = ["uploads", "uploadId"]
        .iter()
        .any(|name| request.param(name).is_some());
    let emulator = Emulator(&shared.emulator);
    match (request.method.as_str(), object) {
        (_, Some(_)) if multipart => not_implemented("An XML multipart upload"),
        ("GET", None) => list(emulator, request, &bucket),
        ("GET" | "HEAD", Some(object)) => get(emulator, request, &bucket, &object),
        ("PUT", Some(object)) => put(emulator, request, &bucket, &object),
        ("DELETE", Some(object)) => delete(emulator, &bucket, &object),
        (method, _) => not_implemented(&format!("{method} {}", request.path)),
    }
}

/// Sends `request` on to the emulator as it is, and its answer back.
fn forward(shared: &Shared, request: &Request) -> Response {
    let skip = [
        "host",
        "content-length",
        "connection",
        "transfer-encoding",
        "expect",
    ];
    let headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .filter(|(name, _)| !skip.contains(&name.to_ascii_lowercase().as_str()))
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let target = match request.query.as_str() {
        "" => request.path.clone(),
        query => format!("{}?{query}", request.path),
    };
    let url = format!("{}{target}", shared.emulator);
    match http::request(&request.method, &url, &headers, &request.body) {
        Ok(answer) => {
            let mut response = Response::new(answer.status);
            response.headers = answer
                .headers
                .into_iter()
                .filter(|(name, _)| !skip.contains(&name.to_ascii_lowercase().as_str()))
                .collect();
            response.body = answer.body;
            response
        }
        Err(error) => xml_error(502, "InternalError", &format!("the emulator: {error}")),
    }
}

// ---------------------------------------------------- the emulator's JSON API

/// The emulator, reached through its JSON API.
#[derive(Clone, Copy)]
struct Emulator<'a>(&'a str);

impl Emulator<'_> {
    fn call(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<http::Response, Response> {
        http::request(method, &format!("{}{target}", self.0), headers, body)
            .map_err(|error| xml_error(502, "InternalError", &format!("the emulator: {error}")))
    }

    /// The object's JSON metadata, or `None` when it (or its bucket) is absent.
    fn metadata(&self, bucket: &str, object: &str) -> Result<Option<Value>, Response> {
        let target = format!(
            "/storage/v1/b/{}/o/{}",
            percent_encode(bucket),
            percent_encode(object)
        );
        let answer = self.call("GET", &target, &[], b"")?;
        match answer.status {
            200 => serde_json::from_slice(&answer.body)
                .map(Some)
                .map_err(|e| xml_error(502, "InternalError", &format!("bad metadata: {e}"))),
            404 => Ok(None),
            _ => Err(bad_gateway("reading the metadata", &answer)),
        }
    }
}

/// A string field of the emulator's JSON (`"size"` and `"generation"` are strings).
fn field<'a>(json: &'a Value, name: &str) -> &'a str {
    json.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// The XML API's ETag: the quoted hex MD5, or the generation without one.
fn etag(metadata: &Value) -> String {
    match BASE64.decode(field(metadata, "md5Hash")) {
        Ok(md5) if !md5.is_empty() => {
            let hex: String = md5.iter().map(|byte| format!("{byte:02x}")).collect();
            format!("\"{hex}\"")
        }
        _ => format!("\"{}\"", field(metadata, "generation")),
    }
}

/// The metadata's `updated` time.
fn updated(metadata: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(field(metadata, "updated"))
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// The headers GCS sends with an object: validators, generation, hashes
/// and the metadata that object_store reads back as attributes.
fn object_headers(response: Response, metadata: &Value) -> Response {
    let mut response = response
        .with_header("ETag", etag(metadata))
        .with_header("x-goog-generation", field(metadata, "generation"))
        .with_header("x-goog-metageneration", field(metadata, "metageneration"));
    if let Some(time) = updated(metadata) {
        response = response.with_header("Last-Modified", time.format(HTTP_DATE).to_string());
    }
    let (crc32c, md5) = (field(metadata, "crc32c"), field(metadata, "md5Hash"));
    if !crc32c.is_empty() && !md5.is_empty() {
        response = response.with_header("x-goog-hash", format!("crc32c={crc32c},md5={md5}"));
    }
    response
}

/// Cache-Control and the like, the user metadata, and the content type.
fn content_headers(mut response: Response, metadata: &Value) -> Response {
    for (header, key) in ATTRIBUTES {
        let value = field(metadata, key);
        if !value.is_empty() {
            response = response.with_header(header, value);
        }
    }
    if let Some(user) = metadata.get("metadata").and_then(Value::as_object) {
        for (key, value) in user {
            if let Some(value) = value.as_str() {
                response = response.with_header(&format!("x-goog-meta-{key}"), value);
            }
        }
    }
    response
}

/// The XML API's headers and the JSON metadata fields they stand for.
const ATTRIBUTES: [(&str, &str); 6] = [
    ("Content-Type", "contentType"),
    ("Cache-Control", "cacheControl"),
    ("Content-Disposition", "contentDisposition"),
    ("Content-Encoding", "contentEncoding"),
    ("Content-Language", "contentLanguage"),
    ("x-goog-storage-class", "storageClass"),
];

// --------------------------------------------------------- the XML requests

/// `GET` or `HEAD /{bucket}/{object}`.
fn get(emulator: Emulator, request: &Request, bucket: &str, object: &str) -> Response {
    let metadata = match emulator.metadata(bucket, object) {
        Ok(Some(metadata)) => metadata,
        Ok(None) => return no_such_key(object),
        Err(response) => return response,
    };
    if request
        .param("generation")
        .is_some_and(|generation| generation != field(&metadata, "generation"))
    {
        return no_such_key(object);
    }
    if let Some(refused) = check_get_preconditions(request, &metadata) {
        return object_headers(refused, &metadata);
    }
    let size = field(&metadata, "size");
    let response = content_headers(object_headers(Response::new(200), &metadata), &metadata)
        .with_header("Accept-Ranges", "bytes");
    if request.method == "HEAD" {
        return response
            .with_header("Content-Length", size)
            .with_header("x-goog-stored-content-length", size);
    }
    let target = format!(
        "/download/storage/v1/b/{}/o/{}?alt=media",
        percent_encode(bucket),
        percent_encode(object)
    );
    let content = match emulator.call("GET", &target, &[], b"") {
        Ok(answer) if answer.status == 200 => answer.body,
        Ok(answer) if answer.status == 404 => return no_such_key(object),
        Ok(answer) => return bad_gateway("downloading", &answer),
        Err(response) => return response,
    };
    let length = content.len();
    let mut response = response.with_header("x-goog-stored-content-length", length.to_string());
    match request
        .header("range")
        .map(|range| parse_range(range, length))
    {
        Some(Some(Ok((start, end)))) => {
            response.status = 206;
            response.body = content[start..=end].to_vec();
            response.with_header("Content-Range", format!("bytes {start}-{end}/{length}"))
        }
        Some(Some(Err(()))) => {
            let refused = xml_error(
                416,
                "InvalidRange",
                "The requested range cannot be satisfied.",
            );
            refused.with_header("Content-Range", format!("bytes */{length}"))
        }
        // No Range, or one the shim does not understand: the whole object.
        Some(None) | None => {
            response.body = content;
            response
        }
    }
}

/// 412 or 304 when `If-Match`, `If-None-Match`, `If-Unmodified-Since` or
/// `If-Modified-Since` says so (RFC 9110 § 13.2.2 order).
fn check_get_preconditions(request: &Request, metadata: &Value) -> Option<Response> {
    let etag = etag(metadata);
    let matches = |list: &str| {
        list.split(',')
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == "*" || tag.trim_matches('"') == etag.trim_matches('"'))
    };
    let modified = updated(metadata).map(|time| time.timestamp());
    let date = |name: &str| {
        request
            .header(name)
            .and_then(|date| DateTime::parse_from_rfc2822(date).ok())
            .map(|date| date.timestamp())
    };
    let precondition_failed = || {
        xml_error(
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold.",
        )
    };
    if let Some(list) = request.header("if-match") {
        if !matches(list) {
            return Some(precondition_failed());
        }
    } else if let (Some(since), Some(modified)) = (date("if-unmodified-since"), modified)
        && modified > since
    {
        return Some(precondition_failed());
    }
    if let Some(list) = request.header("if-none-match") {
        if matches(list) {
            return Some(Response::new(304));
        }
    } else if let (Some(since), Some(modified)) = (date("if-modified-since"), modified)
        && modified <= since
    {
        return Some(Response::new(304));
    }
    None
}

/// A `Range: bytes=...` header against an object of `length` bytes: the
/// inclusive byte span, `Err` when unsatisfiable, `None` when not understood.
fn parse_range(range: &str, length: usize) -> Option<Result<(usize, usize), ()>> {
    let spec = range.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let suffix: usize = last.parse().ok()?;
        return Some(if suffix == 0 || length == 0 {
            Err(())
        } else {
            Ok((length.saturating_sub(suffix), length - 1))
        });
    }
    let start: usize = first.parse().ok()?;
    let end = match last {
        "" => usize::MAX,
        last => last.parse().ok()?,
    };
    if end < start {
        return None;
    }
    Some(if start >= length {
        Err(())
    } else {
        Ok((start, end.min(length - 1)))
    })
}

/// `PUT /{bucket}/{object}`, with `x-goog-if-generation-match` checked first.
fn put(emulator: Emulator, request: &Request, bucket: &str, object: &str) -> Response {
    if let Some(expected) = request.header("x-goog-if-generation-match") {
        let current = match emulator.metadata(bucket, object) {
            Ok(metadata) => metadata.map(|m| field(&m, "generation").to_string()),
            Err(response) => return response,
        };
        // Generation 0 names an object that does not exist.
        if current.as_deref().unwrap_or("0") != expected.trim() {
            return xml_error(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold.",
            );
        }
    }
    let mut resource = serde_json::Map::new();
    resource.insert("name".into(), object.into());
    let content_type = request
        .header("content-type")
        .unwrap_or("application/octet-stream");
    resource.insert("contentType".into(), content_type.into());
    for (header, key) in &ATTRIBUTES[1..] {
        if let Some(value) = request.header(header) {
            resource.insert((*key).into(), value.into());
        }
    }
    let user: serde_json::Map<String, Value> = request
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            let key = name.strip_prefix("x-goog-meta-")?;
            Some((key.to_string(), Value::from(value.as_str())))
        })
        .collect();
    if !user.is_empty() {
        resource.insert("metadata".into(), user.into());
    }
    // A multipart upload with the content base64-encoded: the emulator then
    // neither parses it as JSON nor un-gzips it.
    let boundary = "uncensored-gcs-shim-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{}\r\n\
         --{boundary}\r\nContent-Type: application/octet-stream\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--{boundary}--\r\n",
        Value::Object(resource),
        BASE64.encode(&request.body)
    );
    let target = format!(
        "/upload/storage/v1/b/{}/o?uploadType=multipart",
        percent_encode(bucket)
    );
    let multipart = format!("multipart/related; boundary={boundary}");
    let answer = match emulator.call(
        "POST",
        &target,
        &[("Content-Type", multipart.as_str())],
        body.as_bytes(),
    ) {
        Ok(answer) => answer,
        Err(response) => return response,
    };
    match answer.status {
        200 => match serde_json::from_slice::<Value>(&answer.body) {
            Ok(metadata) => object_headers(Response::new(200), &metadata),
            Err(e) => xml_error(502, "InternalError", &format!("bad upload answer: {e}")),
        },
        404 => no_such_bucket(bucket),
        _ => bad_gateway("uploading", &answer),
    }
}

/// `DELETE /{bucket}/{object}`.
fn delete(emulator: Emulator, bucket: &str, object: &str) -> Response {
    let target = format!(
        "/storage/v1/b/{}/o/{}",
        percent_encode(bucket),
        percent_encode(object)
    );
    match emulator.call("DELETE", &target, &[], b"") {
        Ok(answer) if answer.is_success() => Response::new(204),
        Ok(answer) if answer.status == 404 => no_such_key(object),
        Ok(answer) => bad_gateway("deleting", &answer),
        Err(response) => response,
    }
}

/// `GET /{bucket}?list-type=2&prefix=&delimiter=&max-keys=&start-after=&continuation-token=`.
fn list(emulator: Emulator, request: &Request, bucket: &str) -> Response {
    let prefix = request.param("prefix").unwrap_or_default();
    let delimiter = request.param("delimiter").unwrap_or_default();
    let mut target = format!("/storage/v1/b/{}/o?", percent_encode(bucket));
    if !prefix.is_empty() {
        target.push_str(&format!("prefix={}&", percent_encode(&prefix)));
    }
    if !delimiter.is_empty() {
        target.push_str(&format!("delimiter={}&", percent_encode(&delimiter)));
    }
    let answer = match emulator.call("GET", target.trim_end_matches(['?', '&']), &[], b"") {
        Ok(answer) if answer.status == 200 => answer,
        Ok(answer) if answer.status == 404 => return no_such_bucket(bucket),
        Ok(answer) => return bad_gateway("listing", &answer),
        Err(response) => return response,
    };
    let listing: Value = match serde_json::from_slice(&answer.body) {
        Ok(listing) => listing,
        Err(e) => return xml_error(502, "InternalError", &format!("bad listing: {e}")),
    };
    // Objects and common prefixes in one key order, as S3-style pages count them.
    enum Entry<'a> {
        Object(&'a Value),
        Prefix(&'a str),
    }
    let mut entries: Vec<(&str, Entry)> = Vec::new();
    for item in listing
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        entries.push((field(item, "name"), Entry::Object(item)));
    }
    for prefix in listing
        .get("prefixes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(prefix) = prefix.as_str() {
            entries.push((prefix, Entry::Prefix(prefix)));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let after = [
        request.param("start-after"),
        request.param("continuation-token"),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or_default();
    let max_keys = request
        .param("max-keys")
        .and_then(|keys| keys.parse::<usize>().ok())
        .unwrap_or(1000)
        .clamp(1, 1000);
    let remaining: Vec<_> = entries
        .into_iter()
        .filter(|(key, _)| *key > after.as_str())
        .collect();
    let truncated = remaining.len() > max_keys;
    let page = &remaining[..remaining.len().min(max_keys)];

    let mut xml = String::from("<?xml version='1.0' encoding='UTF-8'?>");
    xml.push_str("<ListBucketResult xmlns=\"http://doc.s3.amazonaws.com/2006-03-01\">");
    xml.push_str(&format!(
        "<Name>{}</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>{max_keys}</MaxKeys><IsTruncated>{truncated}</IsTruncated>",
        xml_escape(bucket),
        xml_escape(&prefix),
        page.len()
    ));
    if !delimiter.is_empty() {
        xml.push_str(&format!(
            "<Delimiter>{}</Delimiter>",
            xml_escape(&delimiter)
        ));
    }
    if truncated && let Some((last, _)) = page.last() {
        xml.push_str(&format!(
            "<NextContinuationToken>{}</NextContinuationToken>",
            xml_escape(last)
        ));
    }
    for (key, entry) in page {
        match entry {
            Entry::Object(item) => {
                let modified = updated(item)
                    .unwrap_or_default()
                    .format("%Y-%m-%dT%H:%M:%S%.3fZ");
                xml.push_str(&format!(
                    "<Contents><Key>{}</Key><Generation>{}</Generation><LastModified>{modified}</LastModified><ETag>{}</ETag><Size>{}</Size></Contents>",
                    xml_escape(key),
                    field(item, "generation"),
                    xml_escape(&etag(item)),
                    field(item, "size"),
                ));
            }
            Entry::Prefix(prefix) => xml.push_str(&format!(
                "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
                xml_escape(prefix)
            )),
        }
    }
    xml.push_str("</ListBucketResult>");
    Response::new(200).with_body("application/xml; charset=UTF-8", xml.into_bytes())
}

fn no_such_key(object: &str) -> Response {
    xml_error(
        404,
        "NoSuchKey",
        &format!("The specified key does not exist: {object}"),
    )
}

fn no_such_bucket(bucket: &str) -> Response {
    xml_error(
        404,
        "NoSuchBucket",
        &format!("The specified bucket does not exist: {bucket}"),
    )
}

// --------------------------------------------------------------- encodings

/// Percent-encodes everything but RFC 3986's unreserved characters (so `/`
/// too: a whole object name is one path segment of the JSON API).
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Decodes `%XX` escapes (a stray `%` is kept); `Err` when the result is not UTF-8.
fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%')
            .then(|| bytes.get(at + 1..at + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                at += 3;
            }
            None => {
                decoded.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8(decoded)
}

/// A query-string key or value: `+` is a space, then percent-decoding.
fn query_decode(text: &str) -> String {
    let text = text.replace('+', " ");
    percent_decode(&text).unwrap_or(text)
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_cut_like_http_says() {
        assert_eq!(parse_range("bytes=1-2", 5), Some(Ok((1, 2))));
        assert_eq!(parse_range("bytes=3-", 5), Some(Ok((3, 4))));
        assert_eq!(parse_range("bytes=2-99", 5), Some(Ok((2, 4))));
        assert_eq!(parse_range("bytes=-2", 5), Some(Ok((3, 4))));
        assert_eq!(parse_range("bytes=-9", 5), Some(Ok((0, 4))));
        assert_eq!(parse_range("bytes=5-", 5), Some(Err(())));
        assert_eq!(parse_range("bytes=-0", 5), Some(Err(())));
        assert_eq!(parse_range("bytes=3-1", 5), None);
        assert_eq!(parse_range("items=1-2", 5), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 5), None);
    }

    #[test]
    fn names_round_trip_through_the_encodings() {
        let name = "dir/a b+c%d/é.json";
        assert_eq!(percent_encode(name), "dir%2Fa%20b%2Bc%25d%2F%C3%A9.json");
        assert_eq!(percent_decode(&percent_encode(name)).unwrap(), name);
        assert_eq!(query_decode("a+b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%").unwrap(), "100%");
    }

    #[test]
    fn the_etag_is_the_quoted_hex_md5() {
        let metadata = serde_json::json!({
            "md5Hash": "XUFAKrxLKna5cZ2REBfFkg==",
            "generation": "7",
        });
        assert_eq!(etag(&metadata), "\"5d41402abc4b2a76b9719d911017c592\"");
        assert_eq!(etag(&serde_json::json!({"generation": "7"})), "\"7\"");
    }
}
