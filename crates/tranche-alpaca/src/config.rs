//! Where the adapter connects and with which keys. Paper trading unless live is asked for;
//! the secret never appears in any `Debug` output, log or error.

/// Alpaca's paper trading API.
pub const PAPER_URL: &str = "https://paper-api.alpaca.markets";
/// Alpaca's live trading API.
pub const LIVE_URL: &str = "https://api.alpaca.markets";
/// Alpaca's market data API.
pub const DATA_URL: &str = "https://data.alpaca.markets";
/// Alpaca's market-data stream host.
pub const DATA_STREAM_URL: &str = "wss://stream.data.alpaca.markets";
/// The market-data feed free accounts have.
pub const DEFAULT_FEED: &str = "iex";

/// A secret key: shown as `<redacted>` everywhere.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the authentication header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Connection settings. `Debug` shows the URLs without any credentials in them and the secret
/// as `<redacted>`.
#[derive(Clone)]
pub struct AlpacaConfig {
    /// Trading REST base URL (`APCA_API_BASE_URL`); the trade_updates socket is `<base>/stream`.
    pub trading_url: String,
    /// Market data REST base URL (`APCA_API_DATA_URL`).
    pub data_url: String,
    /// Key id (`APCA_API_KEY_ID`).
    pub key_id: String,
    /// Secret (`APCA_API_SECRET_KEY`).
    pub secret: Secret,
    /// Requests per minute the client allows itself on the Trading API (Alpaca's limit is 200).
    pub requests_per_minute: u32,
    /// Requests per minute the client allows itself on the Market Data API, a budget of its own
    /// at Alpaca (200 on the Basic plan), so quote reads never take from the trading budget.
    pub data_requests_per_minute: u32,
    /// Per-request timeout.
    pub timeout: std::time::Duration,
    /// Market-data stream host (`APCA_API_DATA_STREAM_URL`); `None`: derived from `data_url`
    /// (Alpaca's stream host for Alpaca's data URL, the same host otherwise, e.g. the emulator).
    pub data_stream_url: Option<String>,
    /// Market-data feed (`APCA_DATA_FEED`): `iex` (default), `sip`, `delayed_sip`, ...
    pub data_feed: String,
    /// Most symbols the market-data stream carries at once (`APCA_DATA_SYMBOL_LIMIT`; 0: none):
    /// by default 30 on `iex` (Alpaca's Basic plan) and none on the paid feeds. The engine
    /// streams the symbols it works first and reads the others' quotes by REST.
    pub data_symbol_limit: Option<usize>,
}

impl std::fmt::Debug for AlpacaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = tranche_broker::url_without_userinfo;
        f.debug_struct("AlpacaConfig")
            .field("trading_url", &shown(&self.trading_url))
            .field("data_url", &shown(&self.data_url))
            .field("key_id", &self.key_id)
            .field("secret", &self.secret)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("data_requests_per_minute", &self.data_requests_per_minute)
            .field("timeout", &self.timeout)
            .field("data_stream_url", &self.data_stream_url.as_deref().map(shown))
            .field("data_feed", &self.data_feed)
            .field("data_symbol_limit", &self.data_symbol_limit)
            .finish()
    }
}

/// Alpaca's Basic plan: 30 symbols for trades and quotes on the `iex` stream.
pub const IEX_SYMBOL_LIMIT: usize = 30;

/// The symbol limit of `feed` on Alpaca's plans: 30 on `iex` (Basic), none on the paid feeds.
pub fn default_symbol_limit(feed: &str) -> Option<usize> {
    (feed == DEFAULT_FEED).then_some(IEX_SYMBOL_LIMIT)
}

/// Why the configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required key is missing.
    #[error("{0} is not set: export it (Alpaca's key pair; see docs/configuration.md)")]
    Missing(&'static str),
    /// `APCA_DATA_FEED` is not a feed name.
    #[error("APCA_DATA_FEED=`{0}` is not a feed name: set it to iex, sip or delayed_sip, or unset it")]
    BadFeed(String),
    /// `APCA_DATA_SYMBOL_LIMIT` is not a whole number.
    #[error("APCA_DATA_SYMBOL_LIMIT=`{0}` is not a number of symbols: set it to e.g. 30 (0: no limit), or unset it")]
    BadSymbolLimit(String),
    /// A URL variable does not hold an http(s) URL.
    #[error("{variable}={shown} is not an http(s) URL: {reason}; set it to e.g. {example}, or unset it")]
    BadUrl {
        /// The variable.
        variable: &'static str,
        /// Its value, or a placeholder when the value carries credentials.
        shown: String,
        /// Why it is refused.
        reason: String,
        /// A value that works.
        example: &'static str,
    },
}

