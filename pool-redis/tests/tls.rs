//! TLS (the `tls` feature) against a `redis-server` of its own listening only on a TLS
//! port, with a certificate authority and server certificate made for the test by the
//! `openssl` command (which `redis-server`'s TLS support comes with). A missing
//! `openssl` or a `redis-server` without TLS fails the test with that reason.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pool_redis::redis::{self, AsyncCommands};
use pool_redis::{Manager, Pool};

/// A TLS-only `redis-server` in a directory of its own; killed and removed on drop.
struct TlsServer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(dir: &Path, program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install it): {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn tls_server() -> TlsServer {
    let dir = std::env::temp_dir().join(format!(
        "pool-redis-tls-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let days = ["-days", "2"];
    run(
        &dir,
        "openssl",
        &[
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            ][..],
            &["-out", "ca.crt", "-subj", "/CN=pool-redis test CA"],
            &days,
        ]
        .concat(),
    );
    run(
        &dir,
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(
        &dir,
        "openssl",
        &[
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
            ][..],
            &[
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-extfile",
                "san.cnf",
            ],
            &days,
        ]
        .concat(),
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let port_text = port.to_string();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port_text,
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            ".",
        ])
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start redis-server (install redis-server)");
    let mut server = TlsServer { child, dir, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("redis-server exited ({status}): is it built with TLS?");
        }
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

#[tokio::test]
async fn rediss_connects_checks_and_resets_over_tls() {
    let server = tls_server();
    let ca = std::fs::read(server.dir.join("ca.crt")).unwrap();
    let url = format!("rediss://localhost:{}/1", server.port);
    let manager = Manager::with_tls_certificates(
        &url,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca),
        },
    )
    .unwrap()
    .client_name("pool_redis_tls");
    assert_eq!(manager.to_string(), url);
    let pool = Pool::builder(manager)
        .max_size(1)
        .wait_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let first = {
        let mut conn = pool.get().await.unwrap();
        let _: () = conn.set("k", "over tls").await.unwrap();
        redis::cmd("SELECT")
            .arg(0)
            .query_async::<()>(&mut *conn)
            .await
            .unwrap();
        assert!(conn.is_dirty());
        conn.client_id()
    };
    let mut conn = pool.get().await.unwrap();
    assert_eq!(conn.client_id(), first, "replaced, not reset");
    let value: String = conn.get("k").await.unwrap();
    assert_eq!(value, "over tls", "not back on database 1 after the reset");

    // The system's roots do not trust the test CA: the error says the connect failed.
    let untrusted = Manager::from_url(&url).unwrap();
    let err = Pool::builder(untrusted)
        .build()
        .unwrap()
        .get()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot connect to rediss://localhost"),
        "{err}"
    );
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
}
