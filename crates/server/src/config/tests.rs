//! The server configuration's tests: parsing, validation, neighbourhood sizes.

use super::*;

fn example() -> Config {
    Config::parse(EXAMPLE_CONFIG, Path::new("/srv/hearth")).expect("example parses")
}

fn with(edit: impl FnOnce(&mut String)) -> Result<Config, ConfigError> {
    let mut text = EXAMPLE_CONFIG.to_owned();
    edit(&mut text);
    Config::parse(&text, Path::new("/srv/hearth"))
}

fn problem(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_example_is_valid_and_resolves_paths() {
    let config = example();
    assert_eq!(config.server.data_dir, Path::new("/srv/hearth"));
    let here = Config::parse(EXAMPLE_CONFIG, Path::new("")).expect("parses");
    assert_eq!(here.server.data_dir, Path::new("."));
    assert_eq!(config.federations.len(), 1);
    let f = &config.federations[0];
    assert_eq!(f.cohort_target(), 13);
    assert_eq!(f.parameter_count(), 16384);
    assert_eq!(f.over_selection, 1.3);
}

#[test]
fn the_example_states_every_server_limit_at_its_default() {
    let server = example().server;
    let defaults = Config::parse(
        "[server]
",
        Path::new("/srv/hearth"),
    )
    .expect("an empty [server] section takes every default")
    .server;
    assert_eq!(
        (
            server.header_timeout_secs,
            server.max_connections,
            server.max_connections_per_ip,
            server.max_requests_per_ip,
        ),
        (
            defaults.header_timeout_secs,
            defaults.max_connections,
            defaults.max_connections_per_ip,
            defaults.max_requests_per_ip,
        )
    );
    for field in ["max_connections_per_ip", "header_timeout_secs"] {
        let err = problem(with(|t| {
            let line = t
                .lines()
                .find(|l| l.starts_with(field))
                .expect("line")
                .to_owned();
            *t = t.replace(&line, &format!("{field} = 0"));
        }));
        assert!(err.contains(field), "{err}");
    }
}

#[test]
fn unknown_keys_are_errors_with_a_location() {
    let err = problem(with(|t| {
        *t = t.replace("min_clients = 3", "min_client = 3")
    }));
    assert!(err.contains("min_client"), "{err}");
    let err = problem(with(|t| t.push_str("\n[server.extra]\nx = 1\n")));
    assert!(err.contains("line") || err.contains("extra"), "{err}");
}

#[test]
fn out_of_range_values_name_the_federation_and_field() {
    let err = problem(with(|t| {
        *t = t.replace("min_clients = 3", "min_clients = 1")
    }));
    assert!(err.contains("\"notes\": min_clients"), "{err}");
    let err = problem(with(|t| {
        *t = t.replace("target_clients = 10", "target_clients = 2")
    }));
    assert!(err.contains("target_clients"), "{err}");
    let err = problem(with(|t| {
        *t = t.replace("over_selection = 1.3", "over_selection = 0.9")
    }));
    assert!(err.contains("over_selection"), "{err}");
    let err = problem(with(|t| {
        *t = t.replace("clip_norm = 1.0", "clip_norm = -1.0")
    }));
    assert!(err.contains("dp.clip_norm"), "{err}");
    let err = problem(with(|t| {
        *t = t.replace("max_retry_secs = 900", "max_retry_secs = 10")
    }));
    assert!(err.contains("checkin.max_retry_secs"), "{err}");
    let err = problem(with(|t| *t = t.replace(&"0".repeat(64), "abc")));
    assert!(err.contains("base_model.sha256"), "{err}");
    let err = problem(with(|t| {
        *t = t.replace("unmasking_secs = 120", "unmasking_secs = 0")
    }));
    assert!(err.contains("deadlines.unmasking_secs"), "{err}");
}

#[test]
fn adapter_shape_must_be_given_and_consistent() {
    let err = problem(with(|t| {
        *t = t.replace("parameters = 16384", "parameters = 5")
    }));
    assert!(err.contains("tensors hold 16384"), "{err}");
    let only_count = with(|t| {
        let start = t.find("tensors = [").expect("tensors");
        let end = t[start..].find("]\n\n").expect("end") + start + 2;
        t.replace_range(start..end, "");
    })
    .expect("count alone is enough");
    assert_eq!(only_count.federations[0].parameter_count(), 16384);
    let err = problem(with(|t| {
        *t = t.replace("parameters = 16384", "");
        *t = t.replace("shape = [8, 1024]", "shape = [8, 0]");
    }));
    assert!(err.contains("non-zero"), "{err}");
}

#[test]
fn dp_delta_defaults_and_adapters_must_fit_a_round() {
    let config = example();
    let f = &config.federations[0];
    assert_eq!(f.dp.delta, hearth_fed::dp::DEFAULT_DELTA);
    let layout = f.adapter_layout().expect("layout");
    assert_eq!(layout.parameter_count(), 16384);
    assert_eq!(
        layout.tensors()[0].name,
        "model.layers.0.self_attn.q_proj.lora_A.weight"
    );
    let err = problem(with(|t| *t = t.replace("# delta = 1e-5 ", "delta = 1.5 ")));
    assert!(err.contains("dp.delta"), "{err}");
    let err = problem(with(|t| {
        let start = t.find("tensors = [").expect("tensors");
        let end = t[start..].find("]\n\n").expect("end") + start + 2;
        t.replace_range(start..end, "");
        *t = t.replace("parameters = 16384", "parameters = 300000000");
    }));
    assert!(err.contains("exceed the round limit"), "{err}");
}

#[test]
fn tls_paths_come_in_pairs() {
    let err = problem(with(|t| *t = t.replace("# cert = ", "cert = ")));
    assert!(err.contains("server.tls"), "{err}");
    let both = with(|t| {
        *t = t.replace("# cert = \"/etc", "cert = \"/etc");
        *t = t.replace("# key = \"/etc", "key = \"/etc");
    })
    .expect("both");
    assert_eq!(
        both.server.tls.key.as_deref(),
        Some(Path::new("/etc/hearth/key.pem"))
    );
}

#[test]
fn duplicate_and_malformed_ids_are_refused() {
    let mut text = EXAMPLE_CONFIG.to_owned();
    let federation = &EXAMPLE_CONFIG[EXAMPLE_CONFIG.find("[[federation]]").expect("entry")..];
    text.push_str(federation);
    let err = problem(Config::parse(&text, Path::new(".")));
    assert!(err.contains("used twice"), "{err}");
    let err = problem(with(|t| {
        *t = t.replace("id = \"notes\"", "id = \"Notes!\"")
    }));
    assert!(err.contains("id must be"), "{err}");
}

#[test]
fn secagg_parameters_follow_the_cohort_size() {
    let auto = SecAggConfig::default();
    assert_eq!(
        auto.for_cohort(2),
        SecAggParams {
            neighbours: 1,
            threshold: 1
        }
    );
    assert_eq!(
        auto.for_cohort(3),
        SecAggParams {
            neighbours: 2,
            threshold: 2
        }
    );
    // Too small for the default threat model's bounds: the complete
    // graph, strict majority.
    assert_eq!(
        auto.for_cohort(13),
        SecAggParams {
            neighbours: 12,
            threshold: 7
        }
    );
    // Bell et al.'s bounds for 1% colluders and 5% dropouts, not
    // log2 n (which would be k = 10, t = 6).
    assert_eq!(
        auto.for_cohort(1000),
        SecAggParams {
            neighbours: 46,
            threshold: 30
        }
    );
    let fixed = SecAggConfig {
        neighbours: Some(8),
        threshold: Some(5),
        ..SecAggConfig::default()
    };
    assert_eq!(
        fixed.for_cohort(100),
        SecAggParams {
            neighbours: 8,
            threshold: 5
        }
    );
    // k never exceeds the other clients there are.
    assert_eq!(fixed.for_cohort(4).neighbours, 3);

    let err = problem(with(|t| *t = t.replace("# threshold = 5", "threshold = 1")));
    assert!(err.contains("more than half"), "{err}");
    let err = problem(with(|t| *t = t.replace("# threshold = 5", "threshold = 9")));
    assert!(err.contains("smallest cohort"), "{err}");
    with(|t| {
        *t = t.replace("min_clients = 3", "min_clients = 5");
        *t = t.replace("# neighbours = 8 ", "neighbours = 4 ");
        *t = t.replace("# threshold = 5 ", "threshold = 3 ");
    })
    .expect("t = 3 is a majority of k = 4 for every cohort size");
}
