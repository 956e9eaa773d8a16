//! Arbitrary sequences of every key operation across several actors, in the simulated world of
//! `tests/common/world.rs` (the same one tests/escalation.rs drives from proptest): users with
//! ranked roles who are demoted, promoted and removed; keys issuing keys; read, rotate, revoke,
//! revoke-tree and narrowing updates by any user or key on any key; time passing.
//!
//! The oracle, checked after every step: every issued key lies within its issuer; every
//! management operation that succeeded was the caller's to do; every allowed request agrees with
//! the reference model under the creator's cap, is allowed to every ancestor as it was, and its
//! permission is held by the creator now; revoked keys and rotated-away secrets never work.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The world uses the reference model from `keygate::testing` (feature `testing`).
#[path = "../../tests/common/world.rs"]
mod world;

fuzz_target!(|bytes: &[u8]| {
    world::World::run(bytes);
});
