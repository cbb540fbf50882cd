//! Training (filled in below).
