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

[meta]
tau = 0.9
g_min = 0.0
lambda_ci = 1.0
best_loss_windows = 20

[knobs.batch_size]
initial = 128.0
min = 8.0
max = 128.0
cooldown_windows = 0
kind = \"power_of_two\"

[knobs.learning_rate]
initial = 0.1
min = 0.00001
max = 10.0
cooldown_windows = 0
kind = \"real\"

[reward]
gain_weight = 0.5
stability_weight = 0.3
vram_weight = 0.1
latency_weight = 0.1
gain_scale = 0.2
latency_target_ms = 50.0
ci_window = 20
ci_level = 0.95

[[rules]]
name = \"exploding\"
signal = \"loss_change\"
comparison = \"gt\"
threshold = 0.5
for_windows = 1
cooldown_windows = 2

[rules.scale]
learning_rate = 0.25

[[rules]]
name = \"diverging\"
signal = \"loss_change\"
comparison = \"gt\"
threshold = 0.02
for_windows = 3
cooldown_windows = 3

[rules.scale]
learning_rate = 0.5

[[rules]]
name = \"accelerating\"
signal = \"loss_improvement\"
comparison = \"gt\"
threshold = 0.003
for_windows = 10
cooldown_windows = 1000000

[rules.scale]
learning_rate = 3.0

[[rules]]
name = \"plateau\"
signal = \"loss_improvement\"
comparison = \"lt\"
threshold = 0.0001
for_windows = 20
cooldown_windows = 20

[rules.scale]
learning_rate = 0.5

[[rules]]
name = \"memory_pressure\"
signal = \"vram_high\"
comparison = \"gt\"
threshold = 0.9
for_windows = 1
cooldown_windows = 2

[rules.scale]
batch_size = 0.5

[[rules]]
name = \"memory_recovered\"
signal = \"vram_high\"
comparison = \"lt\"
threshold = 0.45
for_windows = 20
cooldown_windows = 20

[rules.scale]
batch_size = 2.0

[safety]
reward_floor = -0.25
max_drop = 0.3
best_decay_per_window = 0.002
rollback_cooldown_windows = 10
vram_high_max = 0.9
vram_target = 0.8
batch_scale_min = 0.5

[domain]
min_observations = 5
emit_interval_windows = 5
decay = 0.99
ci_level = 0.95
confidence_half_width = 0.1

[aggregator]
outlier_z_max = 3.5
outlier_min_domains = 4
outlier_mad_floor = 0.05
temperature = 0.1
gamma_diversity = 0.3

[reptile]
lr = 0.1
memory_damping = 0.5
checkpoints_len = 8
rollback_drop = 0.3
best_decay_per_update = 0.01

[scheduler]
update_interval_windows = 10
latency_target_ms = 50.0
max_deferral_windows = 20

[validator]
packet_bytes_max = 65536
entries_max = 64
value_abs_max = 1000000000.0
jobs_max = 4096
domains_max = 256

[validator.ranges]
latency_ms = [0.0, 3600000.0]
stability_mean = [0.0, 1.0]
vram_high = [0.0, 1.0]

[storage]
versions_kept = 5
";

    /// Checked with `sha256sum` on `DEFAULT_TEXT`. If this changes, every
    /// recorded run's config hash changes with it: do it on purpose only.
    const DEFAULT_SHA256: &str = "3bd1f29da0c9ee9de3a609b448d76efe5c3583eb6912a9838dd336dd5bd09847";

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

/// The governance sections: knobs, reward, rules, safety and the
/// meta-learning components.
mod governance {
    use super::*;
    use metagov_config::{Comparison, KnobConfig, KnobKind, Signal, Threshold};
    use proptest::prelude::*;

    /// A `[knobs]` section defining just the required knobs.
    const KNOBS: &str = "\
[knobs.tau]
initial = 0.9
min = 0.5
max = 0.99
step = 0.01
[knobs.g_min]
initial = 0.01
min = 0
max = 0.5
step = 0.005
[knobs.lambda_ci]
initial = 0.5
min = 0.1
max = 2
step = 0.1
";

