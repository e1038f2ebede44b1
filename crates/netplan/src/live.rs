//! The live side, still pure: parse `iptables-save` output into [`SavedState`], decide whether
//! the wanted [`RuleSet`] is already in place, and write the one `iptables-restore --noflush`
//! transaction that gets there from whatever is live (or removes everything again).
//!
//! Why a transaction and not the plain restore text: the plain text's `-N` fails with "Chain
//! already exists" on a second run (istio/istio#5879). The transaction instead declares each of
//! our chains (`:CHAIN - [0:0]`, which creates it or flushes it), deletes our old jumps from the
//! built-in chains, drops chains no longer wanted, and appends the wanted rules — all in one
//! atomic commit per table, so there is never a moment with half the rules.
//!
//! `iptables-save` prints rules in canonical form (implicit `-m tcp`, reordered options), so live
//! rules are never compared with wanted ones as text, except for the plain `-i IF -j RETURN`
//! style rules whose canonical form is the text itself. Existence of a wanted rule is asked of
//! the kernel (`iptables -C`) by the caller and passed in as a predicate.

use std::collections::BTreeMap;

use crate::rules::{Rule, RuleSet, Table, is_builtin_chain, is_own_chain};

/// One table as `iptables-save` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedTable {
    /// Chains in declaration order (built-in and user-defined).
    pub chains: Vec<String>,
    /// Rules as `(chain, spec)`, in order; `spec` is everything after `-A CHAIN `.
    pub rules: Vec<(String, String)>,
}

/// Every table `iptables-save` printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedState {
    /// Tables by name.
    pub tables: BTreeMap<String, SavedTable>,
}

/// Output of `iptables-save` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read iptables-save output, line {line}: {reason}: {text:?}")]
pub struct SaveParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: &'static str,
    /// The line.
    pub text: String,
}

/// What to do to reach the wanted rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyPlan {
    /// Every wanted chain and rule is in place and nothing extra is: apply nothing.
    InSync,
    /// Feed `transaction` to `iptables-restore --noflush`.
    Apply {
        /// The restore input.
        transaction: String,
        /// Some of our chains or jumps were already there (a re-run or an older config).
        residue: bool,
    },
}

/// Which iptables backend holds the namespace's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `iptables-nft*` (nf_tables).
    Nft,
    /// `iptables-legacy*` (x_tables).
    Legacy,
}

// === impl SavedState ===

impl SavedState {
    /// Parses `iptables-save` output (comments, `*table`, `:chain` declarations, `-A` rules,
    /// `COMMIT`).
    pub fn parse(text: &str) -> Result<Self, SaveParseError> {
        let mut state = SavedState::default();
        let mut current: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let err = |reason| SaveParseError {
                line: index + 1,
                reason,
                text: raw.to_owned(),
            };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('*') {
                let name = name.trim().to_owned();
                state.tables.entry(name.clone()).or_default();
                current = Some(name);
                continue;
            }
            if line == "COMMIT" {
                current = None;
                continue;
            }
            let table_name = current
                .as_ref()
                .ok_or_else(|| err("line outside a table"))?;
            let table = state.tables.entry(table_name.clone()).or_default();
            if let Some(decl) = line.strip_prefix(':') {
                let name = decl
                    .split_whitespace()
                    .next()
                    .ok_or_else(|| err("chain declaration without a name"))?;
                table.chains.push(name.to_owned());
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let rest = rest.trim_start();
                let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
                if chain.is_empty() {
                    return Err(err("rule without a chain"));
                }
                table.rules.push((chain.to_owned(), spec.trim().to_owned()));
            } else {
                return Err(err("unexpected line"));
            }
        }
        Ok(state)
    }

    /// The named table, if present.
    pub fn table(&self, table: Table) -> Option<&SavedTable> {
        self.tables.get(table.name())
    }

    /// Every chain of ours (`ISTIO_*`), as `(table, chain)`.
    pub fn own_chains(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, table) in &self.tables {
            for chain in table.chains.iter().filter(|c| is_own_chain(c)) {
                out.push((name.clone(), chain.clone()));
            }
        }
        out
    }

    /// Whether no chain of ours and no jump into one is left.
    pub fn is_clean(&self) -> bool {
        self.tables.values().all(|t| {
            !t.chains.iter().any(|c| is_own_chain(c))
                && !t.rules.iter().any(|(_, spec)| jumps_to_own(spec))
        })
    }
}

// === impl SavedTable ===

impl SavedTable {
    /// The rules of `chain`, as specs.
    pub fn rules_of<'a>(&'a self, chain: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.rules
            .iter()
            .filter(move |(c, _)| c == chain)
            .map(|(_, s)| s.as_str())
    }

    fn own_chains(&self) -> impl Iterator<Item = &String> {
        self.chains.iter().filter(|c| is_own_chain(c))
    }

    /// Rules in built-in chains that jump into one of our chains.
    fn builtin_jumps(&self) -> impl Iterator<Item = &(String, String)> {
        self.rules
            .iter()
            .filter(|(c, spec)| is_builtin_chain(c) && jumps_to_own(spec))
    }
}

/// Whether a rule spec's `-j` target is one of our chains.
fn jumps_to_own(spec: &str) -> bool {
    let mut words = spec.split_whitespace();
    while let Some(w) = words.next() {
        if w == "-j" || w == "--jump" {
            return words.next().is_some_and(is_own_chain);
        }
    }
    false
}

// === planning ===

