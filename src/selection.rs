//! Which steps a run computes and which tables it publishes: the job's step
//! graph (each step or gate depends on the earlier steps its SQL names in
//! FROM or JOIN, found with DataFusion's own table-reference resolver, CTE
//! names left out) and dbt-style `--select`/`--exclude` over it.
//!
//! The rule: a run computes the selected steps, every step they read
//! (directly or through others), and every gate of the job with the steps
//! that gate reads; it publishes only the outputs of the selected steps. A
//! selection never skips a gate, and an upstream step computed only because
//! a selected one needs it is not published.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::sql::parser::DFParser;
use datafusion::sql::resolve::resolve_table_references;

use crate::error::{Error, Result};
use crate::job::Job;

/// The steps each step and gate of a job reads, from their SQL text.
#[derive(Debug, Clone)]
pub struct StepGraph {
    /// Step names in the job's order.
    order: Vec<String>,
    /// Step name -> the steps its SQL reads.
    reads: BTreeMap<String, BTreeSet<String>>,
    /// Gate name -> the steps it reads, its `after` step included.
    gates: BTreeMap<String, BTreeSet<String>>,
}

/// What a run computes and publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The steps computed, in the job's order.
    pub steps: Vec<String>,
    /// The steps the user selected (after `--exclude`); their outputs are published.
    pub selected: BTreeSet<String>,
    /// The published tables, in the job's order of `[[outputs]]`.
    pub tables: Vec<String>,
    /// True when every step runs and every table is published (no
    /// `--select` or `--exclude`, or ones that keep everything).
    pub whole: bool,
}

impl Selection {
    /// Whether step `name` is computed.
    pub fn runs(&self, name: &str) -> bool {
        self.steps.iter().any(|s| s == name)
    }

    /// Whether table `name` is published.
    pub fn publishes(&self, table: &str) -> bool {
        self.tables.iter().any(|t| t == table)
    }
}

/// The steps of `known` (the earlier ones) that `sql` reads in FROM or JOIN.
///
/// Errors: [`Error::JobFile`] (exit 2) naming `who` when the SQL does not
/// parse.
fn reads_of(job: &Job, sql: &str, who: &str, known: &[String]) -> Result<BTreeSet<String>> {
    let statements = DFParser::parse_sql(sql)
        .map_err(|e| Error::job(&job.path, format!("{who} does not parse: {e}")))?;
    let mut out = BTreeSet::new();
    for statement in &statements {
        let (tables, _ctes) = resolve_table_references(statement, true)
            .map_err(|e| Error::job(&job.path, format!("{who}: {e}")))?;
        for t in tables {
            let name = t.table();
            if known.iter().any(|k| k == name) {
                out.insert(name.to_string());
            }
        }
    }
    Ok(out)
}

impl StepGraph {
    /// The graph of `job`: each step reads the earlier steps its SQL names;
    /// each gate reads the steps its SQL names and its `after` step.
    ///
    /// Errors: [`Error::JobFile`] (exit 2) when a step's or gate's SQL does
    /// not parse.
    pub fn of(job: &Job) -> Result<StepGraph> {
        let mut order: Vec<String> = Vec::new();
        let mut reads = BTreeMap::new();
        for step in &job.spec.steps {
            let text = job.sql.get(&step.sql).map(String::as_str).unwrap_or("");
            let who = format!("step {} ({})", step.name, step.sql);
            reads.insert(step.name.clone(), reads_of(job, text, &who, &order)?);
            order.push(step.name.clone());
        }
        let mut gates = BTreeMap::new();
        for gate in &job.spec.gates {
            let text = job.sql.get(&gate.sql).map(String::as_str).unwrap_or("");
            let who = format!("gate {} ({})", gate.name, gate.sql);
            let mut r = reads_of(job, text, &who, &order)?;
            r.extend(gate.after.iter().cloned());
            gates.insert(gate.name.clone(), r);
        }
        Ok(StepGraph {
            order,
            reads,
            gates,
        })
    }

    /// The steps `name` reads, directly.
    pub fn reads(&self, name: &str) -> impl Iterator<Item = &String> {
        self.reads.get(name).into_iter().flatten()
    }

