//! Test sidecar/main program for kubelet-emu tests (placeholder).
fn main() {}
