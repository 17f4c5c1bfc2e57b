//! One module per subcommand; each parses its flags and calls a library.

pub mod adopt;
pub mod adopt_report;
pub mod completion;
pub mod doctor;
pub mod inject;
pub mod install;
pub mod label_nodes;
pub mod lint;
pub mod rollout;
pub mod status;
pub mod uninstall;
pub mod version;
pub mod webhook;
