//! Kubelet emulator (placeholder, being written).
