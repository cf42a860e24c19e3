//! The source tree held to its documentation: every file in docs/DESIGN.md's map and every
//! mapped file in the tree, and udstrace's modules depending on each other in one direction.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in the workspace")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, relative to the workspace root.
fn rust_files(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root()).expect("inside the workspace");
            out.insert(relative.to_string_lossy().into_owned());
        }
    }
}

/// The files docs/DESIGN.md's map names: the code block after `## The pieces`, where a line
/// `crate/` or `  folder/` opens a folder and `    file.rs  job` names a file in it
/// (`dir/a.rs,b.rs` names two files of `dir/`).
fn mapped_files(design: &str) -> BTreeSet<String> {
    let map = design
        .split("## The pieces")
        .nth(1)
        .and_then(|rest| rest.split("```").nth(1))
        .expect("docs/DESIGN.md has a map under `## The pieces`");
    let mut folders: Vec<(usize, String)> = Vec::new();
    let mut files = BTreeSet::new();
    for line in map.lines().skip(1) {
        let indent = line.len() - line.trim_start().len();
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        folders.retain(|(depth, _)| *depth < indent);
        let parent: String = folders.iter().map(|(_, f)| f.as_str()).collect();
        if let Some(folder) = name.strip_suffix('/') {
            folders.push((indent, format!("{folder}/")));
        } else if Path::new(name).extension().is_some_and(|e| e == "rs") {
            // `dir/a.rs,b.rs` names files of one folder.
            let dir = name.rfind('/').map_or("", |i| &name[..=i]);
            for (i, each) in name.split(',').enumerate() {
                let each = if i == 0 {
                    each.to_string()
                } else {
                    format!("{dir}{each}")
                };
                files.insert(format!("{parent}{each}"));
            }
        }
    }
    files
}

#[test]
fn design_map_lists_every_source_file() {
    let design = fs::read_to_string(root().join("docs/DESIGN.md")).expect("docs/DESIGN.md");
    let mapped = mapped_files(&design);
    let mut tree = BTreeSet::new();
    for dir in [
        "udstrace/src",
        "udstrace/build.rs",
        "udstrace-common/src",
        "udstrace-ebpf/src",
        "udstrace-ebpf/build.rs",
        "xtask/src",
        "tests/src",
        "tests/tests",
    ] {
        let path = root().join(dir);
        if path.is_dir() {
            rust_files(&path, &mut tree);
        } else {
            tree.insert(dir.to_string());
        }
    }
    let missing: Vec<_> = tree.difference(&mapped).collect();
    let stale: Vec<_> = mapped.difference(&tree).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/DESIGN.md's map lacks {missing:?} and names files that do not exist: {stale:?}"
    );
}

/// udstrace's top-level modules, lowest first: each may use only those before it (and
/// itself). Test code is not held to it.
const LAYERS: [&[&str]; 8] = [
    &["background", "packet", "sys", "timing"],
    &["kernel"],
    &["error"],
    &["tracer"],
    &["proc"],
    &["output"],
    &["capture"],
    &["cli"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The non-test code of a file: up to its `#[cfg(test)] mod tests`.
fn non_test_code(text: &str) -> &str {
    text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text)
}

#[test]
fn modules_depend_one_way() {
    let src = root().join("udstrace/src");
    let mut files = BTreeSet::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix("udstrace/src/").expect("under src");
        let module = relative.split(['/', '.']).next().expect("a module name");
        let Some(own) = layer(module) else {
            continue;
        };
        let name = Path::new(relative).file_name().and_then(|n| n.to_str());
        if matches!(name, Some("tests.rs" | "testing.rs" | "golden.rs")) {
            continue;
        }
        let text = fs::read_to_string(root().join(file)).expect("a source file");
        let code = non_test_code(&text);
        // `crate::x` paths, and `x` in `use crate::{x, ...}` groups.
        let mut used = Vec::new();
        for part in code.split("crate::").skip(1) {
            if let Some(group) = part.strip_prefix('{') {
                let group = group.split("};").next().unwrap_or("");
                let mut depth = 0;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => used.push(std::mem::take(&mut item)),
                        _ if depth == 0 => item.push(c),
                        _ => {}
                    }
                }
                used.push(item);
            } else {
                used.push(part.to_string());
            }
        }
        for path in used {
            let target: String = path
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if let Some(theirs) = layer(&target) {
                if theirs > own {
                    violations.push(format!("{file} uses crate::{target}"));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "modules must only use the ones below them (docs/DESIGN.md): {violations:#?}"
    );
}
