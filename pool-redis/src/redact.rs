//! Showing URLs and connection settings without their passwords.

use redis::{ConnectionAddr, ConnectionInfo};

use pool_core::redact::{mask_unparsed, mask_url_password, MASK};

/// `input`, a redis URL, with its password (in the user info, or a `pass`/`password`
/// query parameter of a `unix://` URL) replaced by `***`. Text that cannot be read as
/// a URL is shown as far as it cannot hold a password ([`mask_unparsed`]).
pub(crate) fn redact_url(input: &str) -> String {
    mask_url_password(input, &["pass", "password"]).unwrap_or_else(|| mask_unparsed(input))
}

/// Where `info` connects, as a URL without the password (a password, if set, shows as
/// `***`): `redis://user:***@host:port/db`, `rediss://...`, `unix:///path?db=N`.
pub(crate) fn describe(info: &ConnectionInfo) -> String {
    let redis = info.redis_settings();
    let db = redis.db();
    let user = redis.username();
    let has_password = redis.password().is_some();
    let userinfo = match (user, has_password) {
        (Some(user), true) => format!("{user}:{MASK}@"),
        (Some(user), false) => format!("{user}@"),
        (None, true) => format!(":{MASK}@"),
        (None, false) => String::new(),
    };
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => {
            format!("redis://{userinfo}{}:{port}/{db}", bracketed(host))
        }
        ConnectionAddr::TcpTls { host, port, .. } => {
            format!("rediss://{userinfo}{}:{port}/{db}", bracketed(host))
        }
        ConnectionAddr::Unix(path) => {
            let mut out = format!("unix://{}?db={db}", path.display());
            if let Some(user) = user {
                out.push_str("&user=");
                out.push_str(user);
            }
            if has_password {
                out.push_str("&pass=");
                out.push_str(MASK);
            }
            out
        }
        other => format!("redis://{userinfo}{other}/{db}"),
    }
}

/// A cluster, by its seed nodes, without the password: `redis cluster
/// redis://user:***@host1:port1,host2:port2` (the credentials, TLS and database are the
/// same for every seed; a database other than 0 follows as `/N`).
pub(crate) fn describe_cluster(seeds: &[ConnectionInfo]) -> String {
    let Some(first) = seeds.first() else {
        return "redis cluster (no seed nodes)".to_owned();
    };
    let described = describe(first);
    // `redis://user:***@host:port/db`: the scheme and user info of the first seed.
    let (scheme, rest) = described.split_once("://").unwrap_or(("redis", &described));
    let userinfo = rest.rfind('@').map_or("", |at| &rest[..=at]);
    let hosts: Vec<String> = seeds
        .iter()
        .map(|seed| match seed.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                format!("{}:{port}", bracketed(host))
            }
            other => other.to_string(),
        })
        .collect();
    let db = first.redis_settings().db();
    let db = if db == 0 {
        String::new()
    } else {
        format!("/{db}")
    };
    format!("redis cluster {scheme}://{userinfo}{}{db}", hosts.join(","))
}

/// An IPv6 address in brackets, as a URL writes it.
fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        let cases = [
            ("redis://:s3cret@db:6379/2", "redis://:***@db:6379/2"),
            ("redis://app:s3cret@db/0", "redis://app:***@db/0"),
            ("rediss://app:p/a@ss@db", "rediss://app:***@db"),
            ("redis://db:6379", "redis://db:6379"),
            (
                "unix:///run/redis.sock?db=1&user=app&pass=s3cret",
                "unix:///run/redis.sock?db=1&user=app&pass=***",
            ),
            ("nonsense with s3cret@", "***@"),
            ("nonsense with s3cret", "***"),
        ];
        for (input, expected) in cases {
            let shown = redact_url(input);
            assert_eq!(shown, expected, "{input}");
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }

    #[test]
    fn connection_infos_are_described_without_their_passwords() {
        let info: ConnectionInfo = "redis://app:s3cret@db:6380/3".parse().unwrap();
        assert_eq!(describe(&info), "redis://app:***@db:6380/3");
        let info: ConnectionInfo = "redis://127.0.0.1".parse().unwrap();
        assert_eq!(describe(&info), "redis://127.0.0.1:6379/0");
        let info: ConnectionInfo = "unix:///tmp/r.sock?db=2&pass=s3cret".parse().unwrap();
        assert_eq!(describe(&info), "unix:///tmp/r.sock?db=2&pass=***");
        let info: ConnectionInfo = "redis://[::1]:7000".parse().unwrap();
        assert_eq!(describe(&info), "redis://[::1]:7000/0");
    }

    #[test]
    fn clusters_are_described_by_their_seeds_without_the_password() {
        let seeds: Vec<ConnectionInfo> = ["redis://app:s3cret@a:7000", "redis://app:s3cret@b:7001"]
            .iter()
            .map(|url| url.parse().unwrap())
            .collect();
        assert_eq!(
            describe_cluster(&seeds),
            "redis cluster redis://app:***@a:7000,b:7001"
        );
        let seeds: Vec<ConnectionInfo> = ["redis://[::1]:7000", "redis://c:7002"]
            .iter()
            .map(|url| url.parse().unwrap())
            .collect();
        assert_eq!(
            describe_cluster(&seeds),
            "redis cluster redis://[::1]:7000,c:7002"
        );
        assert_eq!(describe_cluster(&[]), "redis cluster (no seed nodes)");
    }
}
