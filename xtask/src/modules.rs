//! `cargo xtask modules`: the import graph between each crate's top-level modules, failing on a
//! cycle. Modules that import each other in a loop cannot be read, tested or moved one at a
//! time; this keeps the data's path (ingest → store → profile → forecast → plan → publish) a
//! path. Test code is left out: a test may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The crates checked, by source directory.
const CRATES: &[&str] = &["shared/src", "trainer/src", "edge/src"];

/// Module → the modules it imports (`crate::name`), for one crate.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// Checks every crate; an error names each cycle.
pub fn check(root: &Path) -> Result<()> {
    let mut cycles = Vec::new();
    for dir in CRATES {
        let graph = graph_of(&root.join(dir))?;
        let edges: usize = graph.values().map(BTreeSet::len).sum();
        let found = cycles_in(&graph);
        println!("{dir}: {} top-level modules, {edges} imports between them, {} cycles", graph.len(), found.len());
        cycles.extend(found.into_iter().map(|c| format!("{dir}: {}", c.join(" → "))));
    }
    if !cycles.is_empty() {
        bail!("modules import each other in a loop:\n  {}", cycles.join("\n  "));
    }
    Ok(())
}

/// The graph of one crate's `src` directory: each top-level module (a file or a directory
/// beside `lib.rs` / `main.rs`) and the other top-level modules its non-test code names.
pub fn graph_of(src: &Path) -> Result<Graph> {
    let mut graph = Graph::new();
    let entries = std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))?;
    let mut modules = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        let is_rust = path.extension().is_some_and(|e| e == "rs");
        if (is_rust || path.is_dir()) && !matches!(name.as_str(), "lib" | "main" | "bin") {
            modules.push((name, path));
        }
    }
    let names: BTreeSet<String> = modules.iter().map(|(n, _)| n.clone()).collect();
    for (name, path) in &modules {
        let imports = graph.entry(name.clone()).or_default();
        for file in rust_files(path)? {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            for used in crate_paths(&non_test(&text)) {
                if used != *name && names.contains(&used) {
                    imports.insert(used);
                }
            }
        }
    }
    Ok(graph)
}

/// A module's files: itself, or everything under its directory, test files left out.
fn rust_files(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        let test_file = p.file_stem().is_some_and(|s| s == "tests");
        if p.is_dir() && !test_file {
            out.extend(rust_files(&p)?);
        } else if p.extension().is_some_and(|e| e == "rs") && !test_file {
            out.push(p);
        }
    }
    // The sibling file of a directory module (`foo.rs` beside `foo/`) is the module itself.
    if let Some(sibling) =
        path.parent().map(|d| d.join(format!("{}.rs", path.file_name().unwrap_or_default().to_string_lossy())))
        && sibling.is_file()
    {
        out.push(sibling);
    }
    Ok(out)
}

/// The code before a file's `#[cfg(test)]` test module (this workspace keeps it last), without
/// comments: a doc link names a module without importing it.
pub fn non_test(text: &str) -> String {
    let code = text.find("#[cfg(test)]\nmod tests").map_or(text, |at| &text[..at]);
    code.lines().map(|line| line.split_once("//").map_or(line, |(code, _)| code)).collect::<Vec<_>>().join("\n")
}

/// The top-level module of every `crate::name` path in `text`, including grouped imports
/// (`use crate::{a, b::c}`).
pub fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        // `xcrate::` or `some_crate::` is not this crate.
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names in the group: those at brace depth 0, each after `{` or `,`.
            let mut depth = 0usize;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 0 => {
                        out.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.retain(|n| !n.is_empty());
    out
}

/// Every strongly connected set of two or more modules, each as a path back to its start.
pub fn cycles_in(graph: &Graph) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for start in graph.keys() {
        if seen.contains(start) {
            continue;
        }
        // The modules reachable from `start` that reach back to it: its strongly connected set.
        let forward = reachable(graph, start);
        let component: Vec<&String> =
            forward.iter().filter(|m| *m != start && reachable(graph, m).contains(start)).collect();
        if component.is_empty() {
            continue;
        }
        seen.insert(start.clone());
        seen.extend(component.iter().map(|m| (*m).clone()));
        let mut cycle = vec![start.clone()];
        cycle.extend(component.into_iter().cloned());
        cycle.push(start.clone());
        out.push(cycle);
    }
    out
}

fn reachable(graph: &Graph, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(m) = stack.pop() {
        for next in graph.get(&m).into_iter().flatten() {
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> Graph {
        let mut g = Graph::new();
        for (a, b) in edges {
            g.entry((*a).to_owned()).or_default().insert((*b).to_owned());
            g.entry((*b).to_owned()).or_default();
        }
        g
    }

    #[test]
    fn a_loop_is_found_and_a_path_is_not() {
        assert!(cycles_in(&graph(&[("ingest", "store"), ("store", "profile"), ("ingest", "profile")])).is_empty());
        let cycles = cycles_in(&graph(&[("actuate", "web"), ("web", "train"), ("train", "actuate"), ("x", "web")]));
        assert_eq!(cycles, vec![vec!["actuate", "train", "web", "actuate"]]);
    }

    #[test]
    fn crate_paths_are_read_from_uses_groups_and_inline_paths() {
        let text = "use crate::store::{Store, StoreError};\nuse crate::{config::X, plan::{a, b}, web};\n\
                    fn f() { crate::publish::go(); prewarm_crate::no(); }";
        let found: Vec<String> = crate_paths(text).into_iter().collect();
        assert_eq!(found, ["config", "plan", "publish", "store", "web"]);
    }

    #[test]
    fn test_modules_do_not_count() {
        assert_eq!(non_test("use crate::a;\n#[cfg(test)]\nmod tests {\n use crate::b;\n}"), "use crate::a;");
        assert_eq!(non_test("/// see [`crate::b`]\nuse crate::a; // not crate::c"), "\nuse crate::a; ");
    }

    #[test]
    fn this_workspace_has_no_loop() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
        check(root).expect("no module cycle");
    }
}
