//! Named cases that drive [`EngineCore::handle`] directly: a state (built by feeding the core
//! the inputs that lead to it), an input, and the commands expected (or forbidden). Each rule the
//! core's module headers promise, and each hole of the engine issue, has a case here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

pub(crate) mod bench;
mod cases;
