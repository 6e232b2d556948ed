//! Text from the API, a journal or a file, made safe for a terminal: control
//! characters (escape sequences that move the cursor, retitle the window,
//! rewrite the clipboard or hide text; C1 controls; line breaks that forge a
//! line of output) and bidirectional overrides are shown as `\u{..}`
//! escapes instead of acting. JSON output needs none of this: serde escapes
//! control characters itself.

use std::borrow::Cow;

/// `text` with every control character and bidirectional override escaped.
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            shown.push_str(&c.escape_unicode().to_string());
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

#[cfg(test)]
mod tests {
    use super::safe;

    #[test]
    fn escape_sequences_and_overrides_do_not_reach_the_terminal() {
        let hostile = "job\u{1b}]0;owned\u{7}\u{1b}[2J\r\nerror: forged\u{9b}31m\u{202E}txt.exe";
        let shown = safe(hostile);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
        assert!(!shown.contains('\u{202E}'));
        assert!(shown.contains("\\u{1b}]0;owned"), "{shown}");
        assert_eq!(safe("a lighthouse · 1024×768"), "a lighthouse · 1024×768");
    }
}