    #[test]
    fn the_defaults_govern_a_learning_rate_and_a_batch_size_with_six_rules() {
        let config = Config::default();
        let knobs: Vec<(&str, f64, f64, f64)> =
            config.knobs.iter().map(|(name, k)| (name.as_str(), k.initial, k.min, k.max)).collect();
        assert_eq!(knobs, [("batch_size", 128.0, 8.0, 128.0), ("learning_rate", 0.1, 1e-5, 10.0)]);
        let rules: Vec<&str> = config.rules.iter().map(|rule| rule.name.as_str()).collect();
        assert_eq!(rules, ["exploding", "diverging", "accelerating", "plateau", "memory_pressure", "memory_recovered"]);
        let meta = &config.meta;
        assert_eq!((meta.tau, meta.g_min, meta.lambda_ci, meta.best_loss_windows), (0.9, 0.0, 1.0, 20));
        assert_eq!(config.scheduler.update_interval_windows, 10);
        assert_eq!(config.scheduler.latency_target_ms, 50.0);
        assert_eq!(config.aggregator.outlier_z_max, 3.5);
        let learning = config.meta_learning();
        assert_eq!((learning.cross, learning.optimizer), (config.aggregator.clone(), config.reptile.clone()));
        assert_eq!(config.integrative().rules, config.rules);
    }

    #[test]
    fn a_rule_is_data() {
        let text = format!(
            "{KNOBS}[[rules]]\nname = \"slow\"\nsignal = \"latency_ms\"\ncomparison = \"ge\"\nthreshold = 80\n\
             for_windows = 2\nadjust = {{ tau = -0.01, g_min = 0.001 }}\ncooldown_windows = 3\n"
        );
        let config = read(&text);
        assert_eq!(config.knobs.len(), 3, "a [knobs] section replaces the default set");
        let [rule] = &config.rules[..] else { panic!("one rule: {:?}", config.rules) };
        assert_eq!((rule.signal, rule.comparison), (Signal::LatencyMs, Comparison::Ge));
        assert_eq!(rule.threshold, Threshold::Value(80.0));
        assert_eq!((rule.for_windows, rule.cooldown_windows), (2, 3));
        assert_eq!(rule.adjust.get("g_min"), Some(&0.001));
        assert_eq!(read(&config.canonical_toml()), config);
    }

    #[test]
    fn a_rule_naming_an_unknown_knob_is_placed_at_the_knob() {
        let text = "[[rules]]\nname = \"r\"\nsignal = \"reward\"\ncomparison = \"lt\"\nthreshold = 0\n\
                    adjust = { learning_rat = 0.1, batch_size = 8 }\n";
        assert_eq!(
            problems(text),
            ["gov.toml:6:27: rules[0].adjust.learning_rat: unknown knob `learning_rat`, did you mean `learning_rate`?"]
        );
        let scaled = "[[rules]]\nname = \"r\"\nsignal = \"reward\"\ncomparison = \"lt\"\nthreshold = 0\n\
                      scale = { batch_sise = 0.5 }\n";
        assert_eq!(
            problems(scaled),
            ["gov.toml:6:24: rules[0].scale.batch_sise: unknown knob `batch_sise`, did you mean `batch_size`?"]
        );
    }

    #[test]
    fn a_threshold_naming_an_unknown_knob_is_placed_at_the_threshold() {
        let text = "[[rules]]\nname = \"r\"\nsignal = \"loss\"\ncomparison = \"lt\"\nthreshold = \"learningrate\"\n\
                    scale = { learning_rate = 0.5 }\n";
        assert_eq!(
            problems(text),
            ["gov.toml:5:13: rules[0].threshold: unknown knob `learningrate`, did you mean `learning_rate`?"]
        );
        let text = "[[rules]]\nname = \"r\"\nsignal = \"loss\"\ncomparison = \"lt\"\nthreshold = \"x\"\n\
                    scale = { learning_rate = 0.5 }\n";
        assert_eq!(
            problems(text),
            ["gov.toml:5:13: rules[0].threshold: unknown knob `x`, expected one of `batch_size`, `learning_rate`"]
        );
    }

