//! The test kit for keygate's users (feature `testing`).
//!
//! - [`reference`]: the plain reference model of `authorize`, and [`reference::explain`].
pub mod reference;
