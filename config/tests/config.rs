//! The config crate at its boundary: texts in, configs or placed problems out.

use metagov_config::{sha256_hex, Config, ConfigError, ConfigProblem};

/// The problems `text` has, as displayed.
fn problems(text: &str) -> Vec<String> {
    match Config::from_toml_str(text, "gov.toml") {
        Ok(config) => panic!("expected problems, read {config:?}"),
        Err(ConfigError::Invalid { problems }) => problems.iter().map(ToString::to_string).collect(),
        Err(error) => panic!("expected problems, got {error}"),
    }
}

fn read(text: &str) -> Config {
    Config::from_toml_str(text, "gov.toml").unwrap_or_else(|error| panic!("{error}"))
}

/// Defaults and partial files.
mod defaults {
    use super::*;

    #[test]
    fn an_empty_text_is_the_default_config() {
        let config = read("");
        assert_eq!(config, Config::default());
        assert_eq!(config.run.seed, 42);
        assert_eq!(config.bus.queue_len_max, 1_048_576);
        assert_eq!(config.bus.outbox_len_max, 4096);
        assert_eq!(config.chronicle.frame_records_max, 4096);
        assert_eq!(config.chronicle.frame_bytes_max, 1_048_576);
    }

    #[test]
    fn comments_and_empty_sections_are_the_default_config() {
        assert_eq!(read("# nothing\n\n[run]\n[bus] # still nothing\n"), Config::default());
    }

    #[test]
    fn missing_keys_keep_their_defaults() {
        let config = read("[bus]\noutbox_len_max = 7\n");
        let mut expected = Config::default();
        expected.bus.outbox_len_max = 7;
        assert_eq!(config, expected);
    }

    #[test]
    fn dotted_keys_and_inline_tables_read_like_sections() {
        let sections = read("[run]\nseed = 7\n[bus]\nqueue_len_max = 9\n");
        assert_eq!(read("run.seed = 7\nbus = { queue_len_max = 9 }\n"), sections);
    }
}

/// The canonical text and its hash.
mod canonical {
    use super::*;
    use proptest::prelude::*;

    const DEFAULT_TEXT: &str = "\
[run]
seed = 42

[bus]
queue_len_max = 1048576
outbox_len_max = 4096

[chronicle]
frame_records_max = 4096
frame_bytes_max = 1048576
";

    /// Checked with `sha256sum` on `DEFAULT_TEXT`. If this changes, every
    /// recorded run's config hash changes with it: do it on purpose only.
    const DEFAULT_SHA256: &str = "f0ad799c05bc15f7953f71b7dfe1a4b68c5be0b0b04793bcf52609dc56d5183e";

    #[test]
    fn the_default_text_and_hash_are_pinned() {
        assert_eq!(Config::default().canonical_toml(), DEFAULT_TEXT);
        assert_eq!(Config::default().sha256_hex(), DEFAULT_SHA256);
    }

    #[test]
    fn sha256_hex_matches_the_standard_test_vectors() {
        // FIPS 180-2, appendix B.1, and the empty message.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(sha256_hex(b"abc"), abc);
        assert_eq!(sha256_hex(b""), empty);
    }

    #[test]
    fn the_text_ignores_how_the_file_was_written() {
        let plain = read("[bus]\nqueue_len_max = 5\n[run]\nseed = 1\n");
        let fancy = read("# mine\nrun = { seed = 0x1 }\nbus.queue_len_max = 5 # five\n");
        assert_eq!(plain.canonical_toml(), fancy.canonical_toml());
        assert_eq!(plain.sha256_hex(), fancy.sha256_hex());
    }

    #[test]
    fn the_hash_changes_when_any_value_changes() {
        let base = Config::default();
        let changes: [fn(&mut Config); 5] = [
            |c| c.run.seed = 43,
            |c| c.bus.queue_len_max -= 1,
            |c| c.bus.outbox_len_max -= 1,
            |c| c.chronicle.frame_records_max -= 1,
            |c| c.chronicle.frame_bytes_max -= 1,
        ];
        for change in changes {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(changed.sha256_hex(), base.sha256_hex(), "{changed:?}");
        }
    }

    prop_compose! {
        fn valid_config()(
            seed in 0..=i64::MAX as u64,
            queue_len_max in 1..=1_u32 << 24,
            outbox_len_max in 1..=1_u32 << 20,
            frame_records_max in 1..=1_u32 << 20,
            frame_bytes_max in 1024..=1_u32 << 26,
        ) -> Config {
            let mut config = Config::default();
            config.run.seed = seed;
            config.bus.queue_len_max = queue_len_max;
            config.bus.outbox_len_max = outbox_len_max;
            config.chronicle.frame_records_max = frame_records_max;
            config.chronicle.frame_bytes_max = frame_bytes_max;
            config
        }
    }

    proptest! {
        #[test]
        fn a_valid_config_reads_back_from_its_text(config in valid_config()) {
            let text = config.canonical_toml();
            prop_assert_eq!(Config::from_toml_str(&text, "canonical").ok(), Some(config));
        }
    }
}

