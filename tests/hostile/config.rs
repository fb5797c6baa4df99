//! Config files through `Config::from_args` (no server).

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    path::Path,
};

use infercache::{Config, ServeArgs};
use proptest::{collection::vec, prelude::*, sample::select, test_runner::TestCaseError};

use crate::{common::temp_dir, fail, gen::hostile_string, runner, Sides, CONFIG_CASES};

const TOP_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "memory_capacity",
    "disk_capacity",
    "max_value_size",
    "vram_units",
    "auth_token",
    "write_queue",
    "write_batch",
    "write_delay",
    "sweep_interval",
    "onnxruntime",
    "request_timeout",
    "max_request_size",
];

/// `[[model]]` keys besides `name` and `path` (always written first).
const MODEL_KEYS: &[&str] = &[
    "vram_units",
    "max_batch",
    "max_delay_ms",
    "threads",
    "nice",
    "instances",
    "queue",
    "ttl",
    "tokenizer",
    "max_tokens",
    "pooling",
    "normalize",
    "max_batch_tokens",
    "max_inputs",
];

/// A TOML basic string of `s` (JSON escapes are TOML escapes, except that
/// DEL is left raw, which TOML refuses: a fine hostile input too).
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn toml_value() -> impl Strategy<Value = String> {
    let num = select(vec![
        "0",
        "1",
        "2",
        "16",
        "1.5",
        "-1",
        "1e30",
        "0.0000001",
        "18446744073709551615",
        "18446744073709551616",
        "999999999999999999999",
        "",
        " ",
        "4096",
    ]);
    let size_unit = select(vec![
        "", "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "KB", "kb", "k", "lots", "iB", " MiB",
    ]);
    let dur_unit = select(vec![
        "", "ns", "us", "µs", "ms", "s", "m", "min", "h", "d", "w", "M", "y", "years", " s",
    ]);
    prop_oneof![
        3 => (num.clone(), size_unit).prop_map(|(n, u)| toml_str(&format!("{n}{u}"))),
        3 => (num, dur_unit).prop_map(|(n, u)| toml_str(&format!("{n}{u}"))),
        3 => prop_oneof![
            any::<i64>().prop_map(|i| i.to_string()),
            select(vec![
                "0", "1", "-1", "4", "16", "99999999999999999999", "0x10", "1_000", "+1", "0o7",
                "4294967296", "18446744073709551615",
            ])
            .prop_map(String::from),
        ],
        1 => select(vec!["1.5", "inf", "nan", "-0.0", "1e400", "true", "false"]).prop_map(String::from),
        2 => select(vec![
            "127.0.0.1:0", "unix:", "unix:/tmp/x.sock", "[::1]:80", "localhost:80",
            "0.0.0.0:99999", "", " ", "mean", "cls", "MEAN", "m.onnx", "tok.json",
            "missing.onnx", ".", "/", "a\nb", "\u{0}",
        ])
        .prop_map(toml_str),
        2 => hostile_string(24).prop_map(|s| toml_str(&s)),
        1 => select(vec![
            "[1, \"a\"]", "{ a = 1 }", "[]", "{}", "1979-05-27T07:32:00Z", "'lit'", "'''ml'''",
            "\"\"\"\nml\"\"\"", "\"unterminated", "[", "{", "\"\\x\"", "\"\\uD800\"",
        ])
        .prop_map(String::from),
    ]
}

fn toml_key(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        12 => select(keys.to_vec()).prop_map(String::from),
        1 => select(vec!["model", "unknown", "Listen", "listen.x", "\"listen\"", "", "= ="])
            .prop_map(String::from),
        1 => hostile_string(8).prop_map(|s| toml_str(&s)),
    ]
}

fn toml_line(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    (toml_key(keys), toml_value()).prop_map(|(k, v)| format!("{k} = {v}"))
}

