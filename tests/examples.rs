//! Every example in `examples/` runs and prints what its doc comment and
//! `examples/README.md` promise, so an example cannot drift from its claims.
//!
//! Each example runs through `cargo run --example` with the cargo that runs
//! this test (the `CARGO` variable), so what runs is the current source:
//! after `cargo test --all-targets` (scripts/test) the binaries are built
//! already and cargo only checks that they are fresh. The `[[example]]`
//! entries of Cargo.toml that live under `benches/` (`bare_hyper`, a
//! server, and `kserve_load`, a load generator) are benchmark tools, not
//! examples, and are not run here; `examples/minilm.toml`, a server
//! config, is loaded through the config loader.

use std::{path::Path, process::Command};

/// A check of the lines an example prints.
type Check = fn(&[&str]);

/// Each example in `examples/` and the check of what it prints.
const EXAMPLES: &[(&str, Check)] = &[("embedded_kv", embedded_kv), ("memoize", memoize)];

/// The stdout lines of `cargo run --example name`; panics if it fails.
fn run(name: &str) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut command = Command::new(cargo);
    command
        .args(["run", "--quiet", "--example", name, "--manifest-path"])
        .arg(manifest);
    // The same build as this test's, so nothing is built twice.
    let features: Vec<&str> = [
        ("cuda", cfg!(feature = "cuda")),
        ("testing", cfg!(feature = "testing")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    if !features.is_empty() {
        command.arg(format!("--features={}", features.join(",")));
    }
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let out = command.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "example {name} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(String::from)
        .collect()
}

/// Run example `name` and hand its lines to its check.
fn check(name: &str) {
    let (_, expect) = EXAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a listed example");
    let lines = run(name);
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    expect(&lines);
}

/// Eight concurrent callers: one `Miss`, seven `Coalesced`, one
/// computation; then a memory hit, and a disk hit after a restart.
fn memoize(lines: &[&str]) {
    let shown = lines.join("\n");
    let callers: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("caller "))
        .collect();
    assert_eq!(callers.len(), 8, "{shown}");
    for (i, line) in callers.iter().enumerate() {
        assert!(line.starts_with(&format!("{i}: 144 (")), "{shown}");
    }
    let count = |status: &str| callers.iter().filter(|l| l.ends_with(status)).count();
    assert_eq!(count("(Miss)"), 1, "{shown}");
    assert_eq!(count("(Coalesced)"), 7, "{shown}");
    assert_eq!(lines.len(), 12, "{shown}");
    assert!(
        lines[8].starts_with("computed 1 time(s) for 8 callers in "),
        "{shown}"
    );
    assert_eq!(
        &lines[9..],
        [
            "once more: 144 (Hit(Memory))",
            "after a restart: 144 (Hit(Disk))",
            "computed 1 time(s) in all",
        ],
        "{shown}"
    );
}

/// A durable put read back from memory, a delete that sticks, and the
/// TTL entry left in both tiers.
fn embedded_kv(lines: &[&str]) {
    let shown = lines.join("\n");
    assert_eq!(lines.len(), 3, "{shown}");
    assert_eq!(lines[0], "hello, cache (from memory)", "{shown}");
    assert_eq!(lines[1], "after delete: None", "{shown}");
    assert!(
        lines[2].starts_with("memory: Usage { entries: 1, ")
            && lines[2].contains(", disk: Usage { entries: 1, "),
        "{shown}"
    );
}

#[test]
fn memoize_coalesces_concurrent_callers_and_survives_a_restart() {
    check("memoize");
}

#[test]
fn embedded_kv_puts_gets_and_deletes() {
    check("embedded_kv");
}

/// The quick start's server config loads, with its text model.
#[test]
fn the_minilm_config_loads() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minilm.toml");
    let config = infercache::Config::from_args(&infercache::ServeArgs {
        config: Some(config),
        ..Default::default()
    })
    .expect("examples/minilm.toml is a valid config");
    let [model] = &config.models[..] else {
        panic!("one model: {:?}", config.models);
    };
    assert_eq!(model.name, "minilm");
    assert!(model.tokenizer.as_ref().is_some_and(|t| t.is_file()));
}

/// A new example without a check here, or missing from the README index,
/// fails this test.
#[test]
fn every_example_is_checked_and_indexed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let stem = path.file_stem()?.to_str()?.to_string();
            (path.extension()? == "rs").then_some(stem)
        })
        .collect();
    found.sort();
    let listed: Vec<&str> = EXAMPLES.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        found, listed,
        "examples/*.rs against the checks in this file"
    );
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for name in listed {
        assert!(
            readme.contains(&format!("`cargo run --example {name}`")),
            "examples/README.md does not index {name}"
        );
    }
}
