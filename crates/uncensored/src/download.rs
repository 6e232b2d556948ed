//! Downloading images: through the client's timeouts and retry policy, over
//! https only, to public addresses (checked at every hop), with bounded redirects, with a size cap, truncation detection,
//! format sniffing and a SHA-256 computed on the way.

use bytes::{Bytes, BytesMut};
use sha2::{Digest as _, Sha256};

use crate::client::Client;
use crate::error::{DownloadError, Error, Result};

/// Image formats the client recognises by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// PNG (`89 50 4E 47 0D 0A 1A 0A`).
    Png,
    /// WebP (`RIFF....WEBP`).
    Webp,
}

impl ImageFormat {
    /// Recognises a format from the first bytes of a file.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(Self::Webp)
        } else {
            None
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
        }
    }
}

/// A whole image, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadedImage {
    /// The bytes.
    pub bytes: Bytes,
    /// The format, from the bytes themselves.
    pub format: ImageFormat,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
}

/// An image arriving chunk by chunk, checked as it comes: the caller never
/// holds more than one chunk. Read it with [`ImageStream::next_chunk`].
#[derive(Debug)]
pub struct ImageStream {
    response: reqwest::Response,
    first: Option<Bytes>,
    format: ImageFormat,
    expected: Option<u64>,
    received: u64,
    limit: u64,
    hasher: Sha256,
    sha256: Option<String>,
}

impl ImageStream {
    /// The format, sniffed from the first bytes.
    pub fn format(&self) -> ImageFormat {
        self.format
    }

    /// The size the server announced, if it did.
    pub fn content_length(&self) -> Option<u64> {
        self.expected
    }

    /// The next chunk; `None` at the end, once the length has been checked.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, DownloadError> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        if self.sha256.is_some() {
            return Ok(None);
        }
        match self.response.chunk().await? {
            Some(chunk) => {
                self.account(&chunk)?;
                Ok(Some(chunk))
            }
            None => {
                if let Some(expected) = self.expected
                    && self.received < expected
                {
                    return Err(DownloadError::Truncated {
                        received: self.received,
                        expected,
                    });
                }
                self.sha256 = Some(hex(&std::mem::take(&mut self.hasher).finalize()));
                Ok(None)
            }
        }
    }

    /// SHA-256 of the whole image, once the last chunk has been read.
    pub fn sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    fn account(&mut self, chunk: &[u8]) -> Result<(), DownloadError> {
        self.received += chunk.len() as u64;
        if self.received > self.limit {
            return Err(DownloadError::TooLarge { limit: self.limit });
        }
        self.hasher.update(chunk);
        Ok(())
    }
}

/// The start of a response body, at most `max` bytes, as text (lossy UTF-8):
/// for error messages, so that a hostile server cannot make the client hold
/// a body of any size. Reading stops at the cap (the rest is never read) or
/// at the first failure. The one reader of error bodies for the client and
/// every notifier.
pub async fn body_prefix(mut response: reqwest::Response, max: usize) -> String {
    let mut bytes = BytesMut::new();
    while bytes.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = max - bytes.len();
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Bytes as lowercase hex (SHA-256 digests, tokens).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Client {
    /// Starts streaming an image (one attempt; see [`Client::download`] for a
    /// retried, buffered download). Fails before any request if the URL is not
    /// https or its host is not public (see [`crate::is_public`]; both relaxed
    /// for a loopback base URL), and before any body is handed out if a
    /// redirect breaks those rules, the status is not 2xx, the announced size is over
    /// the cap, or the first bytes are not an image.
    pub async fn download_stream(&self, url: &str) -> Result<ImageStream, DownloadError> {
        let parsed = url::Url::parse(url).map_err(|_| DownloadError::Scheme {
            scheme: String::new(),
        })?;
        self.download_policy().check(&parsed)?;
        let response = self.http().get(parsed).send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(DownloadError::Status {
                status: status.as_u16(),
            });
        }
        let limit = self.max_download_bytes();
        let expected = response.content_length();
        if expected.is_some_and(|length| length > limit) {
            return Err(DownloadError::TooLarge { limit });
        }
        let mut stream = ImageStream {
            response,
            first: None,
            format: ImageFormat::Jpeg,
            expected,
            received: 0,
            limit,
            hasher: Sha256::new(),
            sha256: None,
        };
        // Gather enough bytes to recognise the format.
        let mut head = BytesMut::new();
        while head.len() < 12 {
            match stream.response.chunk().await? {
                Some(chunk) => {
                    stream.account(&chunk)?;
                    head.extend_from_slice(&chunk);
                }
                None => break,
            }
        }
        stream.format = ImageFormat::sniff(&head).ok_or(DownloadError::NotAnImage)?;
        if head.is_empty() {
            return Err(DownloadError::NotAnImage);
        }
        stream.first = Some(head.freeze());
        Ok(stream)
    }

    /// Downloads a whole image into memory (up to the cap, 64 MiB by default),
    /// retrying transient failures and truncated bodies under the client's
    /// retry policy.
    pub async fn download(&self, url: &str) -> Result<DownloadedImage> {
        let policy = self.retry_policy();
        let mut backoffs = policy.backoffs();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.download_once(url).await {
                Ok(image) => return Ok(image),
                Err(error) => error,
            };
            match backoffs.next() {
                Some(delay) if error.is_retryable() && attempt < policy.max_attempts => {
                    tracing::warn!(%error, attempt, ?delay, "retrying download");
                    tokio::time::sleep(delay).await;
                }
                _ => return Err(Error::Download(error)),
            }
        }
    }

    async fn download_once(&self, url: &str) -> Result<DownloadedImage, DownloadError> {
        let mut stream = self.download_stream(url).await?;
        let mut bytes = BytesMut::with_capacity(
            stream.content_length().unwrap_or(0).min(stream.limit) as usize,
        );
        while let Some(chunk) = stream.next_chunk().await? {
            bytes.extend_from_slice(&chunk);
        }
        Ok(DownloadedImage {
            format: stream.format(),
            sha256: stream.sha256().expect("set at the end").to_string(),
            bytes: bytes.freeze(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_sniffed_from_magic_bytes() {
        assert_eq!(
            ImageFormat::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(
            ImageFormat::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            ImageFormat::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageFormat::Webp)
        );
        assert_eq!(ImageFormat::sniff(b"<html>"), None);
        assert_eq!(ImageFormat::Webp.extension(), "webp");
    }
}
