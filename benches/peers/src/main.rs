//! keygate, cedar-policy and casbin on one scenario: first a differential check that all three
//! reach the same allow/deny decision on every request of a fixed, seeded random mix, then the
//! median time per decision of each on that same mix.
//!
//! ```text
//! cd benches/peers && cargo run --release            # 200,000 requests, then timings
//! cd benches/peers && cargo run --release -- 500000  # a bigger differential mix
//! ```
//!
//! The semantics are keygate's (DESIGN.md, `authorize`): allowed exactly when the key is not
//! revoked, not expired (`now < expires_at`), belongs to the resource's account, is account-wide
//! if the action is account-level, reaches the resource (account-wide, a listing, or its own
//! project) and holds the permission. Cedar and casbin encode the same rules in their own
//! idiom (see `cedar.rs` and `casbin_engine.rs`); any disagreement is printed and fails the run.

mod casbin_engine;
mod cedar;
mod keygate_engine;
mod scenario;

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use scenario::{Request, Scenario};

/// How many requests the differential check covers unless the first argument says otherwise.
const DEFAULT_REQUESTS: usize = 200_000;
/// The seed of the scenario and of the request mix: the run is the same on every machine.
const SEED: u64 = 0x006b_6579_6761_7465;

fn main() -> ExitCode {
    let requests: usize = match std::env::args().nth(1).map(|a| a.replace('_', "").parse()) {
        None => DEFAULT_REQUESTS,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("usage: keygate-peers [REQUESTS]: {e}");
            return ExitCode::FAILURE;
        }
    };

    println!("machine: {}", machine());
    let scenario = Scenario::generate(SEED);
    let mix = scenario.requests(SEED ^ 0x5eed, requests);
    println!(
        "scenario: {} accounts, {} projects, {} keys ({} account-wide, {} revoked, {} with expiry), \
         {} permissions; {} requests",
        scenario.accounts,
        scenario.projects.len(),
        scenario.keys.len(),
        scenario.keys.iter().filter(|k| k.project.is_none()).count(),
        scenario.keys.iter().filter(|k| k.revoked).count(),
        scenario
            .keys
            .iter()
            .filter(|k| k.expires_at.is_some())
            .count(),
        scenario.permissions.len(),
        mix.len(),
    );

    let setup = Instant::now();
    let kg = match keygate_engine::Engine::new(&scenario) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("keygate setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let kg_setup = setup.elapsed();
    let setup = Instant::now();
    let cedar = match cedar::Engine::new(&scenario) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cedar setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cedar_setup = setup.elapsed();
    let setup = Instant::now();
    let casbin = match casbin_engine::Engine::new(&scenario) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("casbin setup failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let casbin_setup = setup.elapsed();
    println!(
        "setup: keygate {kg_setup:.2?}, cedar-policy {cedar_setup:.2?}, casbin {casbin_setup:.2?}"
    );

    // The differential check: every request, every engine, same answer.
    let kg_inputs = kg.prepare(&scenario, &mix);
    let cedar_inputs = cedar.prepare(&scenario, &mix);
    let casbin_inputs = casbin.prepare(&scenario, &mix);
    let mut disagreements = 0usize;
    let mut allowed = 0usize;
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    for (i, request) in mix.iter().enumerate() {
        let (k, reason) = kg.decide_explained(&kg_inputs[i]);
        let direct = kg.decide_with_key_in_hand(&kg_inputs[i]);
        let by_id = kg.decide_by_id(&kg_inputs[i]);
        let c_pre = cedar.decide_prebuilt(&cedar_inputs[i]);
        let c = match cedar.decide(&cedar_inputs[i]) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cedar error on request {i}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let b = match casbin.decide(&casbin_inputs[i]) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("casbin error on request {i}: {e}");
                return ExitCode::FAILURE;
            }
        };
        allowed += usize::from(k);
        *reasons.entry(reason).or_default() += 1;
        if k != c || k != b || k != direct || k != by_id || k != c_pre {
            disagreements += 1;
            if disagreements <= 20 {
                eprintln!(
                    "DISAGREEMENT on request {i}: keygate={k} (by id: {by_id}, key in hand: \
                     {direct}) cedar={c} casbin={b}\n  {}",
                    describe(&scenario, request)
                );
            }
        }
    }
    println!(
        "differential: {} requests, {} allowed, {} denied, {} disagreements",
        mix.len(),
        allowed,
        mix.len() - allowed,
        disagreements
    );
    println!("  keygate's reasons: {reasons:?}");
    if disagreements > 0 {
        eprintln!("FAILED: the engines disagree on {disagreements} requests");
        return ExitCode::FAILURE;
    }

    // Timings. Each engine decides the same requests in batches; a batch's time over its size is
    // one sample, and the median sample is the figure. The engines' batches are interleaved,
    // round after round, so that load from anything else on the machine falls on all of them
    // alike and the ratios stay fair even when the absolute figures drift. Slow engines get
    // smaller batches so every round takes a few milliseconds.
    println!("timing (median ns per decision over {ROUNDS} interleaved rounds of batches)...");
    let mut timers = [
        Timer::boxed(&kg_inputs, 1_000, |r| kg.decide(r)),
        Timer::boxed(&kg_inputs, 1_000, |r| kg.decide_by_id(r)),
        Timer::boxed(&kg_inputs, 1_000, |r| kg.decide_with_key_in_hand(r)),
        Timer::boxed(&cedar_inputs, 40, |r| cedar.decide(r).unwrap_or(false)),
        Timer::boxed(&cedar_inputs, 40, |r| cedar.decide_prebuilt(r)),
        Timer::boxed(&casbin_inputs, 20, |r| casbin.decide(r).unwrap_or(false)),
    ];
    for timer in &mut timers {
        timer.warm_up();
    }
    for _ in 0..ROUNDS {
        for timer in &mut timers {
            timer.batch();
        }
    }
    let [
        kg_ns,
        kg_id_ns,
        kg_direct_ns,
        cedar_ns,
        cedar_pre_ns,
        casbin_ns,
    ] = timers.map(|mut t| t.median());

    println!();
    println!(
        "| engine | one decision, from | median ns/decision | vs keygate from token | vs keygate from key id |"
    );
    println!("|---|---|---:|---:|---:|");
    let row = |name: &str, from: &str, ns: f64| {
        println!(
            "| {name} | {from} | {ns:.1} | {:.1}x | {:.1}x |",
            ns / kg_ns,
            ns / kg_id_ns
        );
    };
    row(
        "keygate `Keyring::authorize`",
        "raw token (SHA-256, constant-time search, all rules)",
        kg_ns,
    );
    row(
        "keygate `Keyring::get` + `authorize`",
        "key id (as the peers are handed)",
        kg_id_ns,
    );
    row("keygate `authorize`", "`ApiKey` in hand", kg_direct_ns);
    row(
        &format!("cedar-policy {}", cedar::VERSION),
        "key id: context + `Request::new` + `is_authorized`",
        cedar_ns,
    );
    row(
        &format!("cedar-policy {} (request built ahead)", cedar::VERSION),
        "prebuilt `Request`: `is_authorized` alone",
        cedar_pre_ns,
    );
    row(
        &format!("casbin {}", casbin_engine::VERSION),
        "key id: `enforce` with 7 request fields",
        casbin_ns,
    );
    ExitCode::SUCCESS
}

