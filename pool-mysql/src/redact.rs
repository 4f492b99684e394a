//! Showing URLs and options without their passwords.

pub(crate) use pool_core::redact::MASK;
use pool_core::redact::{mask_unparsed, mask_url_password};

/// `input` (normally a `mysql://` URL) with the password of its user info and any
/// `password`/`pass` query parameter replaced by `***`. Text that is not a URL is
/// shown as far as it cannot hold a password ([`mask_unparsed`]).
pub(crate) fn redact_url(input: &str) -> String {
    mask_url_password(input, &["password", "pass"]).unwrap_or_else(|| mask_unparsed(input))
}

/// Where `opts` connects, as `mysql://user@host:port/dbname` (a password, if set,
/// shows as `***`; a Unix socket as `?socket=path`).
pub(crate) fn describe(opts: &mysql_async::Opts) -> String {
    let mut out = String::from("mysql://");
    if let Some(user) = opts.user() {
        out.push_str(user);
        if opts.pass().is_some() {
            out.push(':');
            out.push_str(MASK);
        }
        out.push('@');
    }
    let host = opts.ip_or_hostname();
    if host.contains(':') {
        // An IPv6 address.
        out.push('[');
        out.push_str(host);
        out.push(']');
    } else {
        out.push_str(host);
    }
    out.push(':');
    out.push_str(&opts.tcp_port().to_string());
    if let Some(db) = opts.db_name() {
        out.push('/');
        out.push_str(db);
    }
    if let Some(socket) = opts.socket() {
        out.push_str("?socket=");
        out.push_str(socket);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        let cases = [
            ("mysql://app:s3cret@db/x", "mysql://app:***@db/x"),
            ("mysql://app@db:3307/x", "mysql://app@db:3307/x"),
            ("mysql://app:p/a@ss@db/x", "mysql://app:***@db/x"),
            (
                "mysql://db/x?user=app&password=s3cret&prefer_socket=false",
                "mysql://db/x?user=app&password=***&prefer_socket=false",
            ),
            ("mysql://db", "mysql://db"),
            ("app:s3cret@db", "***@db"),
            ("not a url s3cret", "***"),
        ];
        for (input, expected) in cases {
            let shown = redact_url(input);
            assert_eq!(shown, expected, "{input}");
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }

    #[test]
    fn options_are_described_without_their_passwords() {
        let opts = mysql_async::Opts::from_url("mysql://app:s3cret@db:3307/orders").unwrap();
        assert_eq!(describe(&opts), "mysql://app:***@db:3307/orders");
        let opts = mysql_async::Opts::from_url("mysql://db").unwrap();
        assert_eq!(describe(&opts), "mysql://db:3306");
    }
}
