//! The stateful property runner: random operation sequences through a [`KeyApi`], the oracle
//! judging every step, proptest shrinking a failure to a short transcript.

use core::cell::{Cell, RefCell};
use core::fmt;

use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use super::api::{CreateKey, KeyApi, Observed, Probe, Reply, RootKey};
use super::oracle::{Oracle, Violation};
use crate::authorize::Action;
use crate::catalog::Catalog;
use crate::scope::{AccountId, ProjectId, Resource, Scope};
use crate::testing::policy::scope_label;
use crate::testing::strategy::{Step, set_from_mask, steps};

/// What to fuzz: the server's catalog, the root key's account and the projects to reach for,
/// and how hard to try.
///
/// ```
/// use keygate::testing::FuzzConfig;
/// use keygate::{AccountId, Catalog, ProjectId};
/// let config = FuzzConfig::new(Catalog::read_write_delete(), AccountId::from_u64(1),
///     vec![ProjectId::from_u64(1), ProjectId::from_u64(2)])
///     .cases(200)
///     .max_steps(10)
///     .seed(7);
/// assert_eq!(config.probes().len(), 3 * 4); // 3 permissions × (account, listing, 2 projects)
/// ```
#[derive(Debug, Clone)]
pub struct FuzzConfig {
    catalog: Catalog,
    account: AccountId,
    projects: Vec<ProjectId>,
    cases: u32,
    max_steps: usize,
    seed: u64,
    max_shrink_iters: u32,
}

impl FuzzConfig {
    /// 64 cases of up to 12 steps, seed 0.
    pub fn new(catalog: Catalog, account: AccountId, projects: Vec<ProjectId>) -> Self {
        Self {
            catalog,
            account,
            projects,
            cases: 64,
            max_steps: 12,
            seed: 0,
            max_shrink_iters: 256,
        }
    }

    /// How many random sequences to run (each on a fresh API).
    pub fn cases(mut self, cases: u32) -> Self {
        self.cases = cases;
        self
    }

    /// The longest sequence.
    pub fn max_steps(mut self, steps: usize) -> Self {
        self.max_steps = steps;
        self
    }

    /// The random seed: the same seed replays the same sequences.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How many shrinking attempts a failure gets (each runs a sequence on a fresh API).
    pub fn max_shrink_iters(mut self, iters: u32) -> Self {
        self.max_shrink_iters = iters;
        self
    }

    /// Every request the fuzzer probes credentials with: each permission on the account itself
    /// (account-level), on a listing, and on each project.
    pub fn probes(&self) -> Vec<Probe> {
        let mut resources = vec![
            (Resource::account(self.account), true),
            (Resource::listing(self.account), false),
        ];
        resources.extend(
            self.projects
                .iter()
                .map(|p| (Resource::in_project(self.account, *p), false)),
        );
        let mut probes = Vec::new();
        for permission in self.catalog.all().iter() {
            let Some(name) = self.catalog.name(permission) else {
                continue;
            };
            for (resource, account_level) in &resources {
                let action = Action::new(permission);
                probes.push(Probe {
                    permission: name.to_owned(),
                    action: if *account_level {
                        action.at_account_level()
                    } else {
                        action
                    },
                    resource: *resource,
                });
            }
        }
        probes
    }
}

/// A failing sequence, shrunk: what was done, step by step, and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample {
    /// The case (from 1) at which the first failure was found, before shrinking.
    pub found_at_case: u32,
    /// Each step of the shrunk sequence and its reply, in words.
    pub transcript: Vec<String>,
    /// The oracle's verdict, or `None` for a transport failure.
    pub violation: Option<Violation>,
    /// A transport failure's message.
    pub error: Option<String>,
}

/// The outcome of [`fuzz_escalation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuzzReport {
    /// How many sequences ran before stopping (all of them when nothing was found), not counting
    /// shrinking.
    pub cases_run: u32,
    /// The failure found, shrunk; `None` if every sequence passed.
    pub failure: Option<Counterexample>,
}