    #[test]
    fn an_unknown_signal_or_comparison_is_placed_with_a_suggestion() {
        // Unknown names are read as the first variant, so checking goes on.
        let text = "[[rules]]\nname = \"r\"\nsignal = \"reward_dleta\"\ncomparison = \"lte\"\nthreshold = true\n\
                    scale = { learning_rate = 0.5 }\n";
        assert_eq!(
            problems(text),
            [
                "gov.toml:3:10: rules[0].signal: unknown value `reward_dleta`, did you mean `reward_delta`?",
                "gov.toml:4:14: rules[0].comparison: unknown value `lte`, did you mean `lt`?",
                "gov.toml:5:13: rules[0].threshold: invalid type: boolean `true`, expected a number or a knob name",
            ]
        );
        assert_eq!(
            problems("[[rules]]\nsignal = 3\n"),
            [
                "gov.toml:1:1: rules[0]: missing field `name`",
                "gov.toml:2:10: rules[0].signal: expected one of `reward`, `ema_reward`, `reward_delta`, `gain_p50`, \
                 `stability_mean`, `latency_ms`, `loss`, `vram_high`, `ci_half_width`, `loss_improvement`, `loss_change`, found integer 3"
            ]
        );
    }

    #[test]
    fn rule_and_knob_rules_name_their_keys() {
        let text = format!(
            "{KNOBS}[knobs.extra]\ninitial = 3\nmin = 0\nmax = 1\nstep = 0\n\
             [[rules]]\nname = \"r\"\nsignal = \"reward\"\ncomparison = \"lt\"\nthreshold = 0\nfor_windows = 0\nadjust = {{}}\n\
             [[rules]]\nname = \"r\"\nsignal = \"reward\"\ncomparison = \"lt\"\nthreshold = 0\nadjust = {{ tau = 0 }}\n"
        );
        assert_eq!(
            problems(&text),
            [
                "gov.toml:17:11: knobs.extra.initial: 3 is out of range 0..=1",
                "gov.toml:20:8: knobs.extra.step: 0 is not a positive number at most 1000000000",
                "gov.toml:26:15: rules[0].for_windows: 0 is out of range 1..=1000000",
                "gov.toml:27:10: rules[0].adjust: a rule must adjust or scale a knob, or move a meta parameter",
                "gov.toml:29:8: rules[1].name: a rule named \"r\" comes earlier",
                "gov.toml:33:18: rules[1].adjust.tau: 0 is not a non-zero finite change",
            ]
        );
    }

    #[test]
    fn a_knob_kind_and_a_scale_are_checked() {
        let text = "[knobs.batch]\ninitial = 100\nmin = 8\nmax = 128\nkind = \"power_of_two\"\n\
                    [knobs.workers]\ninitial = 2.5\nmin = 1\nmax = 8\nkind = \"integer\"\n\
                    [[rules]]\nname = \"r\"\nsignal = \"loss\"\ncomparison = \"lt\"\nthreshold = 0\n\
                    scale = { batch = 1.0, workers = -2.0 }\n";
        assert_eq!(
            problems(text),
            [
                "gov.toml:2:11: knobs.batch.initial: 100 is not a power of two, as kind = PowerOfTwo needs",
                "gov.toml:7:11: knobs.workers.initial: 2.5 is not an integer, as kind = Integer needs",
                "gov.toml:16:19: rules[0].scale.batch: 1 is not a positive factor other than 1",
                "gov.toml:16:34: rules[0].scale.workers: -2 is not a positive factor other than 1",
            ]
        );
    }