    /// `names` and every step they read, directly or not.
    fn upstream(&self, names: &BTreeSet<String>) -> BTreeSet<String> {
        let mut out = names.clone();
        let mut todo: Vec<String> = names.iter().cloned().collect();
        while let Some(n) = todo.pop() {
            for r in self.reads(&n) {
                if out.insert(r.clone()) {
                    todo.push(r.clone());
                }
            }
        }
        out
    }

    /// `names` and every step that reads them, directly or not.
    fn downstream(&self, names: &BTreeSet<String>) -> BTreeSet<String> {
        let mut out = names.clone();
        // The job's order is a topological order: one pass suffices.
        for step in &self.order {
            if self.reads(step).any(|r| out.contains(r)) {
                out.insert(step.clone());
            }
        }
        out
    }

    /// The steps one selector names: `STEP`, `STEP+` (and what depends on
    /// it), `+STEP` (and what it depends on), `+STEP+`.
    fn resolve(&self, flag: &str, selector: &str) -> Result<BTreeSet<String>> {
        let up = selector.starts_with('+');
        let down = selector.ends_with('+') && selector.len() > 1;
        let name = selector.trim_start_matches('+').trim_end_matches('+');
        if !self.order.iter().any(|s| s == name) {
            return Err(Error::UnknownStep {
                flag: flag.to_string(),
                step: selector.to_string(),
                steps: self.order.join(", "),
            });
        }
        let one = BTreeSet::from([name.to_string()]);
        let mut out = one.clone();
        if up {
            out.extend(self.upstream(&one));
        }
        if down {
            out.extend(self.downstream(&one));
        }
        Ok(out)
    }

