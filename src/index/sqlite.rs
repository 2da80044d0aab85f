//! SQLite index (placeholder; being written).