impl FuzzReport {
    /// Panics with the report if anything was found: for `#[test]` functions.
    #[track_caller]
    #[expect(
        clippy::panic,
        reason = "an assertion for #[test] functions: panicking with the report is its job"
    )]
    pub fn assert_no_escalation(&self) {
        if self.failure.is_some() {
            panic!("{self}");
        }
    }
}

impl fmt::Display for FuzzReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(failure) = &self.failure else {
            return write!(
                f,
                "escalation fuzzing: {} sequences, nothing found",
                self.cases_run
            );
        };
        writeln!(
            f,
            "escalation fuzzing: found at sequence {}, shrunk to {} steps:",
            failure.found_at_case,
            failure.transcript.len()
        )?;
        for line in &failure.transcript {
            writeln!(f, "  {line}")?;
        }
        match (&failure.violation, &failure.error) {
            (Some(v), _) => write!(f, "{v}"),
            (None, Some(e)) => write!(f, "transport failure: {e}"),
            (None, None) => write!(f, "(no detail)"),
        }
    }
}

enum CaseFailure {
    Violation(Violation),
    Transport(String),
}

/// Drives random sequences of create / rotate / revoke / probe operations through a [`KeyApi`],
/// starting each from a fresh API and its root key (`start`), and judges every step with the
/// [`Oracle`]. The first failure is shrunk by proptest to a short sequence and returned with its
/// transcript.
///
/// After every step the fuzzer probes the credentials the step touched with every request of
/// [`FuzzConfig::probes`]: a new token, the caller's, and every token of a rotated or revoked key.
///
/// ```
/// # use keygate::testing::{Ceiling, CreateKey, FuzzConfig, KeyApi, NewKey, Observed, Probe,
/// #     Reply, RootKey, fuzz_escalation};
/// # use keygate::{AccountId, Catalog, Scope, Timestamp};
/// # #[derive(Debug)] struct Never;
/// # impl std::fmt::Display for Never { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Ok(()) } }
/// # impl std::error::Error for Never {}
/// /// A server whose every key may do everything: the fuzzer notices at once.
/// struct Lax;
/// impl KeyApi for Lax {
///     type Error = Never;
///     fn create(&mut self, _: &str, r: &CreateKey) -> Result<Reply<NewKey>, Never> {
///         Ok(Reply::Done(NewKey { id: r.name.clone(), token: format!("t-{}", r.name) }))
///     }
///     fn rotate(&mut self, _: &str, _: &str) -> Result<Reply<String>, Never> { Ok(Reply::Refused(403)) }
///     fn revoke(&mut self, _: &str, _: &str) -> Result<Reply<()>, Never> { Ok(Reply::Refused(403)) }
///     fn authorize(&mut self, _: &str, _: &Probe) -> Result<Observed, Never> { Ok(Observed::Allowed) }
///     fn now(&mut self) -> Timestamp { Timestamp::from_unix_seconds(1_000) }
/// }
/// let catalog = Catalog::read_write_delete();
/// let account = AccountId::from_u64(1);
/// let config = FuzzConfig::new(catalog.clone(), account, vec![]).cases(16);
/// let report = fuzz_escalation(&config, || {
///     let read_only = catalog.expand(["read", "write"]).unwrap();
///     Ok::<_, Never>((Lax, RootKey { id: "root".into(), token: "t-root".into(),
///         ceiling: Ceiling { account, scope: Scope::Account, permissions: read_only, expires_at: None } }))
/// });
/// let failure = report.failure.expect("a server that allows everything escalates");
/// assert_eq!(failure.found_at_case, 1);
/// assert!(failure.violation.unwrap().to_string().contains("delete"));
/// ```
pub fn fuzz_escalation<A, F>(config: &FuzzConfig, start: F) -> FuzzReport
where
    A: KeyApi,
    F: FnMut() -> Result<(A, RootKey), A::Error>,
{
    let probes = config.probes();
    let start = RefCell::new(start);
    let calls = Cell::new(0u32);
    let first_failure = Cell::new(None::<u32>);
    let run = |steps: &[Step], transcript: &mut Vec<String>| -> Result<(), CaseFailure> {
        let (mut api, root) =
            (start.borrow_mut())().map_err(|e| CaseFailure::Transport(e.to_string()))?;
        run_case(config, &probes, &mut api, &root, steps, transcript)
    };
    let proptest_config = Config {
        cases: config.cases,
        max_shrink_iters: config.max_shrink_iters,
        failure_persistence: None,
        ..Config::default()
    };
    let mut seed = [0u8; 32];
    for (chunk, byte) in seed
        .iter_mut()
        .zip(config.seed.to_le_bytes().iter().cycle())
    {
        *chunk = *byte;
    }
    let mut runner = TestRunner::new_with_rng(
        proptest_config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    );
    let result = runner.run(&steps(config.max_steps), |steps| {
        calls.set(calls.get().saturating_add(1));
        match run(&steps, &mut Vec::new()) {
            Ok(()) => Ok(()),
            Err(failure) => {
                if first_failure.get().is_none() {
                    first_failure.set(Some(calls.get()));
                }
                Err(TestCaseError::fail(match failure {
                    CaseFailure::Violation(v) => v.to_string(),
                    CaseFailure::Transport(e) => e,
                }))
            }
        }
    });
    let found_at_case = first_failure.get().unwrap_or(0);
    let cases_run = if found_at_case > 0 {
        found_at_case
    } else {
        calls.get()
    };
    let failure = match result {
        Ok(()) => None,
        Err(TestError::Abort(reason)) => Some(Counterexample {
            found_at_case,
            transcript: Vec::new(),
            violation: None,
            error: Some(reason.to_string()),
        }),
        Err(TestError::Fail(reason, steps)) => {
            // Replay the shrunk sequence once more, to keep its transcript and verdict.
            let mut transcript = Vec::new();
            let (violation, error) = match run(&steps, &mut transcript) {
                Err(CaseFailure::Violation(v)) => (Some(v), None),
                Err(CaseFailure::Transport(e)) => (None, Some(e)),
                Ok(()) => (
                    None,
                    Some(format!(
                        "did not fail again on replay (flaky server?): {reason}"
                    )),
                ),
            };
            Some(Counterexample {
                found_at_case,
                transcript,
                violation,
                error,
            })
        }
    };
    FuzzReport { cases_run, failure }
}