/// Problems: what, where, and all of them at once.
mod problems {
    use super::*;

    #[test]
    fn an_unknown_key_is_placed_and_the_close_one_suggested() {
        assert_eq!(
            problems("[bus]\n  queue_len_mx = 3\n"),
            ["gov.toml:2:3: bus.queue_len_mx: unknown key, did you mean `queue_len_max`?"]
        );
    }

    #[test]
    fn an_unknown_section_is_suggested_too() {
        assert_eq!(problems("[chronicel]\n"), ["gov.toml:1:2: chronicel: unknown key, did you mean `chronicle`?"]);
    }

    #[test]
    fn an_unknown_key_far_from_all_lists_the_known_ones() {
        assert_eq!(problems("[run]\nrng = 1\n"), ["gov.toml:2:1: run.rng: unknown key, expected one of `seed`"]);
    }

    #[test]
    fn an_odd_key_is_quoted_in_the_path() {
        assert_eq!(
            problems("[bus]\n\"queue len\" = 1\n"),
            ["gov.toml:2:1: bus.\"queue len\": unknown key, expected one of `queue_len_max`, `outbox_len_max`"]
        );
    }

    #[test]
    fn a_wrong_type_is_placed_at_the_value() {
        assert_eq!(
            problems("[run]\nseed = \"forty-two\"\n"),
            ["gov.toml:2:8: run.seed: expected an integer, found string \"forty-two\""]
        );
        assert_eq!(problems("bus = 5\n"), ["gov.toml:1:7: bus: expected a table, found integer 5"]);
    }

    #[test]
    fn a_value_out_of_range_is_placed_at_the_value() {
        assert_eq!(
            problems("[run]\n[bus]\nqueue_len_max = 0\n"),
            ["gov.toml:3:17: bus.queue_len_max: 0 is out of range 1..=16777216"]
        );
    }

    #[test]
    fn a_value_out_of_its_type_range_is_placed_at_the_value() {
        assert_eq!(
            problems("run.seed = -1\nbus.outbox_len_max = 4294967296\n"),
            [
                "gov.toml:1:12: run.seed: -1 is out of range 0..=9223372036854775807",
                "gov.toml:2:22: bus.outbox_len_max: 4294967296 is out of range 0..=4294967295",
            ]
        );
    }

    #[test]
    fn every_rule_names_its_own_key() {
        let text = "[bus]\nqueue_len_max = 0\noutbox_len_max = 0\n\
                    [chronicle]\nframe_records_max = 0\nframe_bytes_max = 0\n";
        assert_eq!(
            problems(text),
            [
                "gov.toml:2:17: bus.queue_len_max: 0 is out of range 1..=16777216",
                "gov.toml:3:18: bus.outbox_len_max: 0 is out of range 1..=1048576",
                "gov.toml:5:21: chronicle.frame_records_max: 0 is out of range 1..=1048576",
                "gov.toml:6:19: chronicle.frame_bytes_max: 0 is out of range 1024..=67108864",
            ]
        );
    }

    #[test]
    fn the_upper_bounds_are_inclusive() {
        let text = "bus = { queue_len_max = 16777216, outbox_len_max = 1048576 }\n\
                    chronicle = { frame_records_max = 1048576, frame_bytes_max = 67108864 }\n";
        read(text);
        let over = "bus = { queue_len_max = 16777217 }\n";
        assert_eq!(problems(over), ["gov.toml:1:25: bus.queue_len_max: 16777217 is out of range 1..=16777216"]);
    }

