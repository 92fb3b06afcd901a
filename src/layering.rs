//! Tests of the crate's layering: no top-level module imports one that
//! imports it back, directly or around a longer circle, and only `publish`
//! spells the partition folder. Read from the source text (`crate::x` paths
//! outside comments and test modules), so they need no tool beyond `cargo test`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module of a file below `src/`: `cli/job.rs` -> `cli`.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    match name {
        // The crate roots, and this file, whose test data names modules.
        "lib" | "main" | "layering" => None,
        other => Some(other.to_string()),
    }
}

/// The top-level modules a file's code names as `crate::x`.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        // Test modules sit at the end of a file and may use anything.
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                out.insert(name);
            }
        }
    }
    out
}

fn collect(dir: &Path, root: &Path, graph: &mut BTreeMap<String, BTreeSet<String>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, root, graph);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let (Some(module), Ok(text)) = (module_of(rel), std::fs::read_to_string(&path)) else {
                continue;
            };
            let edges = graph.entry(module.clone()).or_default();
            edges.extend(imports(&text).into_iter().filter(|m| *m != module));
        }
    }
}

/// A circle through `start`, if the graph has one.
fn circle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let last = path.last().cloned().unwrap_or_default();
        for next in graph.get(&last).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    walk(graph, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    collect(&root, &root, &mut graph);
    assert!(graph.contains_key("runner") && graph["runner"].contains("publish"));
    for module in graph.keys() {
        if let Some(circle) = circle_from(&graph, module) {
            panic!("import circle: {} -> {module}", circle.join(" -> "));
        }
    }
}

/// `publish::OutputLayout` is the one home of the paths under OUTPUT.
#[test]
fn only_publish_formats_partition_folders() {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                let marker = ["as_of", "="].concat();
                if text.contains(&marker) && name != "publish.rs" {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    assert!(
        found.is_empty(),
        "partition folders spelled outside publish.rs: {found:?}"
    );
}

#[test]
fn the_check_sees_a_circle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("a".into());
    assert_eq!(circle_from(&graph, "a"), Some(vec!["a".into(), "b".into()]));
    let code = "use crate::engine::x; // crate::cluster\n#[cfg(test)]\nuse crate::udf;";
    assert_eq!(imports(code), BTreeSet::from(["engine".to_string()]));
}

/// Functions of `text` (before its test module) longer than `limit` lines:
/// (first line, length). A function runs from its `fn` line to the closing
/// brace at the same indentation.
fn long_functions(text: &str, limit: usize) -> Vec<(usize, usize)> {
    let lines: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let is_fn = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) fn ",
        ]
        .iter()
        .chain(&[
            "pub(crate) async fn ",
            "pub(super) fn ",
            "pub(super) async fn ",
        ])
        .any(|p| body.starts_with(p));
        // A declaration without a body (trait items) ends with `;`.
        if !is_fn || body.ends_with(';') {
            continue;
        }
        let close = format!("{indent}}}");
        if let Some(end) = lines[i + 1..].iter().position(|l| *l == close) {
            if end + 2 > limit {
                out.push((i + 1, end + 2));
            }
        }
    }
    out
}

/// House rule: no function over 100 lines outside tests.
#[test]
fn no_function_is_over_100_lines() {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for (line, len) in long_functions(&text, 100) {
                    found.push(format!("{}:{line} ({len} lines)", path.display()));
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    assert!(found.is_empty(), "functions over 100 lines: {found:?}");
}

#[test]
fn the_length_check_sees_a_long_function() {
    let long = format!("fn f() {{\n{}}}\n", "    x();\n".repeat(99));
    assert_eq!(long_functions(&long, 100), vec![(1, 101)]);
    let short = format!(
        "    pub async fn g() {{\n{}    }}\n",
        "        y();\n".repeat(98)
    );
    assert!(long_functions(&short, 100).is_empty());
}