/// Decides how to reach `wanted` from `live`. `present` answers whether a wanted rule exists in
/// the kernel (`iptables -C`); it is only asked when our chains are already there.
pub fn plan_apply(
    wanted: &RuleSet,
    live: &SavedState,
    present: &dyn Fn(&Rule) -> bool,
) -> ApplyPlan {
    let residue = has_residue(wanted, live, present);
    if residue && in_sync(wanted, live, present) {
        return ApplyPlan::InSync;
    }
    ApplyPlan::Apply {
        transaction: transaction(Some(wanted), wanted, live, present),
        residue,
    }
}

/// The transaction that removes every chain of ours, every jump into them and the other
/// built-in-chain rules `wanted` would add, or `None` if nothing of that is there.
pub fn plan_cleanup(
    wanted: &RuleSet,
    live: &SavedState,
    present: &dyn Fn(&Rule) -> bool,
) -> Option<String> {
    if !has_residue(wanted, live, present) {
        return None;
    }
    Some(transaction(None, wanted, live, present))
}

/// Something of ours is live: a chain, a jump into one, or a built-in-chain rule we add.
fn has_residue(wanted: &RuleSet, live: &SavedState, present: &dyn Fn(&Rule) -> bool) -> bool {
    !live.is_clean() || other_builtin_rules(wanted).any(|r| live_copies(r, live, present) > 0)
}

/// Wanted rules in built-in chains that do not jump into our chains (the `-i IF -j RETURN` rules
/// of `-c` and `-k`): they cannot be recognised by their target, so they are matched by text.
fn other_builtin_rules(wanted: &RuleSet) -> impl Iterator<Item = &Rule> {
    wanted
        .rules
        .iter()
        .filter(|r| is_builtin_chain(&r.chain) && !r.jumps_to_own_chain())
}

/// How many copies of `rule` are live: by canonical text when it matches, else by the kernel's
/// answer (at least one).
fn live_copies(rule: &Rule, live: &SavedState, present: &dyn Fn(&Rule) -> bool) -> usize {
    let spec = rule.spec_text();
    let by_text = live.table(rule.table).map_or(0, |t| {
        t.rules_of(&rule.chain).filter(|s| *s == spec).count()
    });
    if by_text > 0 {
        by_text
    } else {
        usize::from(present(rule))
    }
}

fn in_sync(wanted: &RuleSet, live: &SavedState, present: &dyn Fn(&Rule) -> bool) -> bool {
    for table in Table::ALL {
        let wanted_chains = wanted.chains(table);
        let live_table = live.table(table);
        let empty = SavedTable::default();
        let lt = live_table.unwrap_or(&empty);
        // No stray chains of ours, and each of ours holds exactly the wanted number of rules.
        for chain in lt.own_chains() {
            if !wanted_chains.contains(chain) {
                return false;
            }
        }
        for chain in &wanted_chains {
            if !lt.chains.contains(chain)
                || lt.rules_of(chain).count() != wanted.rule_count(table, chain)
            {
                return false;
            }
        }
        // Jumps into our chains from built-in chains: exactly as many as wanted (no duplicates).
        let wanted_jumps = wanted
            .rules_in(table)
            .filter(|r| is_builtin_chain(&r.chain) && r.jumps_to_own_chain())
            .count();
        if lt.builtin_jumps().count() != wanted_jumps {
            return false;
        }
    }
    for rule in other_builtin_rules(wanted) {
        if live_copies(rule, live, present) != 1 {
            return false;
        }
    }
    wanted.rules.iter().all(present)
}

/// One block per table that has wanted rules or live residue. With `target = None` only the
/// removal half is written (clean-up).
fn transaction(
    target: Option<&RuleSet>,
    wanted: &RuleSet,
    live: &SavedState,
    present: &dyn Fn(&Rule) -> bool,
) -> String {
    let mut out = String::new();
    for table in Table::ALL {
        let empty = SavedTable::default();
        let lt = live.table(table).unwrap_or(&empty);
        let keep: Vec<String> = target.map(|t| t.chains(table)).unwrap_or_default();
        let stale: Vec<&String> = lt.own_chains().filter(|c| !keep.contains(c)).collect();
        let mut deletes: Vec<String> = lt
            .builtin_jumps()
            .map(|(chain, spec)| format!("-D {chain} {spec}"))
            .collect();
        let mut seen: Vec<String> = Vec::new();
        for rule in other_builtin_rules(wanted).filter(|r| r.table == table) {
            let line = rule.delete_line();
            if seen.contains(&line) {
                continue;
            }
            for _ in 0..live_copies(rule, live, present) {
                deletes.push(line.clone());
            }
            seen.push(line);
        }
        let adds: Vec<String> = target
            .map(|t| t.rules_in(table).map(ToString::to_string).collect())
            .unwrap_or_default();
        if keep.is_empty() && stale.is_empty() && deletes.is_empty() && adds.is_empty() {
            continue;
        }
        out.push_str(&format!("*{table}\n"));
        // Declaring a chain creates it, or flushes it when it exists; declaring the stale ones
        // empties them so that `-X` below can remove them.
        for chain in keep.iter().chain(stale.iter().copied()) {
            out.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for line in deletes {
            out.push_str(&line);
            out.push('\n');
        }
        for chain in &stale {
            out.push_str(&format!("-X {chain}\n"));
        }
        for line in adds {
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// Picks the backend the namespace already uses, as `istio-iptables` does: the one whose save
/// output holds more rules; nf_tables when neither has any (Debian's default). Pass `None` for a
/// backend whose save tool is missing or failed.
pub fn choose_backend(nft_save: Option<&str>, legacy_save: Option<&str>) -> Backend {
    let count =
        |text: Option<&str>| text.map_or(0, |t| t.lines().filter(|l| l.starts_with("-A ")).count());
    if count(legacy_save) > count(nft_save) {
        Backend::Legacy
    } else {
        Backend::Nft
    }
}