    #[test]
    fn all_problems_come_at_once_in_text_order() {
        let text = "\
[chronicle]
frame_bytes_max = 10
frame_record_max = 1

[bus]
queue_len_max = true
outbox_len_max = 0

[run]
seed = 1.5
";
        assert_eq!(
            problems(text),
            [
                "gov.toml:2:19: chronicle.frame_bytes_max: 10 is out of range 1024..=67108864",
                "gov.toml:3:1: chronicle.frame_record_max: unknown key, did you mean `frame_records_max`?",
                "gov.toml:6:17: bus.queue_len_max: expected an integer, found boolean true",
                "gov.toml:7:18: bus.outbox_len_max: 0 is out of range 1..=1048576",
                "gov.toml:10:8: run.seed: expected an integer, found float 1.5",
            ]
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        assert_eq!(
            problems("# héhé\n[bus] # ünïcödé\nqueue_len_max = 0 # ü\n"),
            ["gov.toml:3:17: bus.queue_len_max: 0 is out of range 1..=16777216"]
        );
        assert_eq!(
            problems("bus = { \"é\" = 1 }\n"),
            ["gov.toml:1:9: bus.\"é\": unknown key, expected one of `queue_len_max`, `outbox_len_max`"]
        );
    }

    #[test]
    fn a_syntax_error_comes_alone_and_placed() {
        let problems = problems("[bus]\nqueue_len_max = = 3\nseed = \"x\"\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("gov.toml:2:17: "), "{problems:?}");
    }

    #[test]
    fn problems_are_data_with_their_fields() {
        let Err(ConfigError::Invalid { problems }) = Config::from_toml_str("run.sed = 1", "a.toml") else {
            panic!("expected an invalid config");
        };
        let expected = ConfigProblem {
            origin: "a.toml".to_owned(),
            line: 1,
            column: 5,
            key: "run.sed".to_owned(),
            message: "unknown key, did you mean `seed`?".to_owned(),
        };
        assert_eq!(problems, [expected]);
    }
}

/// Loading from a file.
mod load {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_file_is_read_and_named_by_its_path() {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("metagov-config-load.toml");
        std::fs::write(&path, "[bus]\nqueue_len_max = 2\n").expect("write the test file");
        assert_eq!(Config::load(&path).expect("a valid file").bus.queue_len_max, 2);

        std::fs::write(&path, "[bus]\nqueue_len_max = 0\n").expect("write the test file");
        let error = Config::load(&path).expect_err("an invalid file");
        let origin = path.display().to_string();
        assert_eq!(error.to_string(), format!("{origin}:2:17: bus.queue_len_max: 0 is out of range 1..=16777216"));
        std::fs::remove_file(&path).expect("remove the test file");
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("metagov-config-missing.toml");
        let error = Config::load(&path).expect_err("a missing file");
        assert!(matches!(&error, ConfigError::Io { path: p, .. } if *p == path), "{error:?}");
        assert_eq!(error.to_string(), format!("cannot read config file {}", path.display()));
    }
}

/// Hostile input: never a panic, always placed problems.
mod hostile {
    use super::*;
    use proptest::prelude::*;

    /// Reads `text`: a config it gives must read back from its canonical
    /// text; if it is rejected, every problem must be placed inside it.
    fn survives(text: &str) {
        let problems = match Config::from_toml_str(text, "hostile") {
            Ok(config) => return assert_eq!(read(&config.canonical_toml()), config),
            Err(ConfigError::Invalid { problems }) => problems,
            Err(error) => panic!("reading a string cannot be an io error: {error:?}"),
        };
        assert!(!problems.is_empty());
        let lines = u32::try_from(text.lines().count()).unwrap_or(u32::MAX);
        for problem in &problems {
            assert!(problem.line >= 1 && problem.line <= lines.max(1) + 1, "{problem}");
            assert!(problem.column >= 1, "{problem}");
            assert!(!problem.message.contains('\n'), "{problem}");
        }
    }

    #[test]
    fn a_fixed_set_of_hostile_texts_is_survived() {
        let deep = 100_000;
        let texts = [
            String::new(),
            "\0\u{1}\u{7f}\u{feff}\u{fffd}".to_owned(),
            String::from_utf8_lossy(&[0xff, 0xfe, 0x00, 0x5b, 0x80, 0x0a, 0x3d]).into_owned(),
            "run.seed = 99999999999999999999999999999999".to_owned(),
            "run.seed = 9223372036854775807\nbus.queue_len_max = -9223372036854775808".to_owned(),
            "run.seed = nan\nbus.queue_len_max = inf\nbus.outbox_len_max = 1979-05-27".to_owned(),
            format!("{} = 1", vec!["bus"; deep].join(".")),
            format!("[{}]", vec!["run"; deep].join(".")),
            format!("bus = {}{}", "[".repeat(deep), "]".repeat(deep)),
            format!("bus = {}1{}", "{a = ".repeat(deep), "}".repeat(deep)),
            format!("run.seed = \"{}\"", "x".repeat(1 << 20)),
            (0..10_000).map(|i| format!("bus.k{i} = -{i}\n")).collect(),
            "[[bus]]\n[[bus]]\n[run]\nseed = [1, 2]\n".to_owned(),
        ];
        for text in &texts {
            survives(text);
        }
    }

    /// Lines that look like a config: known and unknown keys, any values.
    fn config_like() -> impl Strategy<Value = String> {
        let header = prop::sample::select(vec!["[run]", "[bus]", "[chronicle]", "[[bus]]", "[x]", ""]);
        let key = prop::sample::select(vec![
            "seed",
            "queue_len_max",
            "outbox_len_max",
            "frame_records_max",
            "frame_bytes_max",
            "sed",
            "run.seed",
            "bus",
            "\"\"",
            "a.b",
        ]);
        let value = prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            (0_u32..70_000_000).prop_map(|v| v.to_string()),
            "[ -~]{0,12}",
            Just("{}".to_owned()),
            Just("[1, \"a\"]".to_owned()),
        ];
        prop::collection::vec((header, key, value), 0..12).prop_map(|lines| {
            lines.into_iter().map(|(header, key, value)| format!("{header}\n{key} = {value}\n")).collect()
        })
    }

    proptest! {
        #[test]
        fn any_text_is_survived(text in any::<String>()) {
            survives(&text);
        }

        #[test]
        fn any_config_like_text_is_survived(text in config_like()) {
            survives(&text);
        }
    }
}