fn run_case<A: KeyApi>(
    config: &FuzzConfig,
    probes: &[Probe],
    api: &mut A,
    root: &RootKey,
    steps: &[Step],
    transcript: &mut Vec<String>,
) -> Result<(), CaseFailure> {
    let mut oracle = Oracle::new(&config.catalog, root);
    let transport = |e: A::Error| CaseFailure::Transport(e.to_string());
    for (n, step) in steps.iter().enumerate() {
        let n = n + 1;
        let mut touched = Vec::new();
        match step {
            Step::Create {
                caller,
                permissions,
                scope,
                ttl_seconds,
            } => {
                let c = caller.index(oracle.credentials());
                let request = CreateKey {
                    name: format!("fuzz-{n}"),
                    permissions: permissions.map(|mask| {
                        let set = set_from_mask(&config.catalog, mask);
                        config.catalog.names(&set).map(str::to_owned).collect()
                    }),
                    scope: scope.map(|s| match s {
                        None => Scope::Account,
                        Some(i) if !config.projects.is_empty() => config
                            .projects
                            .get(i.index(config.projects.len()))
                            .map_or(Scope::Account, |p| Scope::Project(*p)),
                        Some(_) => Scope::Account,
                    }),
                    ttl_seconds: *ttl_seconds,
                };
                let token = oracle.token(c).unwrap_or_default().to_owned();
                let reply = api.create(&token, &request).map_err(transport)?;
                let now = api.now();
                let asked = format!(
                    "{}, scope {}{}",
                    request.permissions.as_ref().map_or_else(
                        || "default permissions".to_owned(),
                        |p| format!("[{}]", p.join(", "))
                    ),
                    request
                        .scope
                        .map_or_else(|| "default".to_owned(), scope_label),
                    request
                        .ttl_seconds
                        .map_or_else(String::new, |t| format!(", ttl {t} s"))
                );
                match reply {
                    Reply::Done(new) => {
                        let key = oracle.keys();
                        let credential = oracle.created(c, &request, new, now);
                        transcript.push(format!(
                            "{n}. c{c} creates a key ({asked}) -> k{key}, token c{credential}"
                        ));
                        touched.push(credential);
                        touched.push(c);
                    }
                    Reply::Refused(status) => {
                        transcript.push(format!("{n}. c{c} creates a key ({asked}) -> {status}"));
                    }
                }
            }
            Step::Rotate { caller, target } | Step::Revoke { caller, target } => {
                let rotate = matches!(step, Step::Rotate { .. });
                let op = if rotate { "rotate" } else { "revoke" };
                let c = caller.index(oracle.credentials());
                let k = target.index(oracle.keys());
                let token = oracle.token(c).unwrap_or_default().to_owned();
                let id = oracle.key_id(k).unwrap_or_default().to_owned();
                let before = oracle.credentials_of(k);
                let reply = if rotate {
                    api.rotate(&token, &id).map_err(transport)?
                } else {
                    api.revoke(&token, &id)
                        .map_err(transport)?
                        .map(|()| String::new())
                };
                match reply {
                    Reply::Done(new_token) => {
                        // Judged against the state before the operation: a key rotating itself
                        // uses the token the rotation is about to retire.
                        let verdict = oracle.judge_management(c, k, op);
                        let what = if rotate {
                            let credential = oracle.rotated(c, k, new_token);
                            touched.push(credential);
                            format!("new token c{credential}")
                        } else {
                            oracle.revoked(k);
                            "revoked".to_owned()
                        };
                        transcript.push(format!("{n}. c{c} {op}s k{k} -> {what}"));
                        if let Some(v) = verdict {
                            return Err(CaseFailure::Violation(v));
                        }
                        touched.extend(before);
                        touched.push(c);
                    }
                    Reply::Refused(status) => {
                        transcript.push(format!("{n}. c{c} {op}s k{k} -> {status}"));
                    }
                }
            }
            Step::Probe { who, probe } => {
                let c = who.index(oracle.credentials());
                if let Some(p) = probes.get(probe.index(probes.len().max(1))) {
                    transcript.push(format!("{n}. c{c} tries {} ", p.permission));
                    check(api, &oracle, c, std::slice::from_ref(p), transcript)?;
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for c in touched {
            check(api, &oracle, c, probes, transcript)?;
        }
    }
    Ok(())
}

/// Probes credential `c` with each request; the first the oracle flags ends the case.
fn check<A: KeyApi>(
    api: &mut A,
    oracle: &Oracle,
    c: usize,
    probes: &[Probe],
    transcript: &mut Vec<String>,
) -> Result<(), CaseFailure> {
    let token = oracle.token(c).unwrap_or_default().to_owned();
    for probe in probes {
        let now = api.now();
        let observed = api
            .authorize(&token, probe)
            .map_err(|e| CaseFailure::Transport(e.to_string()))?;
        if let Some(violation) = oracle.judge(c, probe, now, observed) {
            transcript.push(format!(
                "   c{c} ({}) tries {}: {}",
                oracle.lineage(c),
                probe.permission,
                match observed {
                    Observed::Allowed => "allowed".to_owned(),
                    Observed::Denied(s) => format!("denied {s}"),
                    Observed::Unsupported => "unsupported".to_owned(),
                }
            ));
            return Err(CaseFailure::Violation(violation));
        }
    }
    Ok(())
}
