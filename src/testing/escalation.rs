//! The escalation-fuzzing kit: point it at your own server through [`KeyApi`], and it drives
//! random create / rotate / revoke sequences, asking after each step whether any credential it
//! holds can do more than its lineage allows ([`Oracle`]).

mod api;
mod oracle;
mod runner;

pub use api::{Ceiling, CreateKey, KeyApi, NewKey, Observed, Probe, Reply, RootKey};
pub use oracle::{Oracle, Violation, ViolationKind};
pub use runner::{Counterexample, FuzzConfig, FuzzReport, fuzz_escalation};
