//! End-to-end tests for tandem against a real control plane (see `e2e/README.md`).
//!
//! The tests live in `e2e/tests/` and are `#[ignore]`d so that `cargo test --workspace`
//! skips them; `bash e2e/ci.sh` builds and starts the control plane and runs them.
//! This library holds what the tests share: a minimal mutating admission webhook served
//! over HTTPS on loopback, with a certificate signed by its own CA.

pub mod webhook;
