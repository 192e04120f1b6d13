//! The crate's layering, checked on its sources: the binary (`cli`, `startup`, `workers`,
//! `demo`) over `http` (the edge) over `app` (the use cases) over `engine` (the machinery, with
//! `config` and `telemetry`). An arrow may point down or stay inside its layer, never up; and
//! nothing below the edge names an actix or HTTP type.
//!
//! `cargo test -p api module_graph -- --nocapture` prints the module graph in DOT
//! (`… | sed -n '/^digraph/,/^}/p' | dot -Tsvg > graph.svg` draws it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer of a top-level module, lowest first.
fn layer(top: &str) -> Option<usize> {
    match top {
        "engine" | "config" | "telemetry" => Some(0),
        "app" => Some(1),
        "http" => Some(2),
        "cli" | "startup" | "workers" | "demo" | "main" => Some(3),
        _ => None,
    }
}

const LAYERS: [&str; 4] = ["engine", "app", "http", "binary"];

/// Every source file of the crate with its module path (`app::write::batch`).
fn sources() -> Vec<(String, PathBuf)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            // Test files (`*_tests.rs`, `tests.rs`) belong to the module they test.
            if parts
                .last()
                .is_some_and(|last| last.ends_with("_tests") || last == "tests")
            {
                return None;
            }
            if parts == ["lib"] {
                return None;
            }
            Some((parts.join("::"), path))
        })
        .collect()
}

/// The code of a file without comments and string literals, which may name anything.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            // A test module declared at the end of the file: the rest is tests.
            break;
        }
        let mut in_string = false;
        let mut previous = ' ';
        let mut kept = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if in_string {
                if c == '"' && previous != '\\' {
                    in_string = false;
                }
            } else if c == '/' && chars.peek() == Some(&'/') {
                break;
            } else if c == '"' {
                in_string = true;
            } else {
                kept.push(c);
            }
            previous = if previous == '\\' && c == '\\' {
                ' '
            } else {
                c
            };
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// The modules of the crate that `code` refers to: `crate::a::b` paths, including those
/// inside `use crate::{a::b, c}` groups, as far as a known module goes.
fn references(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        for path in expand(rest) {
            let parts: Vec<&str> = path.split("::").collect();
            let longest = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|p| modules.contains(p));
            if let Some(module) = longest {
                found.insert(module);
            }
        }
    }
    found
}

/// The paths a `use` tree starting at `text` names: `a::{b, c::d}` → `a::b`, `a::c::d`.
fn expand(text: &str) -> Vec<String> {
    let mut prefix = String::new();
    for (i, c) in text.char_indices() {
        match c {
            c if c.is_alphanumeric() || c == '_' || c == ':' => prefix.push(c),
            '{' => {
                let mut depth = 1;
                let mut end = i + 1;
                for (j, c) in text[i + 1..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        end = i + 1 + j;
                        break;
                    }
                }
                let inner = &text[i + 1..end];
                let mut out = Vec::new();
                let mut depth = 0;
                let mut start = 0;
                for (j, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            out.extend(expand(inner[start..j].trim()));
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
                out.extend(expand(inner[start..].trim()));
                return out.into_iter().map(|p| format!("{prefix}{p}")).collect();
            }
            _ => break,
        }
    }
    vec![prefix.trim_end_matches(':').to_owned()]
}

/// Every module's references to the crate's other modules.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources();
    let mut modules: BTreeSet<String> = BTreeSet::new();
    for (module, _) in &files {
        let parts: Vec<&str> = module.split("::").collect();
        for n in 1..=parts.len() {
            modules.insert(parts[..n].join("::"));
        }
    }
    files
        .iter()
        .map(|(module, path)| {
            let code = code_of(&std::fs::read_to_string(path).unwrap());
            let mut refs = references(&code, &modules);
            refs.retain(|r| r != module && !module.starts_with(&format!("{r}::")));
            (module.clone(), refs)
        })
        .collect()
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn arrows_point_down_the_layers() {
    let mut upward = Vec::new();
    for (from, refs) in graph() {
        let Some(from_layer) = layer(top(&from)) else {
            upward.push(format!("{from}: not in any layer (add it to `layer`)"));
            continue;
        };
        for to in refs {
            match layer(top(&to)) {
                Some(to_layer) if to_layer <= from_layer => {}
                Some(to_layer) => upward.push(format!(
                    "{from} ({}) → {to} ({})",
                    LAYERS[from_layer], LAYERS[to_layer]
                )),
                None => upward.push(format!("{to}: not in any layer (add it to `layer`)")),
            }
        }
    }
    assert!(
        upward.is_empty(),
        "arrows pointing up:\n{}",
        upward.join("\n")
    );
}

#[test]
fn nothing_below_the_edge_names_an_http_type() {
    let mut named = Vec::new();
    for (module, path) in sources() {
        if !matches!(layer(top(&module)), Some(0 | 1)) {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&path).unwrap());
        for word in ["actix", "HttpResponse", "HttpRequest", "StatusCode"] {
            if code.contains(word) {
                named.push(format!("{module} names `{word}`"));
            }
        }
    }
    assert!(named.is_empty(), "{}", named.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_nested_imports() {
    let modules: BTreeSet<String> = ["app", "app::write", "http", "http::answer", "engine"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let code = code_of(
        "use crate::{app::write::{Effect, batch::X}, http::answer};\n// crate::engine\nlet s = \"crate::engine\";",
    );
    assert_eq!(
        references(&code, &modules),
        ["app::write", "http::answer"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );
}

/// Prints the graph of modules in DOT, grouped by layer.
#[test]
fn module_graph() {
    let graph = graph();
    let mut dot = String::from("digraph api {\n  rankdir=BT;\n  node [shape=box];\n");
    for (i, name) in LAYERS.iter().enumerate() {
        dot.push_str(&format!("  subgraph cluster_{name} {{ label=\"{name}\";\n"));
        for module in graph.keys().filter(|m| layer(top(m)) == Some(i)) {
            dot.push_str(&format!("    \"{module}\";\n"));
        }
        dot.push_str("  }\n");
    }
    for (from, refs) in &graph {
        for to in refs {
            dot.push_str(&format!("  \"{from}\" -> \"{to}\";\n"));
        }
    }
    dot.push_str("}\n");
    println!("{dot}");
}

/// The edge parses and answers; what it answers comes from a use case. No handler reaches the
/// database (no `persistence::`), opens a transaction or runs the write pipeline itself.
#[test]
fn handlers_call_use_cases_not_the_database() {
    let mut reaching = Vec::new();
    for (module, path) in sources() {
        if top(&module) != "http" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(&path).unwrap());
        for word in ["persistence::", "execute(", ".begin()", "Db::commit"] {
            if code.contains(word) {
                reaching.push(format!("{module} names `{word}`"));
            }
        }
    }
    assert!(reaching.is_empty(), "{}", reaching.join("\n"));
}

/// Files that hold one idea stay short; the few longer ones say why.
#[test]
fn files_stay_short() {
    const LONGER: &[(&str, &str)] = &[(
        "http/openapi.rs",
        "the OpenAPI document's declarations: one list of paths, schemas and shared answers",
    )];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut long = Vec::new();
    for (_, path) in sources() {
        let name = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        if lines > 600 && !LONGER.iter().any(|(file, _)| *file == name) {
            long.push(format!("{name}: {lines} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "files over 600 lines:\n{}",
        long.join("\n")
    );
}
