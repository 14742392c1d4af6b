//! The documents stand on their own: every relative link in the repository's Markdown
//! files, and every repository path the architecture document names, points at
//! something that exists.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Markdown files people read: the READMEs and everything under `docs/`.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut files = vec![
        root.join("README.md"),
        root.join("benches/RESULTS.md"),
        root.join("crates/core/README.md"),
        root.join("crates/smol-runtime/README.md"),
        root.join("crates/cli/README.md"),
        root.join("crates/corpus/README.md"),
    ];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files
}

/// Targets of `[text](target)` links that are neither web addresses nor anchors.
fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = &rest[..end];
        if !target.contains("://") && !target.starts_with('#') && !target.starts_with("mailto:") {
            links.push(target.split('#').next().unwrap_or(target).to_string());
        }
    }
    links
}

#[test]
fn every_relative_link_in_the_documents_resolves() {
    let mut broken = Vec::new();
    for document in documents() {
        let text = std::fs::read_to_string(&document)
            .unwrap_or_else(|e| panic!("{}: {e}", document.display()));
        let dir = document.parent().unwrap();
        for link in relative_links(&text) {
            if !dir.join(&link).exists() {
                broken.push(format!("{} -> {link}", document.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn every_path_the_architecture_names_exists() {
    let text = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    for span in text.split('`').skip(1).step_by(2) {
        let path = span.trim_end_matches('/');
        let is_repository_path = ["crates/", "tests/", "benches/", "docs/"]
            .iter()
            .any(|top| path.starts_with(top))
            && !path.contains(' ');
        if is_repository_path {
            named += 1;
            if !root().join(path).exists() {
                missing.push(path.to_string());
            }
        }
    }
    assert!(
        named > 10,
        "only {named} paths found: is the document still there?"
    );
    assert!(missing.is_empty(), "named but missing: {missing:#?}");
}
