//! iptables rules as data: a [`RuleSet`] per address family holds [`Rule`]s (table, chain,
//! append or insert, match/target words), and renders itself as `iptables-restore` input in the
//! shape `istio-iptables` writes (`* <table>`, `-N` lines, rules, `COMMIT`).

use std::fmt;

/// Prefix of every chain this crate creates; chains with it are ours to flush and delete.
pub const CHAIN_PREFIX: &str = "ISTIO_";

/// Chain names, as Istio spells them.
pub mod chain {
    /// Inbound capture decisions (nat), DNS conntrack for answers (raw).
    pub const ISTIO_INBOUND: &str = "ISTIO_INBOUND";
    /// `REDIRECT` to the outbound capture port.
    pub const ISTIO_REDIRECT: &str = "ISTIO_REDIRECT";
    /// `REDIRECT` to the inbound capture port.
    pub const ISTIO_IN_REDIRECT: &str = "ISTIO_IN_REDIRECT";
    /// Outbound capture decisions.
    pub const ISTIO_OUTPUT: &str = "ISTIO_OUTPUT";
    /// DNS capture (nat) and DNS conntrack zones (raw).
    pub const ISTIO_OUTPUT_DNS: &str = "ISTIO_OUTPUT_DNS";
    /// Drops conntrack-INVALID packets (mangle).
    pub const ISTIO_DROP: &str = "ISTIO_DROP";
}

/// The kernel's built-in chains: never created or deleted, only appended to.
pub const BUILTIN_CHAINS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// Whether `name` is one of the kernel's built-in chains.
pub fn is_builtin_chain(name: &str) -> bool {
    BUILTIN_CHAINS.contains(&name)
}

/// Whether `name` is a chain this crate owns.
pub fn is_own_chain(name: &str) -> bool {
    name.starts_with(CHAIN_PREFIX)
}

/// Address family: which tool (`iptables` or `ip6tables`) the rules are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4, `iptables-restore`.
    V4,
    /// IPv6, `ip6tables-restore`.
    V6,
}

/// An iptables table. Ordered alphabetically, the order of blocks in the restore text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// `filter`.
    Filter,
    /// `mangle`.
    Mangle,
    /// `nat`.
    Nat,
    /// `raw`.
    Raw,
}

/// Where a rule goes in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// `-A`: at the end.
    Append,
    /// `-I <chain> <n>`: at 1-based position `n`.
    Insert(u32),
}

/// One rule: a table, a chain, a position and the match/target words after the chain name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Table.
    pub table: Table,
    /// Chain the rule lives in.
    pub chain: String,
    /// Append or insert.
    pub position: Position,
    /// Match and target words, e.g. `["-p", "tcp", "-j", "ISTIO_INBOUND"]`.
    pub spec: Vec<String>,
}

/// The rules for one address family, in the order they are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    /// Family.
    pub family: Family,
    /// Rules in application order.
    pub rules: Vec<Rule>,
}

// === impl Family ===

impl Family {
    /// The restore tool's name.
    pub fn restore_command(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    /// The save tool's name.
    pub fn save_command(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }

    /// The rule tool's name (used for `-C` checks).
    pub fn command(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

// === impl Table ===

impl Table {
    /// Every table, in restore-block order.
    pub const ALL: [Table; 4] = [Table::Filter, Table::Mangle, Table::Nat, Table::Raw];

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Mangle => "mangle",
            Table::Nat => "nat",
            Table::Raw => "raw",
        }
    }

    /// The table named `name`, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// === impl Rule ===

impl Rule {
    /// The jump target (the word after `-j`), if any.
    pub fn target(&self) -> Option<&str> {
        self.spec
            .iter()
            .position(|w| w == "-j")
            .and_then(|i| self.spec.get(i + 1))
            .map(String::as_str)
    }

    /// Whether this rule jumps into one of our chains.
    pub fn jumps_to_own_chain(&self) -> bool {
        self.target().is_some_and(is_own_chain)
    }

    /// The match/target words joined by spaces.
    pub fn spec_text(&self) -> String {
        self.spec.join(" ")
    }

    /// Arguments for `iptables` that test whether this rule exists (`-t T -C CHAIN SPEC`).
    pub fn check_args(&self) -> Vec<String> {
        let mut args = vec![
            "-t".to_owned(),
            self.table.name().to_owned(),
            "-C".to_owned(),
            self.chain.clone(),
        ];
        args.extend(self.spec.iter().cloned());
        args
    }

    /// The restore line that deletes this rule (`-D CHAIN SPEC`).
    pub fn delete_line(&self) -> String {
        format!("-D {} {}", self.chain, self.spec_text())
    }
}

impl fmt::Display for Rule {
    /// The restore line that adds this rule (`-A CHAIN SPEC` or `-I CHAIN N SPEC`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Position::Append => write!(f, "-A {} {}", self.chain, self.spec_text()),
            Position::Insert(n) => write!(f, "-I {} {} {}", self.chain, n, self.spec_text()),
        }
    }
}