/// A value that suits `key` (so that whole files are often valid).
fn fitting_value(key: &str) -> BoxedStrategy<String> {
    let size = || {
        (1u32..1024, select(vec!["KiB", "MiB", "B", "KB"]))
            .prop_map(|(n, u)| format!("\"{n}{u}\""))
            .boxed()
    };
    let duration = || {
        (1u32..1000, select(vec!["ms", "s", "m", "h"]))
            .prop_map(|(n, u)| format!("\"{n}{u}\""))
            .boxed()
    };
    let count = |max: u32| (1..=max).prop_map(|n| n.to_string()).boxed();
    match key {
        "listen" => select(vec![
            "\"127.0.0.1:0\"",
            "\"unix:/tmp/x.sock\"",
            "\"[::1]:7600\"",
        ])
        .prop_map(String::from)
        .boxed(),
        "data_dir" | "onnxruntime" => hostile_string(12).prop_map(|s| toml_str(&s)).boxed(),
        "auth_token" => "[!-~]{1,24}".prop_map(|s| toml_str(&s)).boxed(),
        "memory_capacity" | "disk_capacity" | "max_value_size" | "max_request_size" => size(),
        "write_delay" | "sweep_interval" | "request_timeout" | "ttl" => duration(),
        "vram_units" => count(64),
        "write_queue" | "write_batch" | "queue" | "max_inputs" => count(10_000),
        "max_batch" | "threads" | "instances" => count(8),
        "max_delay_ms" => (0u32..100).prop_map(|n| n.to_string()).boxed(),
        // 20 and above are refused: the lowest priority is 19.
        "nice" => (0u32..24).prop_map(|n| n.to_string()).boxed(),
        "max_tokens" => count(512),
        "max_batch_tokens" => (512u32..20_000).prop_map(|n| n.to_string()).boxed(),
        "tokenizer" => Just("\"tok.json\"".to_string()).boxed(),
        "pooling" => select(vec!["\"mean\"", "\"cls\""])
            .prop_map(String::from)
            .boxed(),
        "normalize" => any::<bool>().prop_map(|b| b.to_string()).boxed(),
        _ => toml_value().boxed(),
    }
}

/// Lines for distinct keys among `keys` (duplicates are a TOML error that
/// would hide everything else), each value fitting or hostile, plus now
/// and then a line for an unknown or mangled key.
fn key_lines(keys: &'static [&'static str], most: usize) -> impl Strategy<Value = Vec<String>> {
    (
        proptest::sample::subsequence(keys.to_vec(), 0..=most),
        vec(toml_line(keys), 0..=1),
        prop::bool::weighted(0.15),
    )
        .prop_flat_map(|(chosen, extra, hostile_extra)| {
            let lines: Vec<BoxedStrategy<String>> = chosen
                .into_iter()
                .map(|key| {
                    prop_oneof![5 => fitting_value(key), 1 => toml_value()]
                        .prop_map(move |v| format!("{key} = {v}"))
                        .boxed()
                })
                .collect();
            lines.prop_map(move |mut lines| {
                if hostile_extra {
                    lines.extend(extra.iter().cloned());
                }
                lines
            })
        })
}

fn model_block() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        6 => select(vec!["mlp", "mlp2", "a.b-c_d"]).prop_map(|n| format!("name = \"{n}\"")),
        1 => prop_oneof![
            select(vec!["", "a b", "x\ny", "x\r", "../x", "é", "m/l"]).prop_map(String::from),
            Just("a".repeat(129)),
            hostile_string(10),
        ]
        .prop_map(|s| format!("name = {}", toml_str(&s))),
    ];
    let path = prop_oneof![
        6 => Just("path = \"m.onnx\"".to_string()),
        1 => select(vec!["missing.onnx", "", ".", "/", "a\nb.onnx", "m.onnx\0"])
            .prop_map(|p| format!("path = {}", toml_str(p))),
    ];
    (
        name,
        path,
        key_lines(MODEL_KEYS, 4),
        prop_oneof![
            8 => Just("[[model]]"),
            1 => select(vec!["[model]", "[[model]]\n[[model]]", "[[models]]"]),
        ],
    )
        .prop_map(|(name, path, mut lines, header)| {
            lines.insert(0, path);
            lines.insert(0, name);
            format!("{header}\n{}\n", lines.join("\n"))
        })
}

fn structured_config() -> impl Strategy<Value = String> {
    (key_lines(TOP_KEYS, 6), vec(model_block(), 0..3))
        .prop_map(|(lines, models)| format!("{}\n{}", lines.join("\n"), models.concat()))
}

/// A config file's bytes, shown as (lossy) text.
#[derive(Clone)]
struct File(Vec<u8>);

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

fn config_text() -> impl Strategy<Value = File> {
    let structured = structured_config();
    let mutated = (
        structured_config(),
        vec(
            (any::<prop::sample::Index>(), hostile_string(3), 0usize..4),
            1..4,
        ),
    )
        .prop_map(|(text, edits)| {
            let mut chars: Vec<char> = text.chars().collect();
            for (at, insert, delete) in edits {
                let at = at.index(chars.len() + 1);
                let end = (at + delete).min(chars.len());
                chars.splice(at..end, insert.chars());
            }
            chars.into_iter().collect::<String>()
        });
    prop_oneof![
        6 => structured.prop_map(String::into_bytes),
        3 => mutated.prop_map(String::into_bytes),
        2 => hostile_string(120).prop_map(String::into_bytes),
        1 => vec(any::<u8>(), 0..200),
    ]
    .prop_map(File)
}

