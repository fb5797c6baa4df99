use super::*;

fn from_toml(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    Config::from_args(&ServeArgs {
        config: Some(path),
        ..Default::default()
    })
}

#[test]
fn embedded_default_matches_design() {
    let c = Config::default();
    assert_eq!(c.listen, Listen::Tcp("127.0.0.1:7600".parse().unwrap()));
    assert_eq!(c.data_dir, PathBuf::from("./infercache-data"));
    assert_eq!(c.memory_capacity, 256 << 20);
    assert_eq!(c.disk_capacity, 4 << 30);
    assert_eq!(c.max_value_size, 16 << 20);
    assert_eq!(c.vram_units, 16);
}

#[test]
fn file_values_and_flag_precedence() {
    let c = from_toml(
        "memory_capacity = \"1MiB\"\nlisten = \"unix:/tmp/x.sock\"\nwrite_delay = \"2ms\"\n",
    )
    .unwrap();
    assert_eq!(c.memory_capacity, 1 << 20);
    assert_eq!(c.listen, Listen::Unix("/tmp/x.sock".into()));
    assert_eq!(c.write_delay, Duration::from_millis(2));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "memory_capacity = \"1MiB\"").unwrap();
    let c = Config::from_args(&ServeArgs {
        config: Some(path),
        memory_capacity: Some(ByteSize::mib(2)),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.memory_capacity, 2 << 20);
}

#[test]
fn errors_name_the_key() {
    let e = from_toml("memory_capacity = \"lots\"").unwrap_err();
    assert_eq!(e.key, "memory_capacity", "{e}");
    let e = from_toml("\nmemroy_capacity = \"1MiB\"").unwrap_err();
    assert!(e.to_string().contains("memroy_capacity"), "{e}");
    let e = from_toml("listen = \"nowhere\"").unwrap_err();
    assert_eq!(e.key, "listen");
    let e = from_toml("max_value_size = \"8GiB\"\ndisk_capacity = \"1GiB\"").unwrap_err();
    assert_eq!(e.key, "max_value_size");
    // A value of the limit plus its per-entry charge must fit the disk.
    let e = from_toml("max_value_size = \"1MiB\"\ndisk_capacity = \"1MiB\"").unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("max_value_size") && text.contains("disk_capacity"),
        "{text}"
    );
    let c = from_toml("disk_capacity = \"1MiB\"").unwrap();
    assert_eq!(c.max_value_size, (1 << 20) - crate::limits::ENTRY_RESERVE);
    let e = from_toml("vram_units = 0").unwrap_err();
    assert_eq!(e.key, "vram_units");
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn models_from_file_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.onnx"), b"x").unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[[model]]\nname = \"mlp\"\npath = \"m.onnx\"\nmax_batch = 8\nttl = \"1h\"\n",
    )
    .unwrap();
    let flag = format!("other={}", dir.path().join("m.onnx").display());
    let c = Config::from_args(&ServeArgs {
        config: Some(path),
        models: vec![model::parse_model_flag(&flag).unwrap()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(c.models.len(), 2);
    assert_eq!(
        c.models[0].path,
        dir.path().join("m.onnx"),
        "relative to the file"
    );
    assert_eq!(c.models[0].max_batch, 8);
    assert_eq!(c.models[0].ttl, Some(Duration::from_secs(3600)));
    assert_eq!(c.models[1].max_batch, 32);
    assert!(model::parse_model_flag("noequals").is_err());
}

#[test]
fn bad_models_are_refused_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.onnx");
    std::fs::write(&file, b"x").unwrap();
    let check = |m: ModelConfig| {
        Config::from_args(&ServeArgs {
            models: vec![m],
            vram_units: Some(4),
            ..Default::default()
        })
        .unwrap_err()
        .to_string()
    };
    assert!(check(ModelConfig::new("bad name", &file)).contains("model.name"));
    assert!(check(ModelConfig::new("m", dir.path().join("none.onnx"))).contains("path"));
    let costly = ModelConfig {
        vram_units: 5,
        ..ModelConfig::new("m", &file)
    };
    assert!(check(costly).contains("vram_units"));
    let twice = Config::from_args(&ServeArgs {
        models: vec![ModelConfig::new("m", &file), ModelConfig::new("m", &file)],
        ..Default::default()
    });
    assert!(twice.unwrap_err().to_string().contains("twice"));
}

#[test]
fn reload_applies_live_settings_and_keeps_fixed_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.onnx"), b"x").unwrap();
    let path = dir.path().join("c.toml");
    let args = ServeArgs {
        config: Some(path.clone()),
        ..Default::default()
    };
    let write = |text: &str| std::fs::write(&path, text).unwrap();
    write("auth_token = \"a\"\ndata_dir = \"/d1\"\n[[model]]\nname = \"m\"\npath = \"m.onnx\"\n");
    let old = Config::from_args(&args).unwrap();
    write("auth_token = \"b\"\ndata_dir = \"/d2\"\nmax_value_size = \"1KiB\"\n[[model]]\nname = \"m\"\npath = \"m.onnx\"\nmax_batch = 4\nthreads = 3\n");
    let (new, kept) = old.reloaded(&args).unwrap();
    assert_eq!(new.auth_token.as_deref(), Some("b"));
    assert_eq!(new.max_value_size, 1024);
    assert_eq!(new.data_dir, PathBuf::from("/d1"));
    assert_eq!(
        (new.models[0].max_batch, new.models[0].threads),
        (4, old.models[0].threads)
    );
    assert!(kept.iter().any(|k| k == "data_dir"), "{kept:?}");
    assert!(kept.iter().any(|k| k.contains("threads")), "{kept:?}");
    write("max_value_size = \"nonsense\"");
    assert!(old.reloaded(&args).is_err());
}

