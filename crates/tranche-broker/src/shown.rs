//! What messages may show of a connection's address (a URL without the `user:password@` part it
//! may carry: credentials never reach a log, an error or a result) and of text from outside (a
//! server's message, an event's field: cut, its control characters escaped).

/// `url` without any `user:password@` part.
pub fn url_without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Text from outside as a message shows it: at most `most` characters, its control characters
/// escaped. It may reach a terminal, a log or a ledger row: an escape sequence from a proxy or a
/// hostile server must not drive the terminal, nor a long text grow every row.
pub fn printable(text: &str, most: usize) -> String {
    let mut out = String::new();
    for c in text.chars().take(most) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_outside_is_cut_and_its_control_characters_escaped() {
        assert_eq!(printable("\u{1b}]52;c;AAAA\u{7} ok", 100), "\\u{1b}]52;c;AAAA\\u{7} ok");
        assert_eq!(printable("abcdef", 3), "abc");
        assert_eq!(printable("naïve", 10), "naïve");
    }

    #[test]
    fn credentials_in_a_url_never_reach_a_message() {
        assert_eq!(url_without_userinfo("https://user:secret@example.com/v2"), "https://example.com/v2");
        assert_eq!(url_without_userinfo("wss://u:p^w@stream.example.com/v2/iex"), "wss://stream.example.com/v2/iex");
        assert_eq!(url_without_userinfo("http://127.0.0.1:8088"), "http://127.0.0.1:8088");
        assert_eq!(url_without_userinfo("https://host/path@not-userinfo"), "https://host/path@not-userinfo");
        assert_eq!(url_without_userinfo("not a url"), "not a url");
    }
}
