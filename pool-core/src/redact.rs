//! Showing connection URLs without their passwords, for the driver crates' errors,
//! logs and `Debug` output.
//!
//! The masking errs towards hiding too much: a password may itself hold `/`, `@` or
//! `?`, so the user info is taken to end at the *last* `@` before the query.

/// What a password is shown as.
pub const MASK: &str = "***";

/// `url` with the password of its user info, and the value of every query parameter
/// named in `password_params` (compared without case), replaced by [`MASK`].
///
/// Returns `None` when `url` has no `scheme://`: where a password would be in such text
/// cannot be told, so the caller decides what to show instead.
///
/// ```
/// use pool_core::redact::mask_url_password;
///
/// let shown = mask_url_password("redis://app:s3cret@db:6379/0?password=x", &["password"]);
/// assert_eq!(shown.as_deref(), Some("redis://app:***@db:6379/0?password=***"));
/// assert_eq!(mask_url_password("app:s3cret@db", &["password"]), None);
/// ```
pub fn mask_url_password(url: &str, password_params: &[&str]) -> Option<String> {
    let scheme_end = url_scheme(url)?.len() + 3;
    let (scheme, rest) = url.split_at(scheme_end);
    let (before_query, query) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match before_query.rfind('@') {
        Some(at) => {
            let userinfo = &before_query[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push(':');
                    out.push_str(MASK);
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&before_query[at..]);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        for (i, param) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match param.split_once('=') {
                Some((key, _))
                    if password_params
                        .iter()
                        .any(|name| key.eq_ignore_ascii_case(name)) =>
                {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(MASK);
                }
                _ => out.push_str(param),
            }
        }
    }
    Some(out)
}

/// The scheme `text` starts with, as in `scheme://...`: letters, digits, `+`, `-` and
/// `.`, beginning with a letter. `None` for text without one, such as a `key=value`
/// string that holds a `://` further on (in a password, say).
///
/// ```
/// use pool_core::redact::url_scheme;
///
/// assert_eq!(url_scheme("postgress://app@db/x"), Some("postgress"));
/// assert_eq!(url_scheme("host=db password=a://b"), None);
/// assert_eq!(url_scheme("app:s3cret@db"), None);
/// ```
pub fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    is_scheme.then_some(scheme)
}

/// Text that could not be read as a URL (a mistyped one, say), shown as far as it can
/// be without a password: only what follows its last `@` (where a URL's host would
/// begin), unless that is spelt `pass` somewhere. Without an `@` nothing can be told
/// apart from a password (a bare password pasted into the wrong variable, say), so
/// nothing is shown.
///
/// ```
/// use pool_core::redact::mask_unparsed;
///
/// assert_eq!(mask_unparsed("postgres:/app:s3cret@db/x"), "***@db/x");
/// assert_eq!(mask_unparsed("s3cret"), "***");
/// assert_eq!(mask_unparsed("app@db?password=s3cret"), "***");
/// ```
pub fn mask_unparsed(text: &str) -> String {
    match text.rfind('@') {
        _ if text.is_empty() => String::new(),
        Some(at) if !text[at..].to_ascii_lowercase().contains("pass") => {
            format!("{MASK}{}", &text[at..])
        }
        _ => MASK.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unparsed_text_never_shows_a_password() {
        let cases = [
            ("postgress://app:s3cret@db/x", "***@db/x"),
            ("app:p@s3cret@db:5432", "***@db:5432"),
            ("user:s3cret", "***"),
            ("s3cret@db?PASS=s3cret", "***"),
            ("not a url s3cret", "***"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(mask_unparsed(input), expected, "{input}");
        }
    }

    #[test]
    fn passwords_in_user_info_and_query_are_masked() {
        let params = &["password", "pass"];
        let cases = [
            ("mysql://app:s3cret@db/x", "mysql://app:***@db/x"),
            ("mysql://app@db:3307/x", "mysql://app@db:3307/x"),
            ("mysql://app:p/a@ss@db/x", "mysql://app:***@db/x"),
            ("redis://:s3cret@db", "redis://:***@db"),
            (
                "mysql://db/x?user=app&PASSWORD=s3cret&prefer_socket=false",
                "mysql://db/x?user=app&PASSWORD=***&prefer_socket=false",
            ),
            (
                "unix:///run/redis.sock?pass=s3cret&db=2",
                "unix:///run/redis.sock?pass=***&db=2",
            ),
            ("mysql://db", "mysql://db"),
            ("mysql://db?flag", "mysql://db?flag"),
        ];
        for (input, expected) in cases {
            let shown = mask_url_password(input, params).expect("a URL");
            assert_eq!(shown, expected, "{input}");
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }

    #[test]
    fn only_the_named_parameters_are_masked() {
        let shown = mask_url_password("postgres://h/db?pass=x&password=y", &["password"]);
        assert_eq!(
            shown.as_deref(),
            Some("postgres://h/db?pass=x&password=***")
        );
    }

    #[test]
    fn text_without_a_scheme_is_not_a_url() {
        assert_eq!(mask_url_password("app:s3cret@db", &["password"]), None);
        assert_eq!(mask_url_password("", &["password"]), None);
        assert_eq!(
            mask_url_password("host=db password=a://b@c", &["password"]),
            None
        );
    }
}
