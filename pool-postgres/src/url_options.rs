//! The pool's own options inside a connection string: taken out before tokio-postgres
//! reads the rest, for it rejects options it does not know.

use crate::{ConfigError, StatementMode};

/// The option naming the [`StatementMode`]: `?statement_mode=unnamed` in a URL,
/// `statement_mode=unnamed` in a `key=value` string.
pub(crate) const STATEMENT_MODE: &str = "statement_mode";

/// The pool's options a connection string set.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PoolOptions {
    pub(crate) statement_mode: Option<StatementMode>,
}

/// Splits `url` (a `postgres://` URL or a libpq `key=value` string) into the
/// connection string tokio-postgres reads (the same, less the pool's options) and the
/// pool's options. A pool option with a value it cannot take is an error naming it.
pub(crate) fn split(url: &str) -> Result<(String, PoolOptions), ConfigError> {
    let (rest, values) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url(url)
    } else {
        split_key_values(url)
    };
    let mut options = PoolOptions::default();
    if let Some(value) = values.last() {
        let mode = value.parse().map_err(|problem: String| {
            ConfigError::new(url, format!("{STATEMENT_MODE}: {problem}"))
        })?;
        options.statement_mode = Some(mode);
    }
    Ok((rest, options))
}

/// `postgres://...?a=b&statement_mode=unnamed&c=d` → `postgres://...?a=b&c=d`.
fn split_url(url: &str) -> (String, Vec<String>) {
    let Some(query_start) = url.find('?') else {
        return (url.to_owned(), Vec::new());
    };
    let (base, query) = url.split_at(query_start);
    let (query, fragment) = match query[1..].find('#') {
        Some(at) => (&query[1..=at], &query[at + 1..]),
        None => (&query[1..], ""),
    };
    let mut values = Vec::new();
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some((key, value)) if key == STATEMENT_MODE => {
                values.push(percent_decode(value));
                false
            }
            _ => true,
        })
        .collect();
    let mut rest = base.to_owned();
    if !kept.is_empty() && kept != [""] {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    rest.push_str(fragment);
    (rest, values)
}

/// `host=db statement_mode=unnamed user=app` → `host=db  user=app`, following libpq's
/// rules for values: single-quoted (`'a b'`) or bare, a backslash escaping the next
/// character in either.
fn split_key_values(text: &str) -> (String, Vec<String>) {
    let bytes = text.as_bytes();
    let mut rest = String::with_capacity(text.len());
    let mut values = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            rest.push(bytes[i] as char);
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &text[start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
        }
        let mut value = Vec::new();
        let quoted = i < bytes.len() && bytes[i] == b'\'';
        if quoted {
            i += 1;
        }
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if i + 1 < bytes.len() => {
                    value.push(bytes[i + 1]);
                    i += 2;
                }
                b'\'' if quoted => {
                    i += 1;
                    break;
                }
                b if !quoted && b.is_ascii_whitespace() => break,
                b => {
                    value.push(b);
                    i += 1;
                }
            }
        }
        if key == STATEMENT_MODE {
            values.push(String::from_utf8_lossy(&value).into_owned());
        } else {
            rest.push_str(&text[start..i]);
        }
    }
    (rest, values)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> (String, Option<StatementMode>) {
        let (rest, options) = split(url).unwrap();
        (rest, options.statement_mode)
    }

    #[test]
    fn the_option_is_taken_out_of_urls() {
        assert_eq!(
            mode("postgres://app@db/x?statement_mode=unnamed"),
            (
                "postgres://app@db/x".to_owned(),
                Some(StatementMode::Unnamed)
            )
        );
        assert_eq!(
            mode("postgresql://app@db/x?sslmode=disable&statement_mode=Named&application_name=a"),
            (
                "postgresql://app@db/x?sslmode=disable&application_name=a".to_owned(),
                Some(StatementMode::Named)
            )
        );
        assert_eq!(
            mode("postgres://app:p%3Fss@db/x"),
            ("postgres://app:p%3Fss@db/x".to_owned(), None)
        );
    }

    #[test]
    fn the_option_is_taken_out_of_key_value_strings() {
        let (rest, found) = mode("host=db statement_mode=unnamed user=app");
        assert_eq!(found, Some(StatementMode::Unnamed));
        assert_eq!(
            rest.split_whitespace().collect::<Vec<_>>(),
            ["host=db", "user=app"]
        );
        let (rest, found) =
            mode("password='a b\\' statement_mode=named' statement_mode = 'unnamed' dbname=x");
        assert_eq!(found, Some(StatementMode::Unnamed));
        assert!(
            rest.contains("password='a b\\' statement_mode=named'"),
            "{rest}"
        );
        assert!(
            rest.contains("dbname=x") && !rest.contains("'unnamed'"),
            "{rest}"
        );
        assert_eq!(mode("host=db").1, None);
    }

    #[test]
    fn a_bad_value_names_the_option_and_hides_the_password() {
        for url in [
            "postgres://app:s3cret@db/x?statement_mode=cached",
            "host=db password=s3cret statement_mode=cached",
        ] {
            let err = split(url).unwrap_err();
            let message = err.to_string();
            assert!(message.contains("statement_mode"), "{message}");
            assert!(message.contains("`cached`"), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
            assert_eq!(err.field(), "url");
        }
    }
}