    #[test]
    fn a_signal_name_is_its_config_spelling() {
        for signal in Signal::ALL {
            let text = toml::Value::try_from(signal).map(|v| v.as_str().map(str::to_owned));
            assert_eq!(text.ok().flatten().as_deref(), Some(signal.name()), "{signal:?}");
        }
    }

    #[test]
    fn a_meta_rule_names_a_meta_parameter() {
        let text = "[[rules]]\nname = \"r\"\nsignal = \"reward\"\ncomparison = \"lt\"\nthreshold = 0\n\
                    meta = { tua = 0.01, g_min = 0 }\n";
        assert_eq!(
            problems(text),
            [
                "gov.toml:6:16: rules[0].meta.tua: `tua` is not a meta parameter a rule can move, did you mean `tau`?",
                "gov.toml:6:30: rules[0].meta.g_min: 0 is not a non-zero finite change",
            ]
        );
    }

    #[test]
    fn the_fractions_the_reward_reads_stay_fractions() {
        let text = "[validator.ranges]\nstability_mean = [0.0, 2.0]\nvram_high = [0.0, 1.0]\nloss = [0.0, 50.0]\n";
        assert_eq!(
            problems(text),
            ["gov.toml:2:18: validator.ranges.stability_mean: [0, 2] is not within [0, 1]: the reward reads stability_mean as a fraction"]
        );
    }

    #[test]
    fn a_knob_fits_a_value_to_its_kind_and_bounds() {
        let knob = |kind| KnobConfig { initial: 16.0, min: 8.0, max: 128.0, step: None, cooldown_windows: 0, kind };
        assert_eq!(knob(KnobKind::PowerOfTwo).fit(90.0), 64.0, "log2(90) = 6.49 rounds to 6");
        assert_eq!(knob(KnobKind::PowerOfTwo).fit(91.0), 128.0, "log2(91) = 6.51 rounds to 7");
        assert_eq!(knob(KnobKind::PowerOfTwo).fit(1000.0), 128.0);
        assert_eq!(knob(KnobKind::Integer).fit(9.5), 10.0);
        assert_eq!(knob(KnobKind::Real).fit(9.5), 9.5);
        assert_eq!(knob(KnobKind::Real).fit(1.0), 8.0);
    }

    #[test]
    fn a_knob_needs_its_bounds_and_step() {
        let problems = problems("[knobs.tau]\ninitial = 0.9\nmin = 0.5\n");
        assert_eq!(problems, ["gov.toml:1:1: knobs.tau: missing field `max`"]);
    }

    /// A MAD floor of 0 is refused, placed and named like any range error;
    /// the smallest positive floor and 1 are accepted.
    #[test]
    fn the_mad_floor_is_positive() {
        let why = "is out of range (0, 1]: with no floor, a domain a hair from others that agree exactly is an outlier";
        for (value, shown) in [("0", "0"), ("0.0", "0"), ("-0.05", "-0.05"), ("1.5", "1.5"), ("nan", "NaN")] {
            assert_eq!(
                problems(&format!("[aggregator]\noutlier_mad_floor = {value}\n")),
                [format!("gov.toml:2:21: aggregator.outlier_mad_floor: {shown} {why}")],
                "{value}"
            );
        }
        for value in ["5e-324", "1"] {
            read(&format!("[aggregator]\noutlier_mad_floor = {value}\n"));
        }
    }