/// `value` of `variable` when it is an http(s) URL (checked before anything is sent).
fn checked_url(variable: &'static str, value: String, example: &'static str) -> Result<String, ConfigError> {
    checked_url_of(variable, value, example, &["http", "https"])
}

/// `value` of `variable` when it is a URL with one of `schemes` and a host.
fn checked_url_of(
    variable: &'static str,
    value: String,
    example: &'static str,
    schemes: &[&str],
) -> Result<String, ConfigError> {
    let refuse = |reason: String| ConfigError::BadUrl {
        variable,
        // Never echo credentials someone put in a URL.
        shown: if value.contains('@') { "<a value with credentials>".into() } else { format!("`{value}`") },
        reason,
        example,
    };
    match reqwest::Url::parse(&value) {
        Ok(url) if schemes.contains(&url.scheme()) && url.host().is_some() => Ok(value),
        Ok(url) => Err(refuse(format!("the scheme is `{}` and the host {:?}", url.scheme(), url.host_str()))),
        Err(e) => Err(refuse(e.to_string())),
    }
}

impl AlpacaConfig {
    /// Paper trading at `trading_url` (or Alpaca's paper API) with the given keys.
    pub fn new(key_id: impl Into<String>, secret: Secret) -> Self {
        Self {
            trading_url: PAPER_URL.into(),
            data_url: DATA_URL.into(),
            key_id: key_id.into(),
            secret,
            requests_per_minute: 190,
            data_requests_per_minute: 190,
            timeout: std::time::Duration::from_secs(10),
            data_stream_url: None,
            data_feed: DEFAULT_FEED.into(),
            data_symbol_limit: default_symbol_limit(DEFAULT_FEED),
        }
    }

    /// From `APCA_API_KEY_ID`, `APCA_API_SECRET_KEY`, `APCA_API_BASE_URL`, `APCA_API_DATA_URL`,
    /// `APCA_API_DATA_STREAM_URL`, `APCA_DATA_FEED` and `APCA_DATA_SYMBOL_LIMIT`; paper unless
    /// `live` (which selects the live URL when no base URL is set). Every value is checked
    /// before anything is sent.
    pub fn from_env(live: bool) -> Result<Self, ConfigError> {
        Self::from_vars(live, |name| std::env::var(name).ok())
    }

