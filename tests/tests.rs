//! The one integration test binary.
mod compose;
