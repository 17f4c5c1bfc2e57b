//! The `tandem` command: clap definitions and wiring only.
fn main() {}