    /// As [`AlpacaConfig::from_env`], reading each variable with `lookup` (an empty value counts
    /// as unset).
    pub fn from_vars(live: bool, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &'static str| lookup(name).filter(|v| !v.is_empty());
        // The keys without the whitespace around them (a secret store's value often ends with a
        // newline, which no HTTP header may carry: every request failed to be built, a submit
        // reported as an order of unknown outcome).
        let key_var = |name: &'static str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let key = key_var("APCA_API_KEY_ID").ok_or(ConfigError::Missing("APCA_API_KEY_ID"))?;
        let secret = key_var("APCA_API_SECRET_KEY").ok_or(ConfigError::Missing("APCA_API_SECRET_KEY"))?;
        let mut config = Self::new(key, Secret::new(secret));
        config.trading_url = match var("APCA_API_BASE_URL") {
            Some(url) => checked_url("APCA_API_BASE_URL", url, PAPER_URL)?,
            None => if live { LIVE_URL } else { PAPER_URL }.to_owned(),
        };
        if let Some(data) = var("APCA_API_DATA_URL") {
            config.data_url = checked_url("APCA_API_DATA_URL", data, DATA_URL)?;
        }
        if let Some(stream) = var("APCA_API_DATA_STREAM_URL") {
            let schemes = ["ws", "wss", "http", "https"];
            config.data_stream_url =
                Some(checked_url_of("APCA_API_DATA_STREAM_URL", stream, DATA_STREAM_URL, &schemes)?);
        }
        if let Some(feed) = var("APCA_DATA_FEED") {
            if feed.is_empty() || !feed.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                return Err(ConfigError::BadFeed(feed));
            }
            config.data_symbol_limit = default_symbol_limit(&feed);
            config.data_feed = feed;
        }
        if let Some(limit) = var("APCA_DATA_SYMBOL_LIMIT") {
            let n: usize = limit.trim().parse().map_err(|_| ConfigError::BadSymbolLimit(limit.clone()))?;
            config.data_symbol_limit = (n > 0).then_some(n);
        }
        Ok(config)
    }

    /// The market-data stream URL of the configured feed: `<stream host>/v2/<feed>`, the host
    /// being `data_stream_url`, else Alpaca's for Alpaca's data URL, else the data URL's own
    /// host with a WebSocket scheme (an emulator serves both).
    pub fn market_data_stream_url(&self) -> String {
        let base = self.data_stream_url.clone().unwrap_or_else(|| {
            let data = self.data_url.trim_end_matches('/');
            if data == DATA_URL {
                DATA_STREAM_URL.to_owned()
            } else {
                websocket(data)
            }
        });
        format!("{}/v2/{}", websocket(base.trim_end_matches('/')), self.data_feed)
    }

    /// The trade_updates socket URL: the trading base with a WebSocket scheme and `/stream`.
    pub fn stream_url(&self) -> String {
        format!("{}/stream", websocket(self.trading_url.trim_end_matches('/')))
    }

    /// Whether orders go to Alpaca's live API (real money): the trading URL's host is the live
    /// one, however the URL spells it (any case, port, credentials, path or trailing dot).
    pub fn is_live(&self) -> bool {
        let host = |url: &str| {
            reqwest::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(|h| h.trim_end_matches('.').to_ascii_lowercase()))
        };
        host(&self.trading_url).is_some_and(|h| Some(h) == host(LIVE_URL))
    }

    /// The trading URL as messages may show it: without any `user:password@` part.
    pub fn trading_url_shown(&self) -> String {
        tranche_broker::url_without_userinfo(&self.trading_url)
    }
}

