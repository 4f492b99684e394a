//! The conformance suite on the mock backend (`harness = false`; see
//! `pool_testkit::conformance::run_suite`).

fn main() {
    pool_testkit::conformance::run_suite(pool_testkit::mock::MockBackend::new());
}