    #[test]
    fn every_new_section_places_its_problems() {
        let text = "\
[reward]
gain_weight = -1
ci_window = 1
[safety]
max_drop = nan
[domain]
decay = 2
[aggregator]
outlier_min_domains = 2
[reptile]
lr = 0
[scheduler]
update_interval_windows = 0
[validator]
value_abs_max = 1e13
ranges = { loss = [2.0, 1.0] }
[storage]
versions_kept = 0
";
        assert_eq!(
            problems(text),
            [
                "gov.toml:1:1: reward: the reward weights add up to -0.5, not a positive number",
                "gov.toml:2:15: reward.gain_weight: -1 is out of range 0..=100",
                "gov.toml:3:13: reward.ci_window: 1 is out of range 2..=4096",
                "gov.toml:5:12: safety.max_drop: NaN is not a positive number at most 1000000000",
                "gov.toml:7:9: domain.decay: 2 is out of range 0.5..=1",
                "gov.toml:9:23: aggregator.outlier_min_domains: 2 is out of range 3..=4096",
                "gov.toml:11:6: reptile.lr: 0 would never move the prior",
                "gov.toml:13:27: scheduler.update_interval_windows: 0 is out of range 1..=1000000",
                "gov.toml:15:17: validator.value_abs_max: 10000000000000 is out of range 1..=1000000000",
                "gov.toml:16:19: validator.ranges.loss: [2, 1] is not a range with min ≤ max within ±1000000000",
                "gov.toml:18:17: storage.versions_kept: 0 is out of range 1..=1000",
            ]
        );
    }

    prop_compose! {
        fn governed_config()(
            weights in prop::array::uniform4(0.0..=100.0_f64),
            threshold in -1e6..1e6_f64,
            for_windows in 1..=1_000_000_u32,
            delta in prop_oneof![-1.0..-1e-9_f64, 1e-9..1.0_f64],
            lr in 1e-9..=1.0_f64,
        ) -> Config {
            let mut config = Config::default();
            let [gain, stability, vram, latency] = weights;
            config.reward.gain_weight = gain + 1e-9;
            config.reward.stability_weight = stability;
            config.reward.vram_weight = vram;
            config.reward.latency_weight = latency;
            config.rules[0].threshold = Threshold::Value(threshold);
            config.rules[0].for_windows = for_windows;
            config.rules[0].adjust.insert("learning_rate".to_owned(), delta);
            config.reptile.lr = lr;
            config
        }
    }

    proptest! {
        #[test]
        fn a_governed_config_reads_back_from_its_text(config in governed_config()) {
            let text = config.canonical_toml();
            prop_assert_eq!(Config::from_toml_str(&text, "canonical").ok(), Some(config));
        }
    }
}

/// The commented default file `metagov config init` writes is the default.
#[test]
fn the_commented_default_file_is_the_default_config() {
    let parsed = metagov_config::Config::from_toml_str(metagov_config::DEFAULT_TOML, "default.toml").unwrap();
    assert_eq!(parsed, metagov_config::Config::default());
}

/// A file over the size limit is refused before it is parsed.
#[test]
fn an_oversized_file_is_refused_naming_the_limit() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("metagov-config-huge.toml");
    let mut text = String::from("[run]\nseed = 1\n");
    text.push_str(&"# padding\n".repeat((metagov_config::CONFIG_BYTES_MAX / 10 + 1) as usize));
    std::fs::write(&path, text).unwrap();
    let err = metagov_config::Config::load(&path).unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("metagov-config-huge.toml") && chain.contains("config_bytes_max"), "{chain}");
    std::fs::remove_file(&path).unwrap();
}

/// Hostile files found by an adversarial pass (issue 9, items 8, 10, 11, 13)
/// and the bus's value range.
mod hardening {
    use super::*;
    use std::path::{Path, PathBuf};

    fn temp(name: &str) -> PathBuf {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
    }

