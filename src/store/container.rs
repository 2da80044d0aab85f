//! The frame-addressable zstd instance container (placeholder; being written).
