//! Showing connection strings and configs without their passwords.

use std::fmt::Write as _;

use pool_core::redact::{mask_unparsed, mask_url_password, MASK};

/// `input` (a `postgres://` URL or a `key=value` string) with every password replaced
/// by `***`. A URL of any scheme (a mistyped one too) is masked as a URL; a part of a
/// `key=value` string that cannot be read is shown only as far as it cannot hold a
/// password ([`mask_unparsed`]).
pub(crate) fn redact_connection_string(input: &str) -> String {
    let trimmed = input.trim_start();
    if let Some(shown) = mask_url_password(trimmed, &["password"]) {
        return shown;
    }
    redact_key_values(input)
}

/// A libpq `key=value` string with the value of `password` masked.
fn redact_key_values(input: &str) -> String {
    let mut out = String::new();
    let mut rest = input;
    loop {
        let trimmed = rest.trim_start();
        out.push_str(&rest[..rest.len() - trimmed.len()]);
        rest = trimmed;
        if rest.is_empty() {
            return out;
        }
        let Some((key, value, after)) = next_pair(rest) else {
            // Unreadable from here on: shown only as far as it cannot hold a password.
            out.push_str(&mask_unparsed(rest));
            return out;
        };
        if key.eq_ignore_ascii_case("password") {
            let _ = write!(out, "{key}={MASK}");
        } else {
            let _ = write!(out, "{key}={value}");
        }
        rest = after;
    }
}

/// Splits `key = value` (value bare or single-quoted with backslash escapes) off the
/// front of `s`, returning the key, the value as written and what follows.
fn next_pair(s: &str) -> Option<(&str, &str, &str)> {
    let key_end = s.find(|c: char| c == '=' || c.is_whitespace())?;
    let key = &s[..key_end];
    let after_key = s[key_end..].trim_start();
    let after_eq = after_key.strip_prefix('=')?.trim_start();
    if let Some(quoted) = after_eq.strip_prefix('\'') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => {
                    let end = 1 + i + 1;
                    return Some((key, &after_eq[..end], &after_eq[end..]));
                }
                _ => {}
            }
        }
        None
    } else {
        let end = after_eq.find(char::is_whitespace).unwrap_or(after_eq.len());
        Some((key, &after_eq[..end], &after_eq[end..]))
    }
}

/// Where `config` connects, as `postgres://user@host:port/dbname`, without the
/// password (a password, if set, shows as `***`).
pub(crate) fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;

    let mut out = String::from("postgres://");
    if let Some(user) = config.get_user() {
        out.push_str(user);
        if config.get_password().is_some() {
            out.push(':');
            out.push_str(MASK);
        }
        out.push('@');
    }
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            // One port for all hosts, or one per host.
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            format!("{name}:{port}")
        })
        .collect();
    if hosts.is_empty() {
        out.push_str("(no host)");
    } else {
        out.push_str(&hosts.join(","));
    }
    if let Some(dbname) = config.get_dbname().or(config.get_user()) {
        out.push('/');
        out.push_str(dbname);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        let cases = [
            ("postgres://app:s3cret@db/x", "postgres://app:***@db/x"),
            ("postgresql://app@db:5433/x", "postgresql://app@db:5433/x"),
            ("postgres://app:p/a@ss@db/x", "postgres://app:***@db/x"),
            (
                "postgres://db/x?user=app&password=s3cret&sslmode=disable",
                "postgres://db/x?user=app&password=***&sslmode=disable",
            ),
            ("postgres://db", "postgres://db"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_connection_string(input), expected, "{input}");
        }
    }

    #[test]
    fn key_values_lose_their_passwords() {
        let cases = [
            (
                "host=db user=app password=s3cret dbname=x",
                "host=db user=app password=*** dbname=x",
            ),
            (
                "host = db password = 'it\\'s secret' port=5",
                "host=db password=*** port=5",
            ),
            ("host=db password='unterminated", "host=db ***"),
            ("host=db junk", "host=db ***"),
            ("host=db password", "host=db ***"),
            ("host=db password=a://s3cret@b", "host=db password=***"),
        ];
        for (input, expected) in cases {
            let shown = redact_connection_string(input);
            assert_eq!(shown, expected, "{input}");
            assert!(!shown.contains("secret"), "{shown}");
        }
    }

    /// What the user meant as a URL but mistyped is never shown with its password.
    #[test]
    fn mistyped_urls_lose_their_passwords() {
        let cases = [
            ("postgress://app:s3cret@db/x", "postgress://app:***@db/x"),
            ("postgres:/app:s3cret@db/x", "***@db/x"),
            ("app:s3cret@db/x", "***@db/x"),
            ("app:s3cret", "***"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_connection_string(input), expected, "{input}");
        }
    }

    #[test]
    fn configs_are_described_without_their_passwords() {
        let config: tokio_postgres::Config =
            "postgres://app:s3cret@db1:5433,db2/x".parse().unwrap();
        let described = describe(&config);
        assert_eq!(described, "postgres://app:***@db1:5433,db2:5432/x");
        let config: tokio_postgres::Config = "host=db user=app".parse().unwrap();
        assert_eq!(describe(&config), "postgres://app@db:5432/app");
    }
}