    /// The error and its source, as `config check` prints them.
    fn chain(error: &ConfigError) -> String {
        match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        }
    }

    #[test]
    fn an_array_of_the_wrong_length_is_placed_not_cut() {
        let text = "[validator.ranges]\nloss = [0.0, 1.0, \"junk\", {a = 1}, [[[]]]]\n";
        assert_eq!(problems(text), ["gov.toml:2:8: validator.ranges.loss: expected an array of 2 elements, found 5"]);
        let short = "[validator.ranges]\nloss = [0.5]\n";
        assert_eq!(problems(short), ["gov.toml:2:8: validator.ranges.loss: expected an array of 2 elements, found 1"]);
    }

    #[test]
    fn every_real_bound_fits_the_bus_fixed_point_range() {
        assert_eq!(metagov_config::VALUE_ABS_MAX, 1e9);
        let knob = "[knobs.learning_rate]\ninitial = 1\nmin = 0\nmax = 5e9\nstep = 1\n\
                    [knobs.batch_size]\ninitial = 8\nmin = 8\nmax = 128\n";
        assert_eq!(
            problems(knob),
            ["gov.toml:4:7: knobs.learning_rate.max: 5000000000 is out of range 0..=1000000000"]
        );
        let others = "[validator]\nvalue_abs_max = 2e9\n[validator.ranges]\nloss = [0.0, 3e9]\n\
                      [reward]\ngain_scale = 1e10\n";
        let found = problems(others);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("gov.toml:2:17: validator.value_abs_max: 2000000000 is out of range"),
            "{found:?}"
        );
        assert!(found[1].starts_with("gov.toml:4:8: validator.ranges.loss:"), "{found:?}");
        assert!(found[2].starts_with("gov.toml:6:14: reward.gain_scale:"), "{found:?}");
    }

    #[test]
    fn a_flood_of_problems_is_capped_and_long_names_are_cut() {
        let text: String = (0..1000).map(|i| format!("unknown_{i} = 1\n")).collect();
        let error = Config::from_toml_str(&text, "gov.toml").expect_err("unknown keys");
        let shown = error.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 51, "{shown}");
        assert_eq!(lines[50], "… and 950 more problems");

        let name = "k".repeat(900_000);
        let text = format!("[knobs.{name}]\ninitial = 1\nmin = 0\nmax = 1\nstep = 1\n");
        let shown = Config::from_toml_str(&text, "gov.toml").expect_err("a long name").to_string();
        assert!(shown.lines().all(|line| line.chars().count() < 400), "{} bytes shown", shown.len());
        assert!(shown.contains("knobs.kkkk") && shown.contains('…'), "{}", &shown[..200]);
    }

    #[test]
    fn an_oversized_file_cut_inside_a_character_is_still_the_size_error() {
        let path = temp("metagov-config-huge-utf8.toml");
        let mut text = String::from("##");
        text.push_str(&"é".repeat(600_000));
        std::fs::write(&path, text).expect("write the test file");
        let shown = chain(&Config::load(&path).expect_err("too large"));
        assert!(shown.contains("config_bytes_max"), "{shown}");
        std::fs::remove_file(&path).expect("remove the test file");
    }

    #[test]
    fn invalid_utf8_is_reported_with_its_byte_offset() {
        let path = temp("metagov-config-latin1.toml");
        std::fs::write(&path, b"[run]\nseed = 1 # caf\xe9\n").expect("write the test file");
        let shown = chain(&Config::load(&path).expect_err("not UTF-8"));
        assert!(shown.contains("not UTF-8") && shown.contains("byte 20"), "{shown}");
        std::fs::remove_file(&path).expect("remove the test file");
    }

    #[test]
    fn a_fifo_or_a_directory_is_refused_without_blocking() {
        let fifo = temp("metagov-config.fifo");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
        assert!(made.success());
        // With no writer, opening the FIFO for reading would block forever.
        let shown = chain(&Config::load(&fifo).expect_err("a FIFO"));
        assert!(shown.contains("not a regular file"), "{shown}");
        std::fs::remove_file(&fifo).expect("remove the FIFO");

        let shown = chain(&Config::load(Path::new(env!("CARGO_TARGET_TMPDIR"))).expect_err("a directory"));
        assert!(shown.contains("not a regular file"), "{shown}");
    }
}
