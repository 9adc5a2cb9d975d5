//! The one integration test binary: a module per area, sharing the harness in `util`.

mod util;

mod cli;
mod harness;
mod registry;
