//! The `--output` flag shared by the commands.

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people: 80 columns, √ / ‼ / × lines with hints.
    #[default]
    Text,
    /// For machines: one JSON document with a stable, documented schema.
    Json,
}