#[test]
fn config_loader_survives_hostile_files() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("m.onnx"), b"not really onnx").unwrap();
    std::fs::write(dir.path().join("tok.json"), b"{}").unwrap();
    let path = dir.path().join("infercache.toml");
    let sides = Sides::new("Ok", "Err");
    let mut runner = runner(CONFIG_CASES);
    let result = runner.run(&config_text(), |File(text)| {
        std::fs::write(&path, &text).unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let shown = String::from_utf8_lossy(&text).to_string();
        let outcome = catch_unwind(AssertUnwindSafe(|| Config::from_args(&args)))
            .map_err(|_| fail(format!("Config::from_args panicked on {shown:?}")))?;
        match outcome {
            Ok(c) => {
                sides.count(true);
                check_valid_config(&c, dir.path())
                    .map_err(|e| fail(format!("{e}\nfile {shown:?}")))?;
            }
            Err(e) => {
                sides.count(false);
                let line = e.to_string();
                prop_assert!(
                    !line.contains(LINE_BREAKS),
                    "the error is not one line: {:?}\nfile {:?}",
                    line,
                    shown
                );
                prop_assert!(line.starts_with("invalid config: "), "{:?}", line);
                prop_assert!(!e.key.is_empty(), "no key named: {:?}", line);
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    sides.check("config", [CONFIG_CASES / 20, CONFIG_CASES / 10]);
}

/// Values that once made the loader's one-line error span several lines
/// (found by the property above): user text echoed raw into the message.
#[test]
fn config_errors_stay_one_line_for_known_hostile_values() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("m.onnx"), b"not really onnx").unwrap();
    let path = dir.path().join("infercache.toml");
    let mut multi_line = Vec::new();
    for text in [
        "\"\\n\" = \"0\"\n",                              // toml's message quotes the key
        "\"\u{85}\" = 1",                                 // ditto, NEL
        "0\r\u{a1}= 1",                                   // the key taken from the line
        "\u{a1}\u{b}0= 1",                                // ditto, vertical tab
        "listen = \"a\\nb\"",                             // parse_listen echoes the value
        "[[model]]\nname = \"a\\nb\"\npath = \"m.onnx\"", // model name
        "[[model]]\nname = \"m\"\npath = \"a\\nb.onnx\"", // model path
        "[[model]]\nname = \"m\"\npath = \"m.onnx\"\ntokenizer = \"t\\rx\"", // tokenizer
    ] {
        std::fs::write(&path, text).unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        let e = Config::from_args(&args).expect_err(text).to_string();
        if e.contains(LINE_BREAKS) {
            multi_line.push(format!("{text:?}\n    => {e:?}"));
        }
    }
    assert!(
        multi_line.is_empty(),
        "config errors that are not one line:\n{}",
        multi_line.join("\n")
    );
}

/// What ends a line somewhere: a terminal, a log collector, a text editor.
const LINE_BREAKS: [char; 7] = [
    '\n', '\r', '\u{b}', '\u{c}', '\u{85}', '\u{2028}', '\u{2029}',
];

/// What `Ok` promises: every documented bound holds.
fn check_valid_config(c: &Config, dir: &Path) -> Result<(), TestCaseError> {
    prop_assert!(c.memory_capacity > 0 && c.disk_capacity > 0);
    prop_assert!(c.max_value_size >= 1 && c.max_value_size <= c.disk_capacity);
    prop_assert!(c.vram_units >= 1 && c.write_queue >= 1 && c.write_batch >= 1);
    prop_assert!(!c.sweep_interval.is_zero() && !c.request_timeout.is_zero());
    prop_assert!(c.max_request_size > 0);
    prop_assert!(c.auth_token.as_ref().is_none_or(|t| !t.trim().is_empty()));
    for m in &c.models {
        prop_assert!(
            !m.name.is_empty()
                && m.name.len() <= 128
                && m.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)),
            "model name {:?}",
            m.name
        );
        prop_assert!(m.path.is_file(), "model path {:?}", m.path);
        prop_assert!(m.path.starts_with(dir) || m.path.is_absolute());
        prop_assert!(m.vram_units >= 1 && m.vram_units <= c.vram_units);
    }
    Ok(())
}
