//! The federation workflows' unit tests.

use super::*;

#[test]
fn federation_ids_from_the_server_must_be_plain_names() {
    for good in ["notes", "e2e", "team-1.v2", "a_b"] {
        assert!(check_federation_id(good).is_ok(), "{good}");
    }
    for bad in ["", "..", "../x", "a/b", ".hidden", "a\\b", "x y"] {
        assert!(check_federation_id(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn off_by_default_and_nothing_to_leave() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut library = Library::open(dir.path()).expect("open");
    let conditions = crate::eligibility::Conditions {
        on_power: Some(true),
        idle: Some(true),
        local_hour: 12,
    };
    struct Fixed(crate::eligibility::Conditions);
    impl DeviceState for Fixed {
        fn conditions(&self) -> crate::eligibility::Conditions {
            self.0
        }
    }
    assert!(
        status(&library, &Fixed(conditions))
            .expect("status")
            .is_empty()
    );
    assert!(history(&library).expect("history").is_empty());
    assert!(audit(&mut library).expect("audit").is_empty());
    assert!(matches!(
        leave(&mut library, None),
        Err(PersonalizeError::NotMember(_))
    ));
    assert!(matches!(
        set_policy(&mut library, None, &ParticipationPolicy::default()),
        Err(PersonalizeError::NotMember(_))
    ));
    let blank = JoinRequest {
        server_url: " ".into(),
        certificate_pem: String::new(),
        invite: "x".into(),
        epsilon_budget: 8.0,
        policy: ParticipationPolicy::default(),
    };
    assert!(matches!(
        join(&mut library, &blank),
        Err(PersonalizeError::Invalid(_))
    ));
    let no_budget = JoinRequest {
        server_url: "https://127.0.0.1:1".into(),
        epsilon_budget: f64::NAN,
        ..blank
    };
    assert!(matches!(
        join(&mut library, &no_budget),
        Err(PersonalizeError::Invalid(_))
    ));
}

#[test]
fn identity_keys_round_trip_in_a_private_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = key_path(dir.path(), "notes");
    let identity = DeviceIdentity::generate(&mut rand::rngs::OsRng);
    save_identity(&path, &identity).expect("save");
    let back = load_identity(&path).expect("load");
    assert_eq!(
        back.to_secret_bytes()[..],
        identity.to_secret_bytes()[..],
        "the same key"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(&path, b"short").expect("write");
    assert!(matches!(
        load_identity(&path),
        Err(PersonalizeError::Inconsistent(_))
    ));
}
