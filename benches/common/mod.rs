//! What the criterion benches share.

use std::time::Duration;

use criterion::Criterion;

/// Short windows keep the whole `cargo bench` run within minutes on two shared cores; the
/// functions measured take nanoseconds to microseconds, so two seconds of samples is plenty.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}
