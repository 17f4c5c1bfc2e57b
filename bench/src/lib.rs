//! Benchmarks for tandem (see `bench/README.md`).