/// How many rounds of batches the timings take.
const ROUNDS: usize = 1_500;

/// One engine's timing: walks the mix round-robin, a batch at a time.
struct Timer<'a, T, F> {
    inputs: &'a [T],
    batch: usize,
    decide: F,
    at: usize,
    samples: Vec<f64>,
}

trait Batch {
    fn warm_up(&mut self);
    fn batch(&mut self);
    fn median(&mut self) -> f64;
}

impl<'a, T, F: Fn(&T) -> bool> Timer<'a, T, F> {
    fn boxed(inputs: &'a [T], batch: usize, decide: F) -> Box<dyn Batch + 'a>
    where
        T: 'a,
        F: 'a,
    {
        Box::new(Timer {
            inputs,
            batch,
            decide,
            at: 0,
            samples: Vec::with_capacity(ROUNDS),
        })
    }

    fn run(&mut self) {
        for _ in 0..self.batch {
            let r = &self.inputs[self.at];
            self.at = (self.at + 1) % self.inputs.len();
            black_box((self.decide)(black_box(r)));
        }
    }
}

impl<T, F: Fn(&T) -> bool> Batch for Timer<'_, T, F> {
    /// A few untimed batches warm caches and branch predictors.
    fn warm_up(&mut self) {
        for _ in 0..3 {
            self.run();
        }
    }

    fn batch(&mut self) {
        let start = Instant::now();
        self.run();
        self.samples
            .push(start.elapsed().as_nanos() as f64 / self.batch as f64);
    }

    fn median(&mut self) -> f64 {
        self.samples.sort_by(f64::total_cmp);
        self.samples[self.samples.len() / 2]
    }
}

/// The CPU model and how many CPUs the process may use, for the record next to the figures.
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cpus} CPUs")
}

fn describe(scenario: &Scenario, request: &Request) -> String {
    let key = scenario.key(request.key);
    format!(
        "request {request:?}\n  key {key:?}\n  permission {}",
        scenario.permissions[request.permission]
    )
}
