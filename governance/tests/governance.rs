//! The governance components at their boundary: worked examples with the default config, the
//! rule engine's worked example from docs/governance.md, and properties.

use std::collections::BTreeMap;

use metagov_config::Config;
use metagov_governance::*;
use ndarray::{array, Array1};
use serde_json::json;

/// An admitted packet of `job` at `window` with the given metrics.
fn packet(job: &str, window: u64, metrics: &[(&str, f64)]) -> TelemetryPacket {
    TelemetryPacket {
        job: job.to_owned(),
        domain: "nlp".to_owned(),
        window,
        phase: Some("train".to_owned()),
        metrics: metrics.iter().map(|&(name, value)| (name.to_owned(), value)).collect(),
        params: BTreeMap::new(),
    }
}

/// The four-knob config the rule-engine examples are written against
/// (tests/data/four-knobs.toml): additive knobs with steps and bounds.
fn four_knobs() -> Config {
    config(include_str!("data/four-knobs.toml"))
}

/// A config read from TOML, panicking with the problems.
fn config(text: &str) -> Config {
    Config::from_toml_str(text, "test.toml").unwrap_or_else(|error| panic!("{error}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// Worked examples with the default config (docs/governance.md).
mod seed_examples {
    use super::*;

    #[test]
    fn update_scores_the_seed_packet() {
        let mut layer = MetaIntegrativeLayer::new(four_knobs().integrative());
        let decision =
            layer.update(&packet("bert-a", 1, &[("gain_p50", 0.15), ("stability_mean", 0.8), ("vram_high", 0.0)]));
        // gain 0.5·clamp((0.15 − 0.01)/0.2) = 0.35; stability 0.3·(2·0.8 − 1) = 0.18.
        let scoring = decision.scoring;
        assert!(close(scoring.gain, 0.35) && close(scoring.stability, 0.18), "{scoring:?}");
        assert_eq!((scoring.vram, scoring.latency), (0.0, 0.0));
        assert!(close(scoring.total, 0.53));
        assert!(close(decision.ema_reward, 0.53), "the first window's reward starts the EMA");
        assert_eq!((decision.reward_delta, decision.ci_half_width), (None, None));
        assert!(decision.policy_updates.is_empty() && decision.fired_rules.is_empty());
        assert_eq!(decision.resource_hint, ResourceHint { batch_scale: 1.0, memory_high: false, latency_high: false });
        assert_eq!(decision.rollback, None);
        let state = layer.state("bert-a").expect("a state per job");
        assert_eq!((state.windows, state.decision_count, state.rollback_count), (1, 0, 0));
    }

    #[test]
    fn a_low_reward_rolls_the_reptile_prior_back() {
        let config = four_knobs();
        let mut optimizer = OnlineReptileOptimizer::new(config.reptile.clone(), &config.knobs);
        let initial = optimizer.prior().clone();
        assert!(!optimizer.should_rollback(0.3), "nothing to roll back to yet");
        let keys = optimizer.keys().to_vec();
        optimizer.apply(&array![0.02, 0.5, 1.0, 0.95], &keys, 0.85, false);
        assert!(optimizer.should_rollback(0.3));
        assert!(!optimizer.should_rollback(0.85));
        assert_eq!(optimizer.rollback(0.0), Some(&initial));
        assert_eq!(optimizer.rollback(0.0), None);
    }

    #[test]
    fn the_reptile_rule_is_theta_plus_epsilon_phi_minus_theta() {
        let config = four_knobs();
        let mut optimizer = OnlineReptileOptimizer::new(config.reptile.clone(), &config.knobs);
        let keys = ["g_min", "gamma_diversity", "lambda_ci", "tau"].map(str::to_owned);
        assert_eq!(optimizer.keys(), keys);
        let theta = optimizer.prior().clone();
        assert_eq!(theta, array![0.01, 0.3, 0.5, 0.9]);
        let phi = array![0.02, 0.5, 1.0, 0.95];
        // The highest reward the default weights give, 0.8, and no memory
        // pressure: ε = lr · (0.8 + 1)/2 = 0.09.
        let updated = optimizer.apply(&phi, &keys, 0.8, false).clone();
        let want = [0.01 + 0.09 * 0.01, 0.3 + 0.09 * 0.2, 0.5 + 0.09 * 0.5, 0.9 + 0.09 * 0.05];
        for (got, want) in updated.iter().zip(want) {
            assert!(close(*got, want), "{updated} vs θ + 0.09(φ − θ)");
        }
        // reward 0: ε = 0.1·0.5; memory pressure halves it again.
        assert!(close(optimizer.step_size(0.0, false), 0.05) && close(optimizer.step_size(0.0, true), 0.025));
        let before = optimizer.prior().clone();
        let after = optimizer.apply(&phi, &keys, 0.0, true).clone();
        let expected = &before + &((&phi - &before) * 0.025);
        assert!(after.iter().zip(&expected).all(|(a, b)| close(*a, *b)), "{after} vs {expected}");
    }

    #[test]
    fn the_validator_rejects_wrong_dimensions_nan_and_inf() {
        let validator = MetaPacketValidator::new(MetaValidatorConfig::default());
        let config = four_knobs();
        let keys: Vec<String> = config.knobs.keys().cloned().collect();
        let bounds = UpdateBounds::new(&config.knobs, &config.reward);
        let good = DomainMetaUpdate {
            domain_id: "healthcare".to_owned(),
            keys: keys.clone(),
            vector: array![0.01, 0.3, 0.5, 0.91],
            reward: 0.4,
            confidence: 0.9,
            window: 7,
            observations: 5,
        };
        assert_eq!(validator.validate_update(&good, &bounds), Ok(()));
        let reason = |change: fn(&mut DomainMetaUpdate)| {
            let mut update = good.clone();
            change(&mut update);
            validator.validate_update(&update, &bounds).expect_err("rejected").reason
        };
        assert_eq!(reason(|u| u.vector = array![0.01, 0.3, 0.5]), ReasonCode::WrongDimension);
        assert_eq!(reason(|u| u.vector[1] = f64::NAN), ReasonCode::NonFinite);
        assert_eq!(reason(|u| u.vector[3] = f64::INFINITY), ReasonCode::NonFinite);
        assert_eq!(reason(|u| u.reward = f64::NEG_INFINITY), ReasonCode::NonFinite);
        assert_eq!(reason(|u| u.confidence = 1.5), ReasonCode::OutOfRange);
        assert_eq!(reason(|u| u.keys[0] = "gmin".to_owned()), ReasonCode::KeysMismatch);
        assert_eq!(reason(|u| u.domain_id = "a b".to_owned()), ReasonCode::BadId);
        let nan = {
            let mut update = good.clone();
            update.vector[1] = f64::NAN;
            validator.validate_update(&update, &bounds).expect_err("rejected")
        };
        assert_eq!(nan.to_string(), "non_finite: vector.gamma_diversity: NaN");
    }

    /// A federation pack's reward must be one the config's weights can give,
    /// [−(0.5 + 0.3 + 0.1 + 0.1), 0.5 + 0.3] = [−1, 0.8] by default, and each
    /// value must lie in its knob's [min, max]: a reward of 1e6 with values
    /// of ±1e9 (within `value_abs_max`) was admitted and took 0.92 of the
    /// aggregate's weight.
    #[test]
    fn the_validator_holds_updates_to_the_reward_range_and_the_knob_ranges() {
        let validator = MetaPacketValidator::new(MetaValidatorConfig::default());
        let config = four_knobs();
        let bounds = UpdateBounds::new(&config.knobs, &config.reward);
        assert_eq!(bounds.reward, [-1.0, 0.8]);
        assert_eq!(bounds.knobs["tau"], [0.5, 0.999]);
        let good = DomainMetaUpdate {
            domain_id: "peer".to_owned(),
            keys: config.knobs.keys().cloned().collect(),
            vector: array![0.01, 0.3, 0.5, 0.9],
            reward: 0.4,
            confidence: 0.9,
            window: 7,
            observations: 5,
        };
        let check = |change: &dyn Fn(&mut DomainMetaUpdate)| {
            let mut update = good.clone();
            change(&mut update);
            validator.validate_update(&update, &bounds).map_err(|rejection| rejection.to_string())
        };
        // The bounds themselves are admitted (keys: g_min, gamma_diversity, lambda_ci, tau).
        assert_eq!(check(&|u| u.reward = -1.0), Ok(()));
        assert_eq!(check(&|u| u.reward = 0.8), Ok(()));
        assert_eq!(check(&|u| u.vector = array![0.0, 1.0, 0.1, 0.999]), Ok(()));
        assert_eq!(check(&|u| u.vector = array![0.5, 0.0, 2.0, 0.5]), Ok(()));
        assert_eq!(check(&|u| u.reward = 1e6), Err("out_of_range: reward: 1000000 is out of range -1..=0.8".into()));
        assert_eq!(
            check(&|u| u.reward = -1.000001),
            Err("out_of_range: reward: -1.000001 is out of range -1..=0.8".into())
        );
        assert_eq!(
            check(&|u| u.vector = array![1e9, -1e9, 1e9, -1e9]),
            Err("out_of_range: vector.g_min: 1000000000 is out of range 0..=0.5".into())
        );
        assert_eq!(
            check(&|u| u.vector[3] = 0.999001),
            Err("out_of_range: vector.tau: 0.999001 is out of range 0.5..=0.999".into())
        );
        assert_eq!(
            check(&|u| u.vector[2] = 0.0999),
            Err("out_of_range: vector.lambda_ci: 0.0999 is out of range 0.1..=2".into())
        );
        // The reward range follows the weights.
        let reward = RewardConfig {
            gain_weight: 2.0,
            stability_weight: 0.0,
            vram_weight: 0.5,
            latency_weight: 0.25,
            ..config.reward.clone()
        };
        assert_eq!(UpdateBounds::new(&config.knobs, &reward).reward, [-2.75, 2.0]);
    }
}

/// Telemetry admission (docs/scenarios.md, "The packets").
mod validator {
    use super::*;

    const LINE: &str = r#"{"job": "bert-a", "domain": "nlp", "window": 1042, "phase": "train",
 "metrics": {"gain_p50": 0.15, "stability_mean": 0.8, "vram_high": false, "latency_ms": 31.0, "loss": 2.31},
 "params": {"tau": 0.9, "gamma_diversity": 0.3, "g_min": 0.01}}"#;

    fn validator() -> MetaPacketValidator {
        MetaPacketValidator::new(MetaValidatorConfig::default())
    }

    #[test]
    fn the_design_packet_is_admitted() {
        let packet = validator().validate_telemetry_line(LINE).expect("admitted");
        assert_eq!((packet.job.as_str(), packet.domain.as_str(), packet.window), ("bert-a", "nlp", 1042));
        assert_eq!(packet.phase.as_deref(), Some("train"));
        assert_eq!(packet.metric("vram_high"), Some(0.0));
        assert_eq!(packet.metric("loss"), Some(2.31), "unknown metrics are kept");
        assert_eq!(packet.params.len(), 3);
    }

    #[test]
    fn a_window_is_admitted_once_per_job() {
        let mut validator = validator();
        let at = |window: u64, job: &str| json!({"job": job, "domain": "nlp", "window": window, "metrics": {"gain_p50": 0.1, "stability_mean": 0.5}});
        assert!(validator.validate_telemetry(&at(5, "a")).is_ok());
        let stale = validator.validate_telemetry(&at(5, "a")).expect_err("a duplicate");
        assert_eq!(stale.to_string(), "stale_window: window: 5 is not after 5, job a's last");
        assert_eq!(validator.validate_telemetry(&at(4, "a")).expect_err("older").reason, ReasonCode::StaleWindow);
        assert!(validator.validate_telemetry(&at(1, "b")).is_ok(), "windows are per job");
        assert!(validator.validate_telemetry(&at(6, "a")).is_ok());
        assert_eq!(validator.last_window("a"), Some(6));
    }

    #[test]
    fn every_reason_code_has_its_case() {
        let base = json!({"job": "j", "domain": "d", "window": 1, "metrics": {"gain_p50": 0.1, "stability_mean": 0.5}});
        let with = |pointer: &str, value: serde_json::Value| {
            let mut packet = base.clone();
            let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
            packet
                .pointer_mut(parent)
                .expect("a parent")
                .as_object_mut()
                .expect("an object")
                .insert(key.to_owned(), value);
            packet
        };
        let cases = [
            (json!([1]), "wrong_type: packet: expected an object, found an array"),
            (with("/extra", json!(1)), "unknown_field: \"extra\": not a packet field"),
            (json!({"domain": "d"}), "missing_field: job"),
            (with("/job", json!("a b")), "bad_id: job: \"a b\" is not 1–128 of [A-Za-z0-9._-]"),
            (
                with("/job", json!("x".repeat(129))),
                "bad_id: job: \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"… is not 1–128 of [A-Za-z0-9._-]",
            ),
            (with("/domain", json!(3)), "wrong_type: domain: expected a string, found number 3"),
            (with("/window", json!(-1)), "out_of_range: window: -1 is negative"),
            (with("/window", json!(1.5)), "wrong_type: window: expected an integer, found number 1.5"),
            (
                with("/metrics/stability_mean", json!(1.5)),
                "out_of_range: metrics.stability_mean: 1.5 is out of range 0..=1",
            ),
            (
                with("/metrics/loss", json!(1e10)),
                "out_of_range: metrics.loss: |10000000000| exceeds value_abs_max 1000000000",
            ),
            (
                with("/metrics/loss", json!("high")),
                "wrong_type: metrics.loss: expected a number or a boolean, found string \"high\"",
            ),
            (with("/metrics/bad name", json!(1)), "bad_id: metrics: name \"bad name\" is not 1–64 of [A-Za-z0-9._-]"),
            (
                json!({"job": "j", "domain": "d", "window": 1, "metrics": {"gain_p50": 0.1}}),
                "missing_field: metrics.stability_mean",
            ),
            (with("/params", json!([])), "wrong_type: params: expected an object, found an array"),
        ];
        for (value, expected) in cases {
            let rejection = validator().validate_telemetry(&value).expect_err(expected);
            assert_eq!(rejection.to_string(), expected);
        }
        let many: serde_json::Map<String, serde_json::Value> = (0..65).map(|i| (format!("m{i}"), json!(i))).collect();
        let rejection = validator().validate_telemetry(&with("/params", many.into())).expect_err("too many");
        assert_eq!(rejection.to_string(), "too_many_entries: params: 65 entries, at most 64");
    }

    #[test]
    fn a_line_with_nan_or_infinity_is_non_finite_not_malformed() {
        let mut validator = validator();
        let line = r#"{"job": "j", "domain": "d", "window": 1, "metrics": {"gain_p50": NaN, "stability_mean": 0.5}}"#;
        assert_eq!(
            validator.validate_telemetry_line(line).expect_err("NaN").to_string(),
            "non_finite: NaN at column 66"
        );
        let line = line.replace("NaN", "-Infinity");
        assert_eq!(validator.validate_telemetry_line(&line).expect_err("-Inf").reason, ReasonCode::NonFinite);
        let line = line.replace("-Infinity", "Infinity");
        assert_eq!(validator.validate_telemetry_line(&line).expect_err("Inf").reason, ReasonCode::NonFinite);
        assert_eq!(validator.validate_telemetry_line("{\"job\": ").expect_err("cut").reason, ReasonCode::MalformedJson);
        let long = " ".repeat(70_000);
        assert_eq!(
            validator.validate_telemetry_line(&long).expect_err("long").to_string(),
            "packet_too_large: 70000 bytes, at most 65536"
        );
    }

    #[test]
    fn jobs_and_domains_are_limited() {
        let config = MetaValidatorConfig { jobs_max: 2, domains_max: 1, ..MetaValidatorConfig::default() };
        let mut validator = MetaPacketValidator::new(config);
        let at = |job: &str, domain: &str| json!({"job": job, "domain": domain, "window": 1, "metrics": {"gain_p50": 0.1, "stability_mean": 0.5}});
        assert!(validator.validate_telemetry(&at("a", "d")).is_ok());
        let other_domain = validator.validate_telemetry(&at("b", "e")).expect_err("a second domain");
        assert_eq!(other_domain.to_string(), "limit_reached: domain e: 1 domains (domains_max) already seen");
        assert!(validator.validate_telemetry(&at("b", "d")).is_ok());
        assert_eq!(
            validator.validate_telemetry(&at("c", "d")).expect_err("a third job").reason,
            ReasonCode::LimitReached
        );
    }

    #[test]
    fn a_number_no_float_holds_is_out_of_range_not_malformed() {
        let mut validator = MetaPacketValidator::new(MetaValidatorConfig::default());
        let line = r#"{"job": "a", "domain": "d", "window": 1, "metrics": {"gain_p50": 1e999, "stability_mean": 0.5}}"#;
        let rejection = validator.validate_telemetry_line(line).unwrap_err();
        assert_eq!(rejection.reason, ReasonCode::OutOfRange, "{rejection:?}");
        assert!(rejection.detail.contains("column"), "{rejection:?}");
    }

    #[test]
    fn a_key_named_twice_in_one_object_is_rejected() {
        let mut validator = MetaPacketValidator::new(MetaValidatorConfig::default());
        let nested = r#"{"job": "a", "domain": "d", "window": 1, "metrics": {"gain_p50": 0.1, "gain_p50": 0.9, "stability_mean": 0.5}}"#;
        let top = r#"{"job": "a", "job": "b", "domain": "d", "window": 1, "metrics": {"gain_p50": 0.1, "stability_mean": 0.5}}"#;
        for line in [nested, top] {
            let rejection = validator.validate_telemetry_line(line).expect_err(line);
            assert_eq!(rejection.reason, ReasonCode::DuplicateKey, "{line}");
        }
        assert!(validator.validate_telemetry_line(nested).unwrap_err().detail.contains("gain_p50"));
        assert_eq!(validator.last_window("a"), None, "a rejected packet moves no window");
        let fine = r#"{"job": "a", "domain": "d", "window": 1, "metrics": {"gain_p50": 0.1, "stability_mean": 0.5}, "params": {"gain_p50": 1}}"#;
        assert!(validator.validate_telemetry_line(fine).is_ok(), "the same key in two objects is fine");
    }

    #[test]
    fn reason_codes_have_stable_distinct_names() {
        let names: Vec<&str> = ReasonCode::ALL.iter().map(|code| code.name()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert!(names.iter().all(|name| name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }
}

/// The rule engine, safety checks and resource hints.
mod integrative {
    use super::*;

    /// The worked example of docs/governance.md, "A rule with patience and
    /// cooldown": keep the table here and there identical.
    #[test]
    fn the_worked_example_of_patience_and_cooldown() {
        let config = config(
            "[knobs.tau]\ninitial = 0.9\nmin = 0.5\nmax = 0.999\nstep = 0.01\n\
             [[rules]]\nname = \"unstable\"\nsignal = \"stability_mean\"\ncomparison = \"lt\"\nthreshold = 0.5\n\
             for_windows = 3\nadjust = { tau = 0.01 }\ncooldown_windows = 4\n",
        );
        let mut layer = MetaIntegrativeLayer::new(config.integrative());
        // (window, stability_mean, streak after the window, fired, tau after the window)
        let table = [
            (1, 0.4, 1, false, 0.90),
            (2, 0.4, 2, false, 0.90),
            (3, 0.6, 0, false, 0.90),
            (4, 0.4, 1, false, 0.90),
            (5, 0.4, 2, false, 0.90),
            (6, 0.4, 0, true, 0.91),
            (7, 0.4, 1, false, 0.91),
            (8, 0.4, 2, false, 0.91),
            (9, 0.4, 3, false, 0.91),
            (10, 0.4, 4, false, 0.91),
            (11, 0.4, 0, true, 0.92),
            (12, 0.6, 0, false, 0.92),
            (13, 0.4, 1, false, 0.92),
            (14, 0.4, 2, false, 0.92),
            (15, 0.4, 3, false, 0.92),
            (16, 0.4, 0, true, 0.93),
        ];
        for (window, stability, streak, fired, tau) in table {
            let decision = layer.update(&packet("job", window, &[("gain_p50", 0.1), ("stability_mean", stability)]));
            let state = layer.state("job").expect("a state");
            assert_eq!(state.streaks["unstable"], streak, "streak at window {window}");
            assert_eq!(decision.fired_rules.len(), usize::from(fired), "fired at window {window}");
            assert!(close(state.knobs["tau"], tau), "tau at window {window}: {}", state.knobs["tau"]);
            if fired {
                let expected = FiredRule {
                    rule: "unstable".to_owned(),
                    signal: Signal::StabilityMean,
                    value: 0.4,
                    threshold: 0.5,
                };
                assert_eq!(decision.fired_rules, [expected]);
                assert_eq!(decision.policy_updates.keys().collect::<Vec<_>>(), ["tau"]);
            } else {
                assert!(decision.policy_updates.is_empty(), "window {window}: {:?}", decision.policy_updates);
            }
            assert_eq!(decision.rollback, None);
        }
        let state = layer.state("job").expect("a state");
        assert_eq!((state.decision_count, state.rule_cooldowns["unstable"]), (3, 20));
    }

    /// The default rules on a stalled job (loss stuck at 1): `plateau`
    /// (no new best by 1e-4 for 20 windows, cooldown 20) fires at window 21
    /// — window 1 has no best to compare with — and again at 42, halving
    /// the learning rate each time; `exploding`, `diverging` and
    /// `accelerating` never fire on a flat loss.
    #[test]
    fn the_default_rules_halve_a_stalled_learning_rate() {
        let mut layer = MetaIntegrativeLayer::new(IntegrativeMetaConfig::default());
        let metrics = [("gain_p50", 0.0), ("stability_mean", 0.8), ("loss", 1.0)];
        let mut cuts = Vec::new();
        for window in 1..=42 {
            let decision = layer.update(&packet("job", window, &metrics));
            if let Some(&lr) = decision.policy_updates.get("learning_rate") {
                let rules: Vec<String> = decision.fired_rules.into_iter().map(|f| f.rule).collect();
                cuts.push((window, lr, rules));
            }
        }
        let plateau = || vec!["plateau".to_owned()];
        assert_eq!(cuts, [(21, 0.05, plateau()), (42, 0.025, plateau())]);
    }

    #[test]
    fn a_default_run_governs_a_plateau() {
        let mut layer = MetaIntegrativeLayer::new(four_knobs().integrative());
        let metrics = [("gain_p50", 0.0), ("stability_mean", 0.8)];
        let fired: Vec<(u64, Vec<String>)> = (1..=21)
            .map(|window| (window, layer.update(&packet("job", window, &metrics))))
            .filter(|(_, decision)| !decision.fired_rules.is_empty())
            .map(|(window, decision)| (window, decision.fired_rules.into_iter().map(|f| f.rule).collect()))
            .collect();
        // Gain stuck at 0: `gain_below_min` (5 windows, cooldown 10) fires
        // at 5 and 16, lowering g_min to 0, after which 0 < 0 no longer
        // holds; `plateau` (gain < 0.02 for 10 windows, cooldown 10) fires
        // at 10 and again at 21.
        let names = |rule: &str| vec![rule.to_owned()];
        assert_eq!(
            fired,
            [
                (5, names("gain_below_min")),
                (10, names("plateau")),
                (16, names("gain_below_min")),
                (21, names("plateau"))
            ]
        );
        let knobs = &layer.state("job").expect("a state").knobs;
        assert!(close(knobs["gamma_diversity"], 0.4) && close(knobs["g_min"], 0.0), "{knobs:?}");
    }

    #[test]
    fn a_threshold_may_be_a_knob_and_changes_obey_step_bounds_and_knob_cooldown() {
        let config = config(
            "[knobs.tau]\ninitial = 0.9\nmin = 0.5\nmax = 0.99\nstep = 0.01\n\
             [knobs.g_min]\ninitial = 0.02\nmin = 0.0\nmax = 0.5\nstep = 0.005\ncooldown_windows = 2\n\
             [knobs.lambda_ci]\ninitial = 0.5\nmin = 0.1\nmax = 2\nstep = 0.1\n\
             [[rules]]\nname = \"low\"\nsignal = \"gain_p50\"\ncomparison = \"lt\"\nthreshold = \"g_min\"\n\
             adjust = { g_min = -0.05, tau = 1 }\n",
        );
        let mut layer = MetaIntegrativeLayer::new(config.integrative());
        let metrics = [("gain_p50", 0.0), ("stability_mean", 0.9)];
        // g_min moves by its step 0.005 (not −0.05), then rests 2 windows;
        // tau moves by its step 0.01 (not 1) every window.
        // (window, threshold seen = g_min before the window, g_min after, tau after, g_min blocked)
        let table = [
            (1, 0.02, 0.015, 0.91, false),
            (2, 0.015, 0.015, 0.92, true),
            (3, 0.015, 0.015, 0.93, true),
            (4, 0.015, 0.01, 0.94, false),
            (5, 0.01, 0.01, 0.95, true),
        ];
        for (window, threshold, g_min, tau, blocked) in table {
            let decision = layer.update(&packet("job", window, &metrics));
            assert!(close(decision.fired_rules[0].threshold, threshold), "window {window}: {:?}", decision.fired_rules);
            let knobs = &layer.state("job").expect("a state").knobs;
            assert!(close(knobs["g_min"], g_min) && close(knobs["tau"], tau), "window {window}: {knobs:?}");
            assert_eq!(decision.policy_updates.contains_key("g_min"), !blocked, "window {window}");
            let g_min_evidence = decision.evidence.knobs.iter().find(|k| k.knob == "g_min").expect("g_min moved");
            assert_eq!(g_min_evidence.cooldown_left > 0, blocked, "window {window}: {g_min_evidence:?}");
            assert!(g_min_evidence.step_limited && !g_min_evidence.fitted, "{g_min_evidence:?}");
        }
    }

    /// Knobs for the safety tests: a fast EMA and a narrow band.
    const SAFETY_KNOBS: &str = "\
[meta]
tau = 0.5
g_min = 0.01
lambda_ci = 0.1
[knobs.tau]
initial = 0.5
min = 0.5
max = 0.9
step = 0.01
[knobs.g_min]
initial = 0.01
min = 0.0
max = 0.5
step = 0.005
[knobs.lambda_ci]
initial = 0.1
min = 0.1
max = 2
step = 0.1
[[rules]]
name = \"push\"
signal = \"reward\"
comparison = \"ge\"
threshold = -10
adjust = { g_min = 0.005 }
";

    #[test]
    fn a_drop_from_the_best_rolls_back_to_the_last_good_knobs() {
        let mut layer = MetaIntegrativeLayer::new(config(SAFETY_KNOBS).integrative());
        let good = [("gain_p50", 0.3), ("stability_mean", 0.9)];
        let bad = [("gain_p50", -0.5), ("stability_mean", 0.0)];
        let w1 = layer.update(&packet("job", 1, &good));
        let w2 = layer.update(&packet("job", 2, &good));
        assert_eq!((w1.policy_updates["g_min"], w2.policy_updates["g_min"]), (0.015, 0.02));
        // Window 3: ema = 0.5·0.74 + 0.5·(−0.8) = −0.03, 0.77 below the best.
        let w3 = layer.update(&packet("job", 3, &bad));
        assert_eq!(w3.rollback, Some(RollbackReason::DropFromBest));
        assert_eq!(w3.policy_updates, BTreeMap::from([("g_min".to_owned(), 0.015)]), "the knobs of window 2's best");
        assert!(w3.fired_rules.is_empty());
        let state = layer.state("job").expect("a state");
        assert_eq!((state.rollback_count, state.rollback_cooldown), (1, 13));
        // During the rollback cooldown the rules run again and no check does.
        let w4 = layer.update(&packet("job", 4, &bad));
        assert_eq!((w4.rollback, w4.fired_rules.len()), (None, 1));
    }

    #[test]
    fn an_ema_below_the_floor_rolls_back() {
        // Only the floor, not the drop, can trigger here.
        let text = format!("{SAFETY_KNOBS}[safety]\nmax_drop = 10.0\n");
        let mut layer = MetaIntegrativeLayer::new(config(&text).integrative());
        let good = [("gain_p50", 0.3), ("stability_mean", 0.9)];
        let bad = [("gain_p50", -0.5), ("stability_mean", 0.0)];
        // Window 1 (ema 0.74) snapshots g_min 0.01, then `push` moves it.
        assert_eq!(layer.update(&packet("job", 1, &good)).rollback, None);
        // Window 2: ema −0.03, above the floor of −0.25; `push` moves again.
        assert_eq!(layer.update(&packet("job", 2, &bad)).rollback, None);
        // Window 3: ema −0.415 < −0.25, and the job was above the floor at
        // the last change: that change's doing, rolled back to window 1's knobs.
        let w3 = layer.update(&packet("job", 3, &bad));
        assert_eq!(w3.rollback, Some(RollbackReason::BelowFloor));
        assert_eq!(w3.policy_updates, BTreeMap::from([("g_min".to_owned(), 0.01)]));
    }

    #[test]
    fn a_fall_below_the_floor_that_began_before_a_change_is_not_rolled_back() {
        // The job is already below the floor when `push` first moves g_min:
        // the change did not cause the fall, so nothing is undone.
        let mut layer = MetaIntegrativeLayer::new(config(SAFETY_KNOBS).integrative());
        let bad = [("gain_p50", -0.5), ("stability_mean", 0.0)];
        for window in 1..=5 {
            let decision = layer.update(&packet("job", window, &bad));
            assert_eq!(decision.rollback, None, "window {window}");
        }
    }

    #[test]
    fn one_incident_is_rolled_back_once() {
        let text = format!("{SAFETY_KNOBS}[safety]\nmax_drop = 10.0\nrollback_cooldown_windows = 0\n");
        let mut layer = MetaIntegrativeLayer::new(config(&text).integrative());
        let good = [("gain_p50", 0.3), ("stability_mean", 0.9)];
        let bad = [("gain_p50", -0.5), ("stability_mean", 0.0)];
        layer.update(&packet("job", 1, &good));
        layer.update(&packet("job", 2, &bad));
        let rollbacks: Vec<u64> =
            (3..=12).filter(|&window| layer.update(&packet("job", window, &bad)).rollback.is_some()).collect();
        assert_eq!(rollbacks, [3], "the reward stays below the floor: one incident, one rollback");
    }

    /// A rule with `significant = true` compares the t-interval of the
    /// signal's recent mean with its threshold: a gain swinging between 0
    /// and 0.04 around a threshold of 0.02 fires the plain rule at every
    /// low window and the significant one never; a gain that settles near
    /// 0.005 fires both.
    #[test]
    fn a_significant_rule_ignores_noise_around_its_threshold() {
        let rule = |name: &str, significant: bool| {
            format!(
                "[[rules]]\nname = \"{name}\"\nsignal = \"gain_p50\"\ncomparison = \"lt\"\nthreshold = 0.02\n\
                 significant = {significant}\nadjust = {{ batch_size = -8 }}\n"
            )
        };
        let text = format!("{}{}", rule("plain", false), rule("banded", true));
        let mut layer = MetaIntegrativeLayer::new(config(&text).integrative());
        let mut fired: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for window in 1..=60 {
            let gain =
                if window <= 30 { [0.0, 0.04][(window % 2) as usize] } else { 0.005 + 0.0001 * (window % 3) as f64 };
            let decision = layer.update(&packet("job", window, &[("gain_p50", gain), ("stability_mean", 0.8)]));
            for f in decision.fired_rules {
                fired.entry(f.rule).or_default().push(window);
            }
        }
        let plain = &fired["plain"];
        assert!(plain.iter().filter(|&&w| w <= 30).count() == 15, "every low window: {plain:?}");
        let banded = fired.get("banded").cloned().unwrap_or_default();
        assert!(banded.iter().all(|&w| w > 30), "noise never fires the significant rule: {banded:?}");
        assert!(!banded.is_empty(), "a settled low gain does: {fired:?}");
    }

    /// A meta rule moves the job's own `tau`, which the next window's EMA
    /// then uses, within the range `[meta]` allows; other jobs keep theirs.
    #[test]
    fn a_meta_rule_moves_the_jobs_own_tau_and_the_ema_follows() {
        let text = "[[rules]]\nname = \"smooth\"\nsignal = \"stability_mean\"\ncomparison = \"lt\"\n\
                    threshold = 0.5\nmeta = { tau = 0.05 }\n";
        let mut layer = MetaIntegrativeLayer::new(config(text).integrative());
        let shaky = [("gain_p50", 0.1), ("stability_mean", 0.4)];
        let first = layer.update(&packet("job", 1, &shaky));
        let tau = first.meta_updates["tau"];
        assert!(close(tau, 0.95) && first.meta_updates.len() == 1, "{:?}", first.meta_updates);
        assert!(first.policy_updates.is_empty());
        let second = layer.update(&packet("job", 2, &shaky));
        let reward = second.scoring.total;
        assert!(close(second.ema_reward, tau * first.ema_reward + (1.0 - tau) * reward), "the EMA uses the moved tau");
        for window in 3..=5 {
            layer.update(&packet("job", window, &shaky));
        }
        assert_eq!(layer.state("job").unwrap().meta["tau"], 0.999, "kept within [meta]'s range");
        layer.update(&packet("other", 1, &[("gain_p50", 0.1), ("stability_mean", 0.9)]));
        assert_eq!(layer.state("other").unwrap().meta["tau"], 0.9);
    }

    #[test]
    fn loss_improvement_compares_with_the_best_recent_loss() {
        let text = "[meta]\nbest_loss_windows = 3\n[[rules]]\nname = \"stall\"\nsignal = \"loss_improvement\"\n\
                    comparison = \"lt\"\nthreshold = 0.0\nscale = { learning_rate = 0.5 }\n";
        let mut layer = MetaIntegrativeLayer::new(config(text).integrative());
        let losses = [1.0, 0.5, 0.9, 0.9, 0.9, 0.8];
        let fired: Vec<bool> = losses
            .iter()
            .zip(1..)
            .map(|(&loss, w)| {
                let metrics = [("gain_p50", 0.1), ("stability_mean", 0.9), ("loss", loss)];
                !layer.update(&packet("job", w, &metrics)).fired_rules.is_empty()
            })
            .collect();
        // Window 3..5 are worse than 0.5, which is remembered for 3 losses;
        // at window 6 the memory holds 0.9, 0.9, 0.9, so 0.8 is a new best.
        assert_eq!(fired, [false, false, true, true, true, false]);
    }

    #[test]
    fn resource_hints_follow_memory_and_latency() {
        let mut layer = MetaIntegrativeLayer::new(four_knobs().integrative());
        let base = [("gain_p50", 0.1), ("stability_mean", 0.8)];
        let hint = |layer: &mut MetaIntegrativeLayer, window, extra: &[(&str, f64)]| {
            let metrics: Vec<(&str, f64)> = base.iter().chain(extra).copied().collect();
            layer.update(&packet("job", window, &metrics)).resource_hint
        };
        // Memory pressure aims at vram_target: 0.8 of memory from 1.0.
        assert_eq!(hint(&mut layer, 1, &[("vram_high", 1.0)]).batch_scale, 0.8);
        let slow = hint(&mut layer, 2, &[("latency_ms", 62.5)]);
        assert_eq!((slow.batch_scale, slow.latency_high, slow.memory_high), (0.8, true, false));
        assert_eq!(hint(&mut layer, 3, &[("vram_high", 1.0), ("latency_ms", 100.0)]).batch_scale, 0.5);
        let decision =
            layer.update(&packet("job", 4, &[("gain_p50", 0.1), ("stability_mean", 0.8), ("latency_ms", 75.0)]));
        assert!(close(decision.scoring.latency, -0.05), "half-way to twice the target: {:?}", decision.scoring);
    }

    #[test]
    fn a_prior_sets_the_knobs_of_new_jobs_only() {
        let mut layer = MetaIntegrativeLayer::new(four_knobs().integrative());
        let metrics = [("gain_p50", 0.1), ("stability_mean", 0.8)];
        layer.update(&packet("old", 1, &metrics));
        layer.set_prior(&BTreeMap::from([("tau".to_owned(), 0.95), ("g_min".to_owned(), 9.0), ("x".to_owned(), 1.0)]));
        layer.update(&packet("new", 1, &metrics));
        let knobs = |job: &str| layer.state(job).expect("a state").knobs.clone();
        assert_eq!((knobs("old")["tau"], knobs("new")["tau"]), (0.9, 0.95));
        assert_eq!(knobs("new")["g_min"], 0.5, "clipped to the bounds");
        assert!(!knobs("new").contains_key("x"));
    }
}

/// The domain learner.
mod domain {
    use super::*;

    #[test]
    fn a_domain_reports_after_its_minimum_and_then_every_interval() {
        let config = four_knobs();
        let mut learner = DomainMetaLearner::new(config.domain.clone(), &config.integrative());
        let mut emitted = Vec::new();
        for window in 1..=15 {
            let mut packet = packet("job", window, &[("gain_p50", 0.1), ("stability_mean", 0.8)]);
            packet.domain = "healthcare".to_owned();
            packet.params = BTreeMap::from([("tau".to_owned(), 0.91)]);
            if let Some(update) = learner.observe(&packet) {
                emitted.push((update.window, update.observations));
                assert_eq!(update.keys, learner.keys());
                assert!(close(update.vector[3], 0.91), "tau learned: {}", update.vector);
                assert_eq!(update.vector[0], 0.01, "g_min not reported: its initial value");
                assert!(close(update.reward, 0.405));
                assert!(close(update.confidence, 1.0), "a constant reward: zero half-width");
            }
        }
        assert_eq!(emitted, [(5, 5), (10, 10), (15, 15)]);
    }

    #[test]
    fn high_reward_windows_weigh_more_and_noise_lowers_confidence() {
        let config = four_knobs();
        let mut learner = DomainMetaLearner::new(config.domain.clone(), &config.integrative());
        let mut last = None;
        for window in 1..=5 {
            let good = window % 2 == 1;
            let metrics = if good {
                [("gain_p50", 0.3), ("stability_mean", 1.0)]
            } else {
                [("gain_p50", -0.3), ("stability_mean", 0.0)]
            };
            let mut packet = packet("job", window, &metrics);
            packet.params = BTreeMap::from([("tau".to_owned(), if good { 0.95 } else { 0.6 })]);
            last = learner.observe(&packet);
        }
        let update = last.expect("an update at the fifth window");
        assert!(update.vector[3] > 0.9, "tau leans to the good windows' 0.95: {}", update.vector);
        assert!(update.confidence < 0.2, "{}", update.confidence);
    }
}

/// The cross-domain aggregator.
mod aggregator {
    use super::*;

    fn keys() -> Vec<String> {
        ["a", "b"].map(str::to_owned).to_vec()
    }

    fn update(domain: &str, vector: Array1<f64>, reward: f64, confidence: f64) -> DomainMetaUpdate {
        DomainMetaUpdate {
            domain_id: domain.to_owned(),
            keys: keys(),
            vector,
            reward,
            confidence,
            window: 1,
            observations: 5,
        }
    }

    #[test]
    fn an_outlier_domain_is_dropped_and_named() {
        let aggregator = CrossDomainMetaAggregator::new(CrossMetaConfig::default(), keys());
        let updates = [
            update("d1", array![1.0, 1.0], 0.5, 1.0),
            update("d2", array![1.1, 1.01], 0.5, 1.0),
            update("d3", array![0.9, 0.99], 0.5, 1.0),
            update("d4", array![1.0, 1.05], 0.5, 1.0),
            update("zz", array![50.0, 1.0], 0.5, 1.0),
        ];
        let result = aggregator.aggregate(&updates).expect("an aggregate");
        assert_eq!(result.meta.used, ["d1", "d2", "d3", "d4"]);
        assert_eq!(result.meta.dropped.len(), 1);
        assert_eq!(result.meta.dropped[0].domain_id, "zz");
        assert!(matches!(result.meta.dropped[0].reason, DropReason::Outlier { z } if z > 3.5));
        assert!(close(result.vector[0], 1.0) && close(result.vector[1], 1.0125), "{}", result.vector);
        assert_eq!((result.meta.beta, result.meta.weights), (0.0, vec![0.25; 4]));
    }

    /// Knobs `a` and `b`, each over [0, 1].
    fn unit_knobs() -> BTreeMap<String, KnobConfig> {
        keys()
            .into_iter()
            .map(|k| {
                let kind = metagov_config::KnobKind::Real;
                (k, KnobConfig { initial: 0.5, min: 0.0, max: 1.0, step: Some(0.1), cooldown_windows: 0, kind })
            })
            .collect()
    }

    /// Four domains that agree closely, one a little apart: without a floor
    /// the tiny MAD makes it an outlier; with the knob-range floor it is
    /// ordinary spread, while a far domain is still dropped.
    #[test]
    fn the_mad_floor_keeps_ordinary_spread_and_still_drops_outliers() {
        let knobs = unit_knobs();
        let spread = [
            update("d1", array![0.5000, 0.5], 0.5, 1.0),
            update("d2", array![0.5001, 0.5], 0.5, 1.0),
            update("d3", array![0.4999, 0.5], 0.5, 1.0),
            update("d4", array![0.5040, 0.5], 0.5, 1.0),
        ];
        let bare = CrossDomainMetaAggregator::new(CrossMetaConfig::default(), keys());
        let floored = bare.clone().with_knob_ranges(&knobs);
        let names = |a: &CrossDomainMetaAggregator, u: &[DomainMetaUpdate]| {
            a.aggregate(u).expect("an aggregate").meta.dropped.into_iter().map(|d| d.domain_id).collect::<Vec<_>>()
        };
        assert_eq!(names(&bare, &spread), ["d4"], "without a floor, 0.4 % of the range is an outlier");
        assert!(names(&floored, &spread).is_empty(), "with the default floor it is ordinary spread");
        let mut far = spread.to_vec();
        far[3].vector[0] = 0.9;
        assert_eq!(names(&floored, &far), ["d4"], "a domain 40 % of the range away is still dropped");
    }

    /// Four domains agree exactly and a fifth is far off, with no MAD floor
    /// (`outlier_mad_floor = 0`, which `config check` refuses): the MAD is
    /// 0, and the far domain is infinitely many MADs away, not unjudged.
    #[test]
    fn a_zero_mad_does_not_let_a_far_domain_keep_its_weight() {
        let config = CrossMetaConfig { outlier_mad_floor: 0.0, ..CrossMetaConfig::default() };
        let aggregator = CrossDomainMetaAggregator::new(config, keys()).with_knob_ranges(&unit_knobs());
        let mut updates: Vec<DomainMetaUpdate> =
            ["d1", "d2", "d3", "d4"].iter().map(|d| update(d, array![0.5, 0.5], 0.5, 1.0)).collect();
        updates.push(update("zz", array![0.99, 0.5], 0.9, 1.0));
        let result = aggregator.aggregate(&updates).expect("an aggregate");
        assert_eq!(result.meta.used, ["d1", "d2", "d3", "d4"]);
        let reasons: Vec<(&str, &DropReason)> =
            result.meta.dropped.iter().map(|d| (d.domain_id.as_str(), &d.reason)).collect();
        assert_eq!(reasons, [("zz", &DropReason::Outlier { z: 1e6 })], "z is reported capped at 1e6");
        assert_eq!(result.vector, array![0.5, 0.5]);
        // On a key where every domain agrees, nobody is an outlier.
        let same: Vec<DomainMetaUpdate> =
            ["d1", "d2", "d3", "d4", "d5"].iter().map(|d| update(d, array![0.5, 0.25], 0.5, 1.0)).collect();
        assert!(aggregator.aggregate(&same).expect("an aggregate").meta.dropped.is_empty());
    }

    /// A domain far beyond the others (a parameter of 1e9 reported against
    /// knobs near 1) has a robust z of about 1e10 relative to the floor; it
    /// is reported as 1e6, which the bus can carry (its reals stop at 1e9),
    /// and it is dropped all the same.
    #[test]
    fn a_huge_robust_z_is_capped_and_still_dropped() {
        let aggregator =
            CrossDomainMetaAggregator::new(CrossMetaConfig::default(), keys()).with_knob_ranges(&unit_knobs());
        let mut updates: Vec<DomainMetaUpdate> = ["d1", "d2", "d3"]
            .iter()
            .enumerate()
            .map(|(i, d)| update(d, array![0.5 + 0.01 * i as f64, 0.5], 0.5, 1.0))
            .collect();
        updates.push(update("zz", array![1e9, 0.5], 0.5, 1.0));
        let result = aggregator.aggregate(&updates).expect("an aggregate");
        assert_eq!(result.meta.dropped, [Dropped { domain_id: "zz".into(), reason: DropReason::Outlier { z: 1e6 } }]);
        assert!(close(result.vector[0], 0.51), "{}", result.vector);
    }

    /// Updates over the one key `a`, of domains d0, d1, … with these values.
    fn one_key(values: &[f64]) -> Vec<DomainMetaUpdate> {
        let one = |(i, &value): (usize, &f64)| DomainMetaUpdate {
            keys: vec!["a".to_owned()],
            ..update(&format!("d{i}"), array![value], 0.5, 1.0)
        };
        values.iter().enumerate().map(one).collect()
    }

    /// On one key the outlier test drops at most half the domains, and
    /// fewer than half when their count is odd or `outlier_z_max` ≥ 1.35:
    /// the lower half of the deviations have z ≤ 0.6745, and for an even
    /// count the next one has z ≤ 2 × 0.6745 = 1.349. Exhaustive over 3 to 6
    /// domains with values in {0, 1, 2, 4} (ties, hence MADs of 0, included)
    /// and no floor, which only lowers z; the bound is reached.
    #[test]
    fn one_key_drops_at_most_half_the_domains() {
        let values = [0.0, 1.0, 2.0, 4.0];
        let mut half_reached = 0;
        for z_max in [1.0, 1.3, 1.35, 3.5] {
            let config = CrossMetaConfig { outlier_z_max: z_max, outlier_min_domains: 3, ..CrossMetaConfig::default() };
            let aggregator = CrossDomainMetaAggregator::new(config, vec!["a".to_owned()]);
            for n in 3..=6_u32 {
                for combination in 0..4_usize.pow(n) {
                    let column: Vec<f64> = (0..n).map(|i| values[combination / 4_usize.pow(i) % 4]).collect();
                    let updates = one_key(&column);
                    let dropped = match aggregator.aggregate(&updates) {
                        Ok(result) => result.meta.dropped.len(),
                        Err(nothing) => nothing.dropped.len(),
                    };
                    let n = n as usize;
                    assert!(2 * dropped <= n, "{dropped} of {n} dropped: {updates:?}");
                    if n % 2 == 1 || z_max >= 1.35 {
                        assert!(2 * dropped < n, "{dropped} of {n} dropped at z_max {z_max}: {updates:?}");
                    }
                    half_reached += usize::from(2 * dropped == n);
                }
            }
        }
        assert!(half_reached > 0, "an even count with z_max below 1.349 can lose half");
        // The smallest such case: 0, 1, 1, 2 has MAD ½, and 0 and 2 have z = 1.349.
        let config = CrossMetaConfig { outlier_z_max: 1.0, ..CrossMetaConfig::default() };
        let aggregator = CrossDomainMetaAggregator::new(config, vec!["a".to_owned()]);
        let result = aggregator.aggregate(&one_key(&[0.0, 1.0, 1.0, 2.0])).expect("half is left");
        assert_eq!(result.meta.used, ["d1", "d2"]);
        let zs: Vec<f64> = result
            .meta
            .dropped
            .iter()
            .map(|d| match d.reason {
                DropReason::Outlier { z } => z,
                ref other => panic!("{other:?}"),
            })
            .collect();
        assert!(zs.iter().all(|z| (z - 1.349).abs() < 1e-12), "{zs:?}");
    }

    #[test]
    fn keys_are_aligned_and_a_domain_counts_once() {
        let aggregator =
            CrossDomainMetaAggregator::new(CrossMetaConfig::default(), vec!["b".to_owned(), "a".to_owned()]);
        let mut swapped = update("d1", array![2.0, 1.0], 0.5, 1.0);
        swapped.keys = vec!["b".to_owned(), "a".to_owned()];
        let mut foreign = update("d3", array![0.0, 0.0], 0.5, 1.0);
        foreign.keys = vec!["a".to_owned(), "c".to_owned()];
        let updates =
            [update("d2", array![9.0, 9.0], 0.5, 1.0), swapped, foreign, update("d2", array![1.0, 2.0], 0.5, 1.0)];
        let result = aggregator.aggregate(&updates).expect("an aggregate");
        assert_eq!(result.vector, array![1.0, 2.0]);
        assert_eq!(result.keys, keys());
        let dropped: Vec<(&str, &DropReason)> =
            result.meta.dropped.iter().map(|d| (d.domain_id.as_str(), &d.reason)).collect();
        assert_eq!(dropped, [("d2", &DropReason::Superseded), ("d3", &DropReason::KeysMismatch)]);
        assert_eq!(aggregator.aggregate(&[]), Err(NothingToAggregate { dropped: vec![] }));
    }

    /// Equal rewards: weights ∝ confidence, 1/3 and 2/3 (entropy 0.64 nats
    /// is above the target 0.3·ln 2), so the aggregate's confidence is
    /// 1/3·0.5 + 2/3·1 = 5/6.
    #[test]
    fn an_aggregates_confidence_is_the_weighted_mean_of_its_domains() {
        let aggregator = CrossDomainMetaAggregator::new(CrossMetaConfig::default(), keys());
        let updates = [update("d1", array![0.0, 0.0], 0.5, 0.5), update("d2", array![3.0, 3.0], 0.5, 1.0)];
        let result = aggregator.aggregate(&updates).expect("an aggregate");
        assert_eq!(result.meta.beta, 0.0);
        assert!(close(result.meta.weights[0], 1.0 / 3.0), "{:?}", result.meta.weights);
        assert!(close(result.confidence, 5.0 / 6.0), "{}", result.confidence);
        assert!(close(result.vector[0], 2.0), "{}", result.vector);
    }

    #[test]
    fn a_dominant_domain_is_balanced_toward_the_entropy_target() {
        let aggregator = CrossDomainMetaAggregator::new(CrossMetaConfig::default(), keys());
        let updates = [update("d1", array![0.0, 0.0], 1.0, 1.0), update("d2", array![1.0, 1.0], 0.0, 1.0)];
        let result = aggregator.aggregate(&updates).expect("an aggregate");
        // Softmax at temperature 0.1 puts ~1 − e^−10 on d1; β mixes in uniform.
        assert!(result.meta.beta > 0.0);
        assert!((result.meta.entropy - 0.3 * std::f64::consts::LN_2).abs() < 1e-9, "{:?}", result.meta);
        assert!(close(result.reward, result.meta.weights[0]));
    }
}

/// The scheduler, prior versioning and the metrics snapshot.
mod scheduling_and_storage {
    use super::*;

    #[test]
    fn an_update_is_due_every_interval_unless_latency_defers_it() {
        let mut scheduler = MetaScheduler::new(MetaSchedulerConfig::default());
        let fast = BTreeMap::from([("latency_ms".to_owned(), 50.0)]);
        let slow = BTreeMap::from([("latency_ms".to_owned(), 51.0)]);
        let due: Vec<u64> = (1..=20)
            .filter(|_| {
                scheduler.record_window();
                scheduler.should_update(&fast)
            })
            .collect();
        assert_eq!(due, [10, 20]);
        let due: Vec<u64> = (1..=35)
            .filter(|_| {
                scheduler.record_window();
                scheduler.should_update(&slow)
            })
            .collect();
        assert_eq!(due, [30], "deferred at most max_deferral_windows = 20");
        scheduler.record_window();
        assert!(!scheduler.should_update(&BTreeMap::new()));
        assert_eq!(scheduler.windows_since_update(), 6);
    }

    #[test]
    fn prior_versions_roundtrip_and_the_newest_that_holds_is_loaded() {
        let manager = MetaStorageManager::new(MetaStorageConfig::default());
        let prior = |version| StoredPrior {
            version,
            values: BTreeMap::from([("tau".to_owned(), 0.9 + 1e-7), ("g_min".to_owned(), -0.0)]),
        };
        let v2 = manager.encode(&prior(2));
        assert!(
            String::from_utf8_lossy(&v2).starts_with("metagov-prior 1\nversion 2\ng_min -0\ntau 0.9000001\ncrc64-xz ")
        );
        assert_eq!(manager.decode(&v2), Ok(prior(2)));
        let mut v3 = manager.encode(&prior(3));
        v3[20] ^= 1;
        let loaded = manager.newest_valid(&[(1, &manager.encode(&prior(1))), (3, &v3), (2, &v2)]);
        assert_eq!(loaded.prior, Some(prior(2)));
        assert_eq!(loaded.skipped.len(), 1);
        assert!(matches!(loaded.skipped[0], (3, PriorError::Checksum { .. })));
        let renamed = manager.newest_valid(&[(4, &v2)]);
        assert_eq!((renamed.prior, renamed.skipped), (None, vec![(4, PriorError::Version { stored: 4, inside: 2 })]));
        assert_eq!((manager.next_version(&[]), manager.next_version(&[3, 1, 7])), (1, 8));
        assert_eq!(manager.prune(&[1, 2, 3, 4, 5, 6, 7]), [1, 2]);
        assert!(manager.prune(&[1, 2]).is_empty());
    }

    #[test]
    fn the_prior_checksum_is_crc64_xz() {
        // The catalog check value of CRC-64/XZ is that of "123456789"; a
        // prior whose body is known pins the same function.
        let manager = MetaStorageManager::new(MetaStorageConfig::default());
        let bytes = manager.encode(&StoredPrior { version: 1, values: BTreeMap::new() });
        let crc = crc::Crc::<u64>::new(&crc::CRC_64_XZ);
        assert_eq!(crc.checksum(b"123456789"), 0x995d_c9bb_df19_39fa);
        let expected =
            format!("metagov-prior 1\nversion 1\ncrc64-xz {:016x}\n", crc.checksum(b"metagov-prior 1\nversion 1\n"));
        assert_eq!(String::from_utf8(bytes).expect("text"), expected);
    }

    #[test]
    fn a_snapshot_computes_rate_and_drift() {
        let (before, after) = (array![0.0, 1.0], array![3.0, 5.0]);
        let input = MetaMetricsInput {
            reward: 0.5,
            updates: 3,
            windows: 30,
            gain: 0.12,
            confidence: 0.9,
            previous_prior: Some(&before),
            prior: &after,
            latency_ms: 45.0,
            journal_entries: 1 << 20,
        };
        let snapshot = build_meta_metrics_snapshot(&input);
        assert_eq!((snapshot.update_rate, snapshot.drift_score), (0.1, 5.0));
        let first = build_meta_metrics_snapshot(&MetaMetricsInput { previous_prior: None, windows: 0, ..input });
        assert_eq!((first.update_rate, first.drift_score), (0.0, 0.0));
    }
}

/// Properties, over generated inputs.
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn updates() -> impl Strategy<Value = Vec<DomainMetaUpdate>> {
        let one = (prop::array::uniform2(-10.0..10.0_f64), -1.0..1.0_f64, 0.0..=1.0_f64);
        prop::collection::vec(one, 1..12).prop_map(|rows| {
            rows.into_iter()
                .enumerate()
                .map(|(i, ([a, b], reward, confidence))| DomainMetaUpdate {
                    domain_id: format!("d{i:02}"),
                    keys: vec!["a".to_owned(), "b".to_owned()],
                    vector: array![a, b],
                    reward,
                    confidence,
                    window: 1,
                    observations: 5,
                })
                .collect()
        })
    }

    /// Any JSON value, nested a few levels.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            "[ -~]{0,8}".prop_map(serde_json::Value::from),
            prop::sample::select(vec!["job", "nlp", "a.b-c_d", "", "tau"]).prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            let key = prop::sample::select(vec![
                "job",
                "domain",
                "window",
                "phase",
                "metrics",
                "params",
                "gain_p50",
                "stability_mean",
                "vram_high",
                "latency_ms",
                "x",
                "",
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(key.prop_map(str::to_owned), inner, 0..7)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn aggregate_weights_sum_to_one_and_reach_the_entropy_target(
            updates in updates(),
            gamma in 0.0..=1.0_f64,
            temperature in 0.01..10.0_f64,
        ) {
            let config = CrossMetaConfig { gamma_diversity: gamma, temperature, ..CrossMetaConfig::default() };
            let aggregator = CrossDomainMetaAggregator::new(config, vec!["a".to_owned(), "b".to_owned()]);
            let result = aggregator.aggregate(&updates).expect("outlier filtering keeps the median half");
            let meta = &result.meta;
            prop_assert!((meta.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            prop_assert!(meta.weights.iter().all(|&w| (0.0..=1.0 + 1e-12).contains(&w)));
            prop_assert!(meta.entropy >= meta.entropy_target - 1e-9, "{:?}", meta);
            prop_assert!((0.0..=1.0).contains(&meta.beta));
            prop_assert_eq!(meta.used.len() + meta.dropped.len(), updates.len());
        }

        #[test]
        fn reptile_never_leaves_the_knob_bounds(
            steps in prop::collection::vec((prop::array::uniform4(-1e6..1e6_f64), -5.0..5.0_f64, any::<bool>()), 1..20),
            lr in 1e-6..=1.0_f64,
        ) {
            let config = four_knobs();
            let reptile = MetaOptimizerConfig { lr, ..config.reptile.clone() };
            let mut optimizer = OnlineReptileOptimizer::new(reptile, &config.knobs);
            let keys = optimizer.keys().to_vec();
            for (phi, reward, memory) in steps {
                let prior = optimizer.apply(&Array1::from(phi.to_vec()), &keys, reward, memory).clone();
                for (value, knob) in prior.iter().zip(config.knobs.values()) {
                    prop_assert!((knob.min..=knob.max).contains(value), "{} outside [{}, {}]", value, knob.min, knob.max);
                }
            }
        }

        #[test]
        fn rollback_restores_the_exact_checkpoint(
            steps in prop::collection::vec(prop::array::uniform4(-2.0..2.0_f64), 1..12),
            rollbacks in 1..12_usize,
        ) {
            let config = four_knobs();
            let mut optimizer = OnlineReptileOptimizer::new(config.reptile.clone(), &config.knobs);
            let keys = optimizer.keys().to_vec();
            let mut history = vec![optimizer.prior().clone()];
            for phi in &steps {
                history.push(optimizer.apply(&Array1::from(phi.to_vec()), &keys, 0.5, false).clone());
            }
            let held = optimizer.checkpoints();
            prop_assert_eq!(held, steps.len().min(8));
            for back in 1..=rollbacks {
                let restored = optimizer.rollback(0.0).cloned();
                let expected = (back <= held).then(|| history[history.len() - 1 - back].clone());
                prop_assert_eq!(restored, expected);
            }
        }

        #[test]
        fn the_validator_never_panics_on_any_json(value in json_value()) {
            let mut validator = MetaPacketValidator::new(MetaValidatorConfig::default());
            if let Err(rejection) = validator.validate_telemetry(&value) {
                prop_assert!(!rejection.detail.is_empty());
            }
            let line = value.to_string();
            let _ = validator.validate_telemetry_line(&line);
        }

        #[test]
        fn the_validator_never_panics_on_any_line(line in any::<String>()) {
            let mut validator = MetaPacketValidator::new(MetaValidatorConfig::default());
            let _ = validator.validate_telemetry_line(&line);
        }

        #[test]
        fn prior_decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let manager = MetaStorageManager::new(MetaStorageConfig::default());
            let _ = manager.decode(&bytes);
        }
    }
}
