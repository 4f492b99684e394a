//! TLS through rustls (the `rustls` feature) against the test server, which must have
//! `ssl = on` (Debian's default cluster does, with its snake-oil certificate); a server
//! without TLS fails the test with that reason rather than skipping it.
//!
//! The test trusts any certificate (a test server's is self-signed); what it checks is
//! that the pool's connections are encrypted, as the server sees them.

use std::sync::Arc;

use pool_postgres::rustls;
use pool_postgres::{Manager, Pool};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Accepts any server certificate, but checks the handshake signatures properly.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn trusting_client_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_encrypted_with_sslmode_require() {
    let server = tokio::task::block_in_place(pool_testkit::servers::postgres)
        .expect("a PostgreSQL server to test against");
    let mut config: tokio_postgres::Config = server.url().parse().unwrap();

    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    drop(client);
    assert_eq!(
        ssl,
        "on",
        "the TLS test needs a PostgreSQL server with ssl = on (set POOL_TEST_POSTGRES_URL \
         to one); {} has ssl = {ssl}",
        server.url()
    );

    config.ssl_mode(tokio_postgres::config::SslMode::Require);
    let manager = Manager::with_rustls(config, trusting_client_config());
    let pool = Pool::builder(manager).max_size(2).build().unwrap();
    for _ in 0..2 {
        let conn = pool.get().await.unwrap();
        let encrypted: bool = conn
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(encrypted, "the server sees an unencrypted connection");
    }
}
