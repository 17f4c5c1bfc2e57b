//! One module per subcommand; each parses its flags and calls a library.

pub mod adopt;
pub mod adopt_report;
pub mod doctor;
pub mod inject;
pub mod install;
pub mod label_nodes;
pub mod lint;
pub mod webhook;
