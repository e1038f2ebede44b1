//! `env[].valueFrom.fileKeyRef` (EnvFiles): the file format and the kubelet's errors.

use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, FileKeySelector, Pod};
use podrun_model::{ALL_KEYS, ENV_FILE_KIND, container_env, parse_env_file};

fn file_env(name: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            file_key_ref: Some(FileKeySelector {
                volume_name: "cfg".to_owned(),
                path: "app.env".to_owned(),
                key: key.to_owned(),
                optional: Some(optional),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn env_with(file: Option<&str>, vars: Vec<EnvVar>) -> Result<Vec<(String, String)>, String> {
    let c = Container {
        name: "c".to_owned(),
        env: Some(vars),
        ..Container::default()
    };
    let lookup = |kind: &str, name: &str, key: &str| {
        assert_eq!((kind, name), (ENV_FILE_KIND, "cfg/app.env"));
        let entries = parse_env_file(file?);
        if key == ALL_KEYS {
            return Some(
                entries
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
        entries.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    };
    container_env(&Pod::default(), &c, &lookup)
}

#[test]
fn env_file_lines_and_single_quotes() {
    let parsed = parse_env_file("# comment\nA=1\n\nB='two words'\nC=x=y\nA=3\nnot a pair\n");
    assert_eq!(
        parsed,
        vec![
            ("A".to_owned(), "3".to_owned()),
            ("B".to_owned(), "two words".to_owned()),
            ("C".to_owned(), "x=y".to_owned()),
        ]
    );
}

#[test]
fn file_key_ref_resolves_a_key() {
    let env = env_with(Some("TOKEN='abc'\n"), vec![file_env("T", "TOKEN", false)]).unwrap();
    assert_eq!(env, vec![("T".to_owned(), "abc".to_owned())]);
}

#[test]
fn missing_key_is_a_create_container_config_error_unless_optional() {
    let err = env_with(Some("OTHER=1\n"), vec![file_env("T", "TOKEN", false)]).unwrap_err();
    assert_eq!(
        err,
        "couldn't find key TOKEN in env file app.env in volume cfg"
    );
    let err = env_with(None, vec![file_env("T", "TOKEN", false)]).unwrap_err();
    assert_eq!(err, "couldn't read env file app.env in volume cfg");
    assert_eq!(
        env_with(None, vec![file_env("T", "TOKEN", true)]).unwrap(),
        vec![]
    );
}