// === impl RuleSet ===

impl RuleSet {
    /// An empty rule set.
    pub fn new(family: Family) -> Self {
        RuleSet {
            family,
            rules: Vec::new(),
        }
    }

    /// Appends a rule.
    pub fn append(&mut self, table: Table, chain: &str, spec: &[&str]) {
        self.push(table, chain, Position::Append, spec);
    }

    /// Inserts a rule at 1-based `position` (applied in order, so the last insert at 1 ends first).
    pub fn insert(&mut self, table: Table, chain: &str, position: u32, spec: &[&str]) {
        self.push(table, chain, Position::Insert(position), spec);
    }

    fn push(&mut self, table: Table, chain: &str, position: Position, spec: &[&str]) {
        self.rules.push(Rule {
            table,
            chain: chain.to_owned(),
            position,
            spec: spec.iter().map(|s| (*s).to_owned()).collect(),
        });
    }

    /// Tables with at least one rule, in restore-block order.
    pub fn tables(&self) -> Vec<Table> {
        Table::ALL
            .into_iter()
            .filter(|t| self.rules.iter().any(|r| r.table == *t))
            .collect()
    }

    /// The rules of `table`, in application order.
    pub fn rules_in(&self, table: Table) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.table == table)
    }

    /// Our chains in `table`, in creation order: first every chain that holds a rule, in order of
    /// first appearance, then chains that are only jumped to (as `istio-iptables` does).
    pub fn chains(&self, table: Table) -> Vec<String> {
        let mut chains: Vec<String> = Vec::new();
        for rule in self.rules_in(table) {
            if !is_builtin_chain(&rule.chain) && !chains.contains(&rule.chain) {
                chains.push(rule.chain.clone());
            }
        }
        for rule in self.rules_in(table) {
            if let Some(target) = rule.target().filter(|t| is_own_chain(t))
                && !chains.iter().any(|c| c == target)
            {
                chains.push(target.to_owned());
            }
        }
        chains
    }

    /// How many rules end up in `chain` of `table`.
    pub fn rule_count(&self, table: Table, chain: &str) -> usize {
        self.rules_in(table).filter(|r| r.chain == chain).count()
    }

    /// The `iptables-restore --noflush` input that creates this rule set in a namespace that has
    /// none of our chains yet (the text `istio-iptables` prints and feeds to the tool).
    pub fn restore_text(&self) -> String {
        let mut out = String::new();
        for table in self.tables() {
            out.push_str(&format!("* {table}\n"));
            for chain in self.chains(table) {
                out.push_str(&format!("-N {chain}\n"));
            }
            for rule in self.rules_in(table) {
                out.push_str(&format!("{rule}\n"));
            }
            out.push_str("COMMIT\n");
        }
        out
    }

    /// The rules grouped by chain, in the order `iptables -S` would list them: built-in chains
    /// first (PREROUTING, INPUT, OUTPUT, …), then ours in creation order; inserts at position 1
    /// land in front of what was there.
    pub fn final_chains(&self, table: Table) -> Vec<(String, Vec<String>)> {
        let mut result: Vec<(String, Vec<String>)> = Vec::new();
        let order: Vec<String> = BUILTIN_CHAINS
            .iter()
            .map(|c| (*c).to_owned())
            .chain(self.chains(table))
            .collect();
        for chain in order {
            let mut specs: Vec<String> = Vec::new();
            for rule in self.rules_in(table).filter(|r| r.chain == chain) {
                match rule.position {
                    Position::Append => specs.push(rule.spec_text()),
                    Position::Insert(n) => {
                        let at = usize::try_from(n.saturating_sub(1))
                            .unwrap_or(usize::MAX)
                            .min(specs.len());
                        specs.insert(at, rule.spec_text());
                    }
                }
            }
            if !specs.is_empty() || !is_builtin_chain(&chain) {
                result.push((chain, specs));
            }
        }
        result
    }
}
