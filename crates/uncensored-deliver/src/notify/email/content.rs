//! What an email says: subject, plain text and HTML, composed from a
//! notification (the prompt escaped in HTML).

use super::*;

/// The text of a message: its subject and both bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmailContent {
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body (the same facts, every value escaped).
    pub html: String,
}

/// Text for a header: control characters (newlines) become spaces.
pub(super) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

pub(super) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// A stable Message-ID per job and event, so that a repeat is one message
/// to mail clients; a generated one when there is no job.
pub(super) fn message_id(notification: &Notification) -> Option<String> {
    let job = notification.job_id()?;
    let job: String = job
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(100)
        .collect();
    (!job.is_empty()).then(|| format!("<{job}.{}@uncensored.notify>", notification.kind()))
}

/// The attachment's file name: the stored object's name, else the URL's last
/// path segment, restricted to safe characters.
pub(super) fn filename(location: &str, url: &str) -> String {
    let from_url = url::Url::parse(url)
        .ok()
        .and_then(|u| u.path_segments()?.next_back().map(str::to_string));
    let candidates = [
        location.rsplit(['/', '\\']).next().map(str::to_string),
        from_url,
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|name| {
            name.chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .take(100)
                .collect::<String>()
        })
        .find(|name| !name.trim_matches('.').is_empty())
        .unwrap_or_else(|| "image.jpg".into())
}

pub(super) fn guess_content_type(filename: &str) -> ContentType {
    let extension = filename.rsplit('.').next().unwrap_or_default();
    let mime = match extension.to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        _ => "application/octet-stream",
    };
    ContentType::parse(mime).expect("a valid MIME type")
}

/// The subject and bodies of a notification; `attached` names the attached
/// image and its size when there is one.
pub(super) fn compose(
    prefix: &str,
    notification: &Notification,
    attached: Option<(&str, usize)>,
) -> EmailContent {
    match notification {
        Notification::Stored(StoredImage {
            job_id,
            prompt,
            model,
            width,
            height,
            generation_time,
            location,
            share_url,
            sha256,
            ..
        }) => {
            let mut facts: Vec<(&str, String)> = Vec::new();
            if let Some(model) = model {
                facts.push(("Model", model.clone()));
            }
            if let (Some(w), Some(h)) = (width, height) {
                facts.push(("Size", format!("{w}×{h}")));
            }
            if let Some(seconds) = generation_time {
                facts.push(("Time", format!("{seconds:.1} s")));
            }
            facts.push(("Stored at", location.clone()));
            facts.push(("SHA-256", sha256.clone()));
            facts.push(("Job", job_id.clone()));

            let mut text = format!("Image ready\n\nPrompt:\n{prompt}\n\n");
            for (name, value) in &facts {
                text.push_str(&format!("{name}: {value}\n"));
            }
            let mut html = format!(
                "<!DOCTYPE html>\n<html><body>\n<h2>Image ready</h2>\n<blockquote>{}</blockquote>\n<table>\n",
                escape_html(prompt)
            );
            for (name, value) in &facts {
                html.push_str(&format!(
                    "<tr><th align=\"left\">{name}</th><td>{}</td></tr>\n",
                    escape_html(value)
                ));
            }
            html.push_str("</table>\n");
            if let Some(url) = share_url {
                text.push_str(&format!("\nOpen the image: {url}\n"));
                html.push_str(&format!(
                    "<p><a href=\"{}\">Open the image</a></p>\n",
                    escape_html(url)
                ));
            }
            if let Some((name, size)) = attached {
                let size = format_size(size);
                text.push_str(&format!("\nThe image is attached: {name} ({size}).\n"));
                html.push_str(&format!(
                    "<p>The image is attached: {} ({size}).</p>\n",
                    escape_html(name)
                ));
            }
            html.push_str("</body></html>\n");
            EmailContent {
                subject: one_line(&format!("{prefix}Image ready: {}", clip(prompt, 60))),
                text,
                html,
            }
        }
        Notification::Failed {
            job_id,
            prompt,
            reason,
            message,
        } => {
            let mut text = format!(
                "Generation failed: {reason}\n\nPrompt:\n{prompt}\n\nWhat happened: {message}\nWhat to do: {}\n",
                reason.advice(),
                reason = reason.as_str()
            );
            if let Some(job) = job_id {
                text.push_str(&format!("Job: {job}\n"));
            }
            let mut html = format!(
                "<!DOCTYPE html>\n<html><body>\n<h2>Generation failed: {}</h2>\n<blockquote>{}</blockquote>\n<p><strong>What happened:</strong> {}</p>\n<p><strong>What to do:</strong> {}</p>\n",
                escape_html(reason.as_str()),
                escape_html(prompt),
                escape_html(message),
                escape_html(reason.advice())
            );
            if let Some(job) = job_id {
                html.push_str(&format!("<p>Job {}</p>\n", escape_html(job)));
            }
            html.push_str("</body></html>\n");
            EmailContent {
                subject: one_line(&format!(
                    "{prefix}Generation failed ({}): {}",
                    reason.as_str(),
                    clip(prompt, 60)
                )),
                text,
                html,
            }
        }
    }
}

pub(super) fn format_size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}