#[test]
fn secrets_are_redacted() {
    let c = from_toml("auth_token = \"s3cret\"").unwrap();
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn shared_tier_settings() {
    let c = Config::default();
    assert_eq!(c.shared_url, None, "no shared tier unless asked for");
    assert_eq!(c.shared_timeout, Duration::from_millis(100));
    assert_eq!((c.shared_ttl, c.shared_max_value), (None, 4 << 20));
    let c = from_toml(
        "shared_url = \"redis://app:hunter2@10.0.0.5:6379/2\"\nshared_ttl = \"1h\"\n\
         shared_timeout = \"50ms\"\nshared_max_value = \"1MiB\"\n",
    )
    .unwrap();
    assert_eq!(c.shared_ttl, Some(Duration::from_secs(3600)));
    assert_eq!(
        (c.shared_timeout.as_millis(), c.shared_max_value),
        (50, 1 << 20)
    );
    let logged = format!("{c:?}");
    assert!(!logged.contains("hunter2"), "{logged}");
    assert!(
        logged.contains("redis://app:<redacted>@10.0.0.5:6379/2"),
        "{logged}"
    );
    for (text, key) in [
        ("shared_url = \"http://x\"", "shared_url"),
        ("shared_url = \"redis://a:1,redis://b:1\"", "shared_url"),
        ("shared_cluster = true", "shared_cluster"),
        (
            "shared_url = \"redis://a:1\"\nshared_timeout = \"0s\"",
            "shared_timeout",
        ),
    ] {
        assert_eq!(from_toml(text).unwrap_err().key, key, "{text}");
    }
    let seeds = "shared_url = \"redis://a:1, redis://:pw@b:1\"\nshared_cluster = true";
    let c = from_toml(seeds).unwrap();
    let urls: Vec<&str> = c.shared_url.as_ref().unwrap().urls().collect();
    assert_eq!(urls, ["redis://a:1", "redis://:pw@b:1"]);
    assert!(!format!("{c:?}").contains("pw@"));
}

#[test]
fn reload_names_every_fixed_setting_it_keeps() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.onnx"), b"x").unwrap();
    std::fs::write(dir.path().join("n.onnx"), b"x").unwrap();
    let path = dir.path().join("c.toml");
    let args = ServeArgs {
        config: Some(path.clone()),
        ..Default::default()
    };
    let model = "[[model]]\nname = \"m\"\npath = \"m.onnx\"\n";
    std::fs::write(&path, model).unwrap();
    let old = Config::from_args(&args).unwrap();
    let changed = "write_queue = 7\nwrite_delay = \"1ms\"\nrequest_timeout = \"5s\"\n\
                   [[model]]\nname = \"m\"\npath = \"n.onnx\"\npooling = \"cls\"\nttl = \"1h\"\n";
    std::fs::write(&path, changed).unwrap();
    let (new, kept) = old.reloaded(&args).unwrap();
    assert_eq!(
        kept,
        ["write_queue", "write_delay", "model `m` (path, pooling)"]
    );
    assert_eq!((new.write_queue, new.write_delay), (16384, Duration::ZERO));
    assert_eq!(new.request_timeout, Duration::from_secs(5));
    let m = &new.models[0];
    assert_eq!(
        (&m.path, m.pooling),
        (&dir.path().join("m.onnx"), Pooling::Mean)
    );
    assert_eq!(m.live().ttl, Some(Duration::from_secs(3600)));
}

/// Flags over variables (clap), both over the file, the file over the
/// declared default.
#[test]
fn flags_over_environment_over_file_over_default() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "write_batch = 5\nsweep_interval = \"5s\"\n").unwrap();
    let file = path.to_str().unwrap();
    // The only test that reads this variable.
    std::env::set_var("INFERCACHE_WRITE_BATCH", "6");
    let parse = |flags: &[&str]| {
        let cli =
            <Cli as clap::Parser>::try_parse_from(["serve", "--config", file].iter().chain(flags))
                .unwrap();
        Config::from_args(&cli.args).unwrap()
    };
    let c = parse(&[]);
    assert_eq!(c.write_batch, 6);
    assert_eq!(c.sweep_interval, Duration::from_secs(5));
    assert_eq!(c.write_queue, 16384);
    let c = parse(&["--write-batch", "7", "--sweep-interval", "1s"]);
    assert_eq!(c.write_batch, 7);
    assert_eq!(c.sweep_interval, Duration::from_secs(1));
    std::env::remove_var("INFERCACHE_WRITE_BATCH");
}

/// A setting is one declared field; its README row must exist too, in
/// declaration order, saying whether a reload changes it.
#[test]
fn readme_lists_every_key() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Configuration")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap();
    let tables: Vec<Vec<(&str, bool)>> = section
        .split("\n\n")
        .filter(|block| block.starts_with("| key"))
        .map(|table| {
            table
                .lines()
                .filter_map(|row| {
                    let cells: Vec<&str> = row.strip_prefix("| `")?.split(" | ").collect();
                    Some((cells[0].strip_suffix('`')?, cells[2] == "live"))
                })
                .collect()
        })
        .collect();
    assert_eq!(tables.len(), 2, "the server table and the model table");
    assert_eq!(tables[0], Config::KEYS);
    let model_keys: Vec<(&str, bool)> = [("name", false), ("path", false)]
        .into_iter()
        .chain(ModelConfig::KEYS.iter().copied())
        .collect();
    assert_eq!(tables[1], model_keys);
}
