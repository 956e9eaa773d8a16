//! The access matrix as a terminal table and as a self-contained HTML page.

use std::fmt::Write as _;

use keygate::testing::AccessMatrix;
use keygate::testing::reference::deny_name;
use keygate::{Decision, Deny};

/// One outcome's look: a symbol for the terminal and the page, a colour and a legend label.
struct Look {
    symbol: &'static str,
    colour: &'static str,
    text: &'static str,
    label: &'static str,
}

/// Every outcome, in rule order, each with its own colour.
const LOOKS: [(&str, Look); 8] = [
    (
        "allow",
        Look {
            symbol: "✓",
            colour: "#1f9d55",
            text: "#ffffff",
            label: "allowed",
        },
    ),
    (
        "revoked",
        Look {
            symbol: "R",
            colour: "#c53030",
            text: "#ffffff",
            label: "revoked key (401)",
        },
    ),
    (
        "expired",
        Look {
            symbol: "E",
            colour: "#b83280",
            text: "#ffffff",
            label: "expired key (401)",
        },
    ),
    (
        "unknown_key",
        Look {
            symbol: "?",
            colour: "#1a202c",
            text: "#ffffff",
            label: "unknown key (401)",
        },
    ),
    (
        "other_account",
        Look {
            symbol: "O",
            colour: "#2b6cb0",
            text: "#ffffff",
            label: "another account (404)",
        },
    ),
    (
        "account_level_action",
        Look {
            symbol: "A",
            colour: "#6b46c1",
            text: "#ffffff",
            label: "project key, account-level action (403)",
        },
    ),
    (
        "out_of_scope",
        Look {
            symbol: "S",
            colour: "#dd6b20",
            text: "#ffffff",
            label: "outside the key's project (404)",
        },
    ),
    (
        "missing_permission",
        Look {
            symbol: "·",
            colour: "#e2e8f0",
            text: "#4a5568",
            label: "permission not held (403)",
        },
    ),
];

fn outcome(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "allow",
        Decision::Deny(deny) => deny_name(&deny),
    }
}

fn look(name: &str) -> &'static Look {
    LOOKS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&LOOKS[7].1, |(_, l)| l)
}

/// A short column tag per resource: `a` account, `l` listing, `1`, `2`, … projects.
fn tags(matrix: &AccessMatrix) -> Vec<String> {
    let mut project = 0;
    matrix
        .resources
        .iter()
        .map(|r| match r.to_string().as_str() {
            "account" => "a".to_owned(),
            "listing" => "l".to_owned(),
            _ => {
                project += 1;
                project.to_string()
            }
        })
        .collect()
}

/// The matrix as a table: one row per permission, one column group per key, one narrow column per
/// resource; a legend for the symbols and the resource tags.
pub fn terminal(file: &str, matrix: &AccessMatrix) -> String {
    let mut out = String::new();
    let tags = tags(matrix);
    let _ = writeln!(out, "access matrix of {file} at {}\n", matrix.at);
    let _ = writeln!(out, "keys:");
    let name_width = matrix
        .keys
        .iter()
        .map(|k| k.name.chars().count())
        .max()
        .unwrap_or(0);
    for key in &matrix.keys {
        let _ = writeln!(out, "  {:<name_width$}  {}", key.name, key.summary);
    }
    let _ = write!(out, "resources:");
    for (tag, resource) in tags.iter().zip(&matrix.resources) {
        let suffix = if tag == "a" {
            " (account-level actions)"
        } else {
            ""
        };
        let _ = write!(out, "  {tag} = {resource}{suffix}");
    }
    let _ = writeln!(out, "\n");

    let group_width = |name: &str| name.chars().count().max(tags.len() * 2 - 1);
    let perm_width = matrix
        .permissions
        .iter()
        .map(|p| p.chars().count())
        .max()
        .unwrap_or(0)
        .max(10);
    let _ = write!(out, "{:<perm_width$}", "permission");
    for key in &matrix.keys {
        let _ = write!(out, "  {:<w$}", key.name, w = group_width(&key.name));
    }
    let _ = write!(out, "\n{:<perm_width$}", "");
    for key in &matrix.keys {
        let _ = write!(out, "  {:<w$}", tags.join(" "), w = group_width(&key.name));
    }
    let _ = writeln!(out);
    for (p, permission) in matrix.permissions.iter().enumerate() {
        let _ = write!(out, "{permission:<perm_width$}");
        for (k, key) in matrix.keys.iter().enumerate() {
            let cells: Vec<&str> = (0..matrix.resources.len())
                .map(|r| {
                    matrix
                        .decision(k, r, p)
                        .map_or(" ", |d| look(outcome(d)).symbol)
                })
                .collect();
            let _ = write!(out, "  {:<w$}", cells.join(" "), w = group_width(&key.name));
        }
        let _ = writeln!(out);
    }
    let _ = write!(out, "\nlegend:");
    for (_, l) in &LOOKS {
        let _ = write!(out, "  {} {}", l.symbol, l.label);
    }
    let _ = writeln!(out);
    // Column padding leaves trailing blanks on the last group; a terminal needs none.
    out.lines().map(|l| format!("{}\n", l.trim_end())).collect()
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            other => other.to_string(),
        })
        .collect()
}