/// `url` with an http(s) scheme turned into the WebSocket one (others unchanged).
fn websocket(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys read with a newline or spaces around them (as secret stores hand them out) are used
    /// without; a key of whitespace only is missing.
    #[test]
    fn keys_are_read_without_the_whitespace_around_them() {
        let lookup = |name: &str| match name {
            "APCA_API_KEY_ID" => Some(" KEY\n".to_owned()),
            "APCA_API_SECRET_KEY" => Some("SECRET\r\n".to_owned()),
            _ => None,
        };
        let config = AlpacaConfig::from_vars(false, lookup).unwrap();
        assert_eq!((config.key_id.as_str(), config.secret.expose()), ("KEY", "SECRET"));
        let blank = |name: &str| (name == "APCA_API_SECRET_KEY").then(|| "\n".to_owned()).or_else(|| Some("K".into()));
        assert_eq!(AlpacaConfig::from_vars(false, blank).unwrap_err(), ConfigError::Missing("APCA_API_SECRET_KEY"));
    }

    /// Credentials in a URL (a proxy's `user:password@`) never show in the configuration's
    /// `Debug`, nor the secret: the derived one printed the URLs as they were.
    #[test]
    fn the_configuration_debug_shows_no_credentials() {
        let mut config = AlpacaConfig::new("KEY", Secret::new("SECRET-VALUE"));
        config.trading_url = "https://user:proxy-pass@paper-api.alpaca.markets".into();
        config.data_url = "https://user:proxy-pass@data.alpaca.markets".into();
        config.data_stream_url = Some("wss://user:proxy-pass@stream.data.alpaca.markets".into());
        let shown = format!("{config:?}");
        assert!(!shown.contains("proxy-pass") && !shown.contains("SECRET-VALUE"), "{shown}");
        assert!(shown.contains("paper-api.alpaca.markets"), "{shown}");
    }

    #[test]
    fn the_symbol_limit_follows_the_feed_unless_told() {
        /// (case, APCA_DATA_FEED, APCA_DATA_SYMBOL_LIMIT, the limit or `Err` for a refusal)
        type Case = (&'static str, Option<&'static str>, Option<&'static str>, Result<Option<usize>, ()>);
        let cases: [Case; 6] = [
            ("iex by default", None, None, Ok(Some(30))),
            ("sip has none", Some("sip"), None, Ok(None)),
            ("a paid plan's own", Some("iex"), Some("200"), Ok(Some(200))),
            ("zero is none", None, Some("0"), Ok(None)),
            ("set on sip too", Some("sip"), Some("50"), Ok(Some(50))),
            ("not a number", None, Some("thirty"), Err(())),
        ];
        for (case, feed, limit, expected) in cases {
            let lookup = |name: &str| match name {
                "APCA_API_KEY_ID" => Some("K".to_owned()),
                "APCA_API_SECRET_KEY" => Some("S".to_owned()),
                "APCA_DATA_FEED" => feed.map(str::to_owned),
                "APCA_DATA_SYMBOL_LIMIT" => limit.map(str::to_owned),
                _ => None,
            };
            let got = AlpacaConfig::from_vars(false, lookup).map(|c| c.data_symbol_limit).map_err(|_| ());
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn credentials_in_a_url_never_reach_a_message() {
        let mut config = AlpacaConfig::new("KEY", Secret::new("s"));
        config.trading_url = "https://me:hunter2@api.alpaca.markets/".into();
        assert!(!config.trading_url_shown().contains("hunter2"));
    }

    /// Real money is guarded by the host the orders reach, however its URL is spelled: a case,
    /// a port, credentials, a path or a trailing dot must not pass for paper trading.
    #[test]
    fn the_live_host_is_recognised_however_its_url_is_spelled() {
        let mut config = AlpacaConfig::new("KEY", Secret::new("s"));
        for (url, live) in [
            (LIVE_URL, true),
            ("https://api.alpaca.markets/", true),
            ("https://API.Alpaca.Markets", true),
            ("https://api.alpaca.markets:443", true),
            ("https://me:hunter2@api.alpaca.markets/", true),
            ("https://api.alpaca.markets./v2", true),
            ("http://api.alpaca.markets", true),
            ("https://paper-api.alpaca.markets", false),
            ("https://api.alpaca.markets.example.com", false),
            ("http://127.0.0.1:8080", false),
        ] {
            config.trading_url = url.into();
            assert_eq!(config.is_live(), live, "{url}");
        }
    }

    #[test]
    fn secrets_never_print_and_stream_urls_derive() {
        let mut config = AlpacaConfig::new("KEY", Secret::new("very-secret"));
        assert!(!format!("{config:?}").contains("very-secret"));
        assert_eq!(config.stream_url(), "wss://paper-api.alpaca.markets/stream");
        config.trading_url = "http://127.0.0.1:8080/".into();
        assert_eq!(config.stream_url(), "ws://127.0.0.1:8080/stream");
    }

    #[test]
    fn the_market_data_stream_follows_the_data_url_unless_told() {
        let mut config = AlpacaConfig::new("KEY", Secret::new("s"));
        assert_eq!(config.market_data_stream_url(), "wss://stream.data.alpaca.markets/v2/iex");
        config.data_url = "http://127.0.0.1:8088/".into();
        assert_eq!(config.market_data_stream_url(), "ws://127.0.0.1:8088/v2/iex", "an emulator serves both");
        config.data_stream_url = Some("wss://stream.example/".into());
        config.data_feed = "sip".into();
        assert_eq!(config.market_data_stream_url(), "wss://stream.example/v2/sip");
    }

    #[test]
    fn url_variables_must_be_http_urls_and_credentials_are_never_echoed() {
        assert!(checked_url("APCA_API_BASE_URL", "http://127.0.0.1:8088".into(), PAPER_URL).is_ok());
        assert!(checked_url("APCA_API_BASE_URL", PAPER_URL.into(), PAPER_URL).is_ok());
        let bad = checked_url("APCA_API_BASE_URL", "not-a-url".into(), PAPER_URL).unwrap_err().to_string();
        assert!(bad.starts_with("APCA_API_BASE_URL=`not-a-url` is not an http(s) URL"), "{bad}");
        let ftp = checked_url("APCA_API_DATA_URL", "ftp://example.invalid".into(), DATA_URL).unwrap_err().to_string();
        assert!(ftp.contains("scheme is `ftp`"), "{ftp}");
        let secret =
            checked_url("APCA_API_BASE_URL", "htp://user:hunter2@x".into(), PAPER_URL).unwrap_err().to_string();
        assert!(!secret.contains("hunter2") && secret.contains("<a value with credentials>"), "{secret}");
    }
}
