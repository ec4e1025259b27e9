//! The layout rules of docs/ARCHITECTURE.md ("Rules the layout keeps"), checked: each rule
//! names files and the imports they must not have. The same checks are one-line greps in the
//! doc; this test fails when one of them would print something.

use std::path::{Path, PathBuf};

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out
}

/// Lines of `paths` (relative to src/) that contain one of `forbidden`.
fn offenders(paths: &[&str], forbidden: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for p in paths {
        for file in rust_files(&src.join(p)) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                if forbidden.iter().any(|f| line.contains(f)) {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn the_codec_and_the_grammar_import_nothing_of_the_crate() {
    let found = offenders(&["stomp", "destination.rs"], &["crate::"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn only_the_driver_touches_the_transport() {
    let pure = [
        "session/protocol.rs",
        "session/protocol",
        "session/acks.rs",
        "session/transactions.rs",
        "session/writer.rs",
    ];
    let found = offenders(&pure, &["crate::transport", "tokio::"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn sessions_do_not_reach_the_process_above_them() {
    let found = offenders(
        &["session"],
        &[
            "crate::gateway",
            "crate::http",
            "crate::server",
            "crate::config",
        ],
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_bus_knows_nothing_above_it() {
    let found = offenders(
        &["bus"],
        &[
            "crate::hub",
            "crate::route",
            "crate::chat",
            "crate::ingest",
            "crate::session",
            "crate::gateway",
        ],
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_hub_knows_neither_sources_nor_sockets() {
    let found = offenders(
        &["hub"],
        &[
            "crate::bus",
            "crate::transport",
            "crate::config",
            "crate::session",
            "crate::route",
        ],
    );
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn chat_depends_only_on_records_and_the_grammar() {
    let found: Vec<String> = offenders(&["chat"], &["crate::"])
        .into_iter()
        .filter(|l| !l.contains("crate::bus") && !l.contains("crate::destination"))
        .collect();
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn flags_are_read_only_where_the_process_is_wired() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed = ["gateway.rs", "server.rs", "config.rs", "main.rs"];
    let found: Vec<String> = offenders(&[""], &["crate::config"])
        .into_iter()
        .filter(|l| {
            !allowed
                .iter()
                .any(|a| l.starts_with(&src.join(a).display().to_string()))
        })
        .collect();
    assert!(found.is_empty(), "{found:#?}");
}
