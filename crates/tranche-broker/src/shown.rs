//! What messages may show of a connection's address: a URL without the `user:password@` part it
//! may carry (credentials never reach a log, an error or a result).

/// `url` without any `user:password@` part.
pub fn url_without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_never_reach_a_message() {
        assert_eq!(url_without_userinfo("https://user:secret@example.com/v2"), "https://example.com/v2");
        assert_eq!(url_without_userinfo("wss://u:p^w@stream.example.com/v2/iex"), "wss://stream.example.com/v2/iex");
        assert_eq!(url_without_userinfo("http://127.0.0.1:8088"), "http://127.0.0.1:8088");
        assert_eq!(url_without_userinfo("https://host/path@not-userinfo"), "https://host/path@not-userinfo");
        assert_eq!(url_without_userinfo("not a url"), "not a url");
    }
}