    /// The steps a list of selectors names; several in one value may be
    /// separated by spaces or commas, as dbt's `--select "a+ b"`.
    fn resolve_all(&self, flag: &str, selectors: &[String]) -> Result<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for raw in selectors {
            for s in raw.split([' ', ',']).filter(|s| !s.is_empty()) {
                out.extend(self.resolve(flag, s)?);
            }
        }
        Ok(out)
    }

    /// What a run with `--select` `select` (every step when empty) and
    /// `--exclude` `exclude` computes and publishes.
    ///
    /// Errors: [`Error::UnknownStep`] (exit 2) for a name that is not a
    /// step of the job, listing the steps; [`Error::Argument`] (exit 2)
    /// when the selection publishes no table.
    pub fn select(&self, job: &Job, select: &[String], exclude: &[String]) -> Result<Selection> {
        let mut selected = match select.is_empty() {
            true => self.order.iter().cloned().collect(),
            false => self.resolve_all("--select", select)?,
        };
        for s in self.resolve_all("--exclude", exclude)? {
            selected.remove(&s);
        }
        let mut needed = selected.clone();
        for gate_reads in self.gates.values() {
            needed.extend(gate_reads.iter().cloned());
        }
        let needed = self.upstream(&needed);
        let steps: Vec<String> = self
            .order
            .iter()
            .filter(|s| needed.contains(*s))
            .cloned()
            .collect();
        let tables: Vec<String> = job
            .spec
            .outputs
            .iter()
            .filter(|o| selected.contains(&o.from))
            .map(|o| o.table.clone())
            .collect();
        if tables.is_empty() && !job.spec.outputs.is_empty() {
            let outputs: Vec<String> = job
                .spec
                .outputs
                .iter()
                .map(|o| format!("{} (step {})", o.table, o.from))
                .collect();
            return Err(Error::Argument(format!(
                "the selection publishes no table: select a step that one of the job's outputs reads, or one upstream with STEP+ (outputs: {})",
                outputs.join(", ")
            )));
        }
        let whole = steps.len() == self.order.len() && tables.len() == job.spec.outputs.len();
        Ok(Selection {
            steps,
            selected,
            tables,
            whole,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// a -> b -> c, a -> d; gate g reads b after b; outputs from c and d.
    fn job() -> Job {
        let text = r#"
name = "t"
[[steps]]
name = "a"
sql = "a.sql"
[[steps]]
name = "b"
sql = "b.sql"
[[steps]]
name = "c"
sql = "c.sql"
[[steps]]
name = "d"
sql = "d.sql"
[[gates]]
name = "g"
sql = "g.sql"
after = "b"
[[outputs]]
table = "tc"
from = "c"
[[outputs]]
table = "td"
from = "d"
"#;
        Job::parse(Path::new("t.toml"), text, |f| {
            Ok(match f {
                "a.sql" => "SELECT 1 AS x FROM input_table",
                "b.sql" => "WITH x AS (SELECT * FROM a) SELECT x.x FROM x",
                "c.sql" => "SELECT * FROM b WHERE x IN (SELECT x FROM b)",
                // A CTE named like a step is not a read of that step.
                "d.sql" => "WITH b AS (SELECT 1 AS x) SELECT a.x FROM a JOIN b ON a.x = b.x",
                _ => "SELECT 'bad' AS message FROM b WHERE false",
            }
            .to_string())
        })
        .unwrap()
    }

    fn sel(select: &[&str], exclude: &[&str]) -> Result<Selection> {
        let j = job();
        let s: Vec<String> = select.iter().map(|s| s.to_string()).collect();
        let e: Vec<String> = exclude.iter().map(|s| s.to_string()).collect();
        StepGraph::of(&j)?.select(&j, &s, &e)
    }

    #[test]
    fn reads_come_from_from_and_join_not_from_ctes() {
        let j = job();
        let g = StepGraph::of(&j).unwrap();
        let reads = |s: &str| g.reads(s).cloned().collect::<Vec<_>>();
        assert_eq!(reads("a"), Vec::<String>::new());
        assert_eq!(reads("b"), vec!["a"]);
        assert_eq!(reads("c"), vec!["b"]);
        assert_eq!(reads("d"), vec!["a"]);
    }

    #[test]
    fn no_selection_runs_and_publishes_everything() {
        let s = sel(&[], &[]).unwrap();
        assert_eq!(s.steps, ["a", "b", "c", "d"]);
        assert_eq!(s.tables, ["tc", "td"]);
        assert!(s.whole);
    }

    #[test]
    fn a_selected_step_runs_with_its_upstream_and_the_gates_but_publishes_alone() {
        // d reads a; the gate g reads b (after b), so b runs too.
        let s = sel(&["d"], &[]).unwrap();
        assert_eq!(s.steps, ["a", "b", "d"]);
        assert_eq!(s.tables, ["td"]);
        assert!(!s.whole);
    }

    #[test]
    fn plus_after_selects_what_depends_on_the_step() {
        let s = sel(&["b+"], &[]).unwrap();
        assert_eq!(s.selected, BTreeSet::from(["b".into(), "c".into()]));
        assert_eq!(s.steps, ["a", "b", "c"]);
        assert_eq!(s.tables, ["tc"]);
        let all = sel(&["a+"], &[]).unwrap();
        assert_eq!(all.tables, ["tc", "td"]);
        // Spaces or commas separate selectors, as in dbt.
        assert_eq!(sel(&["c, d"], &[]).unwrap().tables, ["tc", "td"]);
    }

    #[test]
    fn plus_before_selects_the_upstream_steps() {
        let s = sel(&["+c"], &[]).unwrap();
        assert_eq!(
            s.selected,
            BTreeSet::from(["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(s.tables, ["tc"]);
    }

    #[test]
    fn exclude_removes_steps_from_what_is_published() {
        let s = sel(&[], &["d"]).unwrap();
        assert_eq!(s.steps, ["a", "b", "c"]);
        assert_eq!(s.tables, ["tc"]);
        // An excluded step that a selected one needs still runs, unpublished.
        let s = sel(&["a+"], &["b"]).unwrap();
        assert_eq!(s.steps, ["a", "b", "c", "d"]);
        assert_eq!(s.tables, ["tc", "td"]);
        let s = sel(&["a+"], &["c"]).unwrap();
        assert_eq!(s.tables, ["td"]);
    }

    #[test]
    fn an_unknown_step_exits_2_listing_the_steps() {
        let e = sel(&["nope+"], &[]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let msg = e.to_string();
        assert!(msg.contains("--select") && msg.contains("nope+"), "{msg}");
        assert!(msg.contains("a, b, c, d"), "{msg}");
        let e = sel(&[], &["zz"]).unwrap_err();
        assert!(e.to_string().contains("--exclude"), "{e}");
    }

    #[test]
    fn a_selection_that_publishes_nothing_exits_2() {
        let e = sel(&["a"], &[]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("tc (step c)"), "{e}");
    }
}