/// The status a denial answers with, for the page's tooltips.
fn status(decision: Decision) -> u16 {
    match decision {
        Decision::Allow => 200,
        Decision::Deny(Deny::UnknownKey | Deny::Revoked | Deny::Expired) => 401,
        Decision::Deny(Deny::OtherAccount | Deny::OutOfScope) => 404,
        Decision::Deny(
            Deny::AddressNotAllowed | Deny::AccountLevelAction | Deny::MissingPermission(_),
        ) => 403,
    }
}

/// The matrix as one HTML page with no outside resources: permissions down the side (grouped by
/// their `resource:` prefix), keys across the top, one coloured cell per key, resource and
/// permission, and a legend with each outcome's count.
pub fn html(file: &str, matrix: &AccessMatrix) -> String {
    let mut counts = [0usize; LOOKS.len()];
    for key in &matrix.cells {
        for resource in key {
            for decision in resource {
                let name = outcome(*decision);
                if let Some(i) = LOOKS.iter().position(|(n, _)| *n == name)
                    && let Some(c) = counts.get_mut(i)
                {
                    *c += 1;
                }
            }
        }
    }
    let resources = matrix.resources.len();
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>keygate access matrix: {title}</title>
<style>
body {{ font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1a202c; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }}
p.meta {{ margin: 0 0 16px; color: #4a5568; }}
.legend {{ display: flex; flex-wrap: wrap; gap: 8px 18px; margin: 0 0 18px; }}
.legend span.sw {{ display: inline-block; width: 22px; height: 18px; border-radius: 3px; text-align: center; margin-right: 6px; font-weight: 600; vertical-align: middle; }}
table {{ border-collapse: separate; border-spacing: 0; }}
th, td {{ padding: 0; }}
thead {{ position: sticky; top: 0; background: #fff; z-index: 2; }}
thead th {{ background: #fff; }}
th.key {{ border-left: 3px solid #fff; padding: 4px 6px; text-align: left; vertical-align: bottom; height: 50px; min-width: 90px; }}
th.key .name {{ font-weight: 700; }}
th.key .summary {{ display: block; font-weight: 400; font-size: 11px; color: #4a5568; }}
th.res {{ font-size: 11px; font-weight: 500; color: #4a5568; writing-mode: vertical-rl; transform: rotate(180deg); padding: 4px 0; height: 70px; }}
th.perm {{ position: sticky; left: 0; background: #fff; text-align: right; padding: 0 10px 0 0; font-weight: 500; white-space: nowrap; z-index: 1; }}
tr.group th {{ text-align: left; padding: 10px 0 2px; font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: #718096; position: sticky; left: 0; background: #fff; }}
td.c {{ width: 22px; height: 20px; text-align: center; font-size: 12px; font-weight: 600; border: 1px solid #fff; }}
td.first {{ border-left: 3px solid #fff; }}
</style></head><body>
<h1>Who can do what: {title}</h1>
<p class="meta">Decided at {at} with keygate's <code>authorize</code>. Columns per key: the account itself (account-level actions: creating or destroying projects), a listing, and each project. Hover a cell for its reason and HTTP status.</p>
<div class="legend">"#,
        title = escape(file),
        at = matrix.at,
    );
    for ((_, l), count) in LOOKS.iter().zip(counts) {
        let _ = write!(
            page,
            r#"<div><span class="sw" style="background:{};color:{}">{}</span>{} ({count})</div>"#,
            l.colour, l.text, l.symbol, l.label
        );
    }
    let _ = write!(page, "</div>\n<table>\n<thead><tr><th class=\"perm\"></th>");
    for key in &matrix.keys {
        let _ = write!(
            page,
            r#"<th class="key" colspan="{resources}"><span class="name">{}</span><span class="summary">{}</span></th>"#,
            escape(&key.name),
            escape(&key.summary)
        );
    }
    let _ = write!(page, "</tr>\n<tr><th class=\"perm\">permission</th>");
    for _ in &matrix.keys {
        for resource in &matrix.resources {
            let _ = write!(
                page,
                r#"<th class="res">{}</th>"#,
                escape(&resource.to_string())
            );
        }
    }
    let _ = writeln!(page, "</tr></thead>\n<tbody>");
    let columns = 1 + matrix.keys.len() * resources;
    let mut group: Option<&str> = None;
    for (p, permission) in matrix.permissions.iter().enumerate() {
        let prefix = permission.split_once(':').map(|(r, _)| r);
        if prefix.is_some() && prefix != group {
            group = prefix;
            let _ = writeln!(
                page,
                r#"<tr class="group"><th colspan="{columns}">{}</th></tr>"#,
                escape(prefix.unwrap_or_default())
            );
        }
        let _ = write!(page, r#"<tr><th class="perm">{}</th>"#, escape(permission));
        for (k, key) in matrix.keys.iter().enumerate() {
            for (r, resource) in matrix.resources.iter().enumerate() {
                let Some(decision) = matrix.decision(k, r, p) else {
                    continue;
                };
                let name = outcome(decision);
                let l = look(name);
                let first = if r == 0 { " first" } else { "" };
                let _ = write!(
                    page,
                    r#"<td class="c{first}" style="background:{};color:{}" title="{}: {} on {} → {} ({})">{}</td>"#,
                    l.colour,
                    l.text,
                    escape(&key.name),
                    escape(permission),
                    escape(&resource.to_string()),
                    name,
                    status(decision),
                    l.symbol
                );
            }
        }
        let _ = writeln!(page, "</tr>");
    }
    let _ = writeln!(page, "</tbody></table>\n</body></html>");
    page
}
