use std::collections::BTreeMap;

use super::*;
use crate::probes::{Exclude, Spec};

/// A config file in a scratch place: one directory per test thread.
fn file(name: &str, yaml: &str) -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    let dir = std::env::temp_dir().join(format!("lameduck-config-{}-{thread}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The file alone: no environment, no flags.
fn load(yaml: &str) -> Result<Config, String> {
    let path = file("lameduck.yaml", yaml);
    Config::load_with(Some(&path), |_| None, &[]).map_err(|e| {
        e.to_string()
            .replace(&format!("{}", path.display()), "lameduck.yaml")
    })
}

/// Flags alone, by their names (no token).
fn flags(given: &[(&str, &str)]) -> Result<Config, String> {
    let flags: Vec<(usize, Vec<String>)> = given
        .iter()
        .map(|(flag, text)| {
            let i = DECLARATIONS
                .iter()
                .position(|d| d.flag == Some(flag))
                .unwrap_or_else(|| panic!("no flag --{flag}"));
            (i, vec![text.to_string()])
        })
        .collect();
    Config::load_with(None, |_| None, &flags).map_err(|e| e.to_string())
}

/// Variables alone.
fn env(given: &[(&str, &str)]) -> Result<Config, String> {
    let vars: BTreeMap<String, String> = given
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load_with(None, |var| vars.get(var).cloned(), &[]).map_err(|e| e.to_string())
}

/// Every setting is reachable as a key, a variable and a flag (or says why
/// not), and each way gives the same value; keys, flags and variables are
/// each unique. A token is in the environment throughout: some settings
/// need one.
#[test]
fn every_declaration_is_reachable_all_three_ways() {
    let token = |var: &str| (var == "LAMEDUCK_ADMIN_TOKEN").then(|| "t0k3n".to_string());
    let mut keys: Vec<&str> = DECLARATIONS.iter().map(|d| d.key).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), DECLARATIONS.len(), "a key is declared twice");
    let mut flags_seen: Vec<&str> = DECLARATIONS.iter().filter_map(|d| d.flag).collect();
    flags_seen.sort_unstable();
    flags_seen.dedup();
    let mut vars: Vec<&str> = DECLARATIONS.iter().filter_map(|d| d.env).collect();
    vars.sort_unstable();
    vars.dedup();
    assert_eq!(
        vars.len(),
        DECLARATIONS.iter().filter(|d| d.env.is_some()).count()
    );
    for d in DECLARATIONS {
        assert!(
            (d.flag.is_some() && d.env.is_some()) || d.why_not.is_some(),
            "{} is missing a way and does not say why",
            d.key
        );
        assert!(
            d.env.is_none_or(|v| v.starts_with("LAMEDUCK_")),
            "{}",
            d.key
        );
        // The example, in the file (as the key's YAML)...
        let mut yaml = String::new();
        let parts: Vec<&str> = d.key.split('.').collect();
        for (depth, part) in parts.iter().enumerate() {
            yaml.push_str(&"  ".repeat(depth));
            yaml.push_str(part);
            yaml.push(':');
            yaml.push(if depth + 1 < parts.len() { '\n' } else { ' ' });
        }
        let value = match d.shape {
            Shape::Pairs => {
                let (k, v) = d.example.split_once('=').unwrap();
                format!("{{{k}: {v}}}")
            }
            Shape::List => format!("[{}]", d.example),
            Shape::Scalar | Shape::Yaml => d.example.to_string(),
        };
        yaml.push_str(&value);
        yaml.push('\n');
        let checked = |config: Config| {
            let summary = serde_json::to_value(&config).unwrap();
            let default = serde_json::to_value(Config::default()).unwrap();
            assert_ne!(
                summary[d.key], default[d.key],
                "{}: the example changes nothing",
                d.key
            );
            summary[d.key].clone()
        };
        let path = file("every.yaml", &yaml);
        let from_file = Config::load_with(Some(&path), token, &[]);
        let from_file = checked(from_file.unwrap_or_else(|e| panic!("{yaml}: {e}")));
        // ...as a variable...
        if let Some(var) = d.env {
            let vars = |v: &str| {
                if v == var {
                    Some(d.example.to_string())
                } else {
                    token(v)
                }
            };
            let from_env = Config::load_with(None, vars, &[]);
            let from_env = checked(from_env.unwrap_or_else(|e| panic!("{e}")));
            assert_eq!(from_env, from_file, "{var}");
        }
        // ...and as a flag.
        if let Some(flag) = d.flag {
            let i = DECLARATIONS.iter().position(|x| x.key == d.key).unwrap();
            let from_flag = Config::load_with(None, token, &[(i, vec![d.example.to_string()])]);
            let from_flag = checked(from_flag.unwrap_or_else(|e| panic!("{e}")));
            assert_eq!(from_flag, from_file, "--{flag}");
        }
    }
}

#[test]
fn the_flags_are_the_declarations() {
    use clap::{Args as _, FromArgMatches};
    let command = Args::augment_args(clap::Command::new("lameduck"));
    let matches = command
        .try_get_matches_from([
            "lameduck",
            "--grace-period",
            "40s",
            "--policy-config",
            "a=1,b=2",
            "--policy-config",
            "c=3",
            "--admin",
            "off",
        ])
        .unwrap();
    let args = Args::from_arg_matches(&matches).unwrap();
    let config = Config::load_with(None, |_| None, &args.flags).unwrap();
    assert_eq!(config.grace_period, Duration::from_secs(40));
    assert_eq!(config.policy_config.len(), 3);
    assert_eq!(config.admin, None);
    // The token is never a flag.
    let command = Args::augment_args(clap::Command::new("lameduck"));
    assert!(
        command
            .try_get_matches_from(["lameduck", "--admin-token", "x"])
            .is_err()
    );
}

#[test]
fn a_full_file() {
    let c = load(
        "grace_period: 45s\nsafety_margin: 3s\npolicy:\n  file: builtin:jobs\n  config:\n    stop-taking-work: USR2\n    recheck: 100\n  cpu_budget: 5ms\n  memory_limit: 8MiB\nprobes:\n  - name: idle\n    http: { url: 'http://127.0.0.1:8080/idle' }\n    timeout: 500ms\n  - name: web\n    connections: { ports: [8080, 8443] }\nadmin:\n  listen: 127.0.0.1:9000\nlog_format: json\n",
    )
    .unwrap();
    assert_eq!(c.grace_period, Duration::from_secs(45));
    assert_eq!(c.policy, PolicySource::Builtin("jobs".into()));
    assert_eq!(
        c.policy_config,
        vec![
            ("recheck".into(), "100".into()),
            ("stop-taking-work".into(), "USR2".into())
        ]
    );
    assert_eq!(
        (c.limits().cpu, c.limits().memory),
        (Duration::from_millis(5), 8 << 20)
    );
    assert_eq!(c.probes[0].timeout, Duration::from_millis(500));
    assert_eq!(
        c.probes[1].kind,
        Spec::Connections(crate::probes::connections::Spec {
            ports: vec![8080, 8443],
            exclude: Exclude::default(),
            long_lived: None,
        })
    );
    assert_eq!(c.admin, Some("127.0.0.1:9000".parse().unwrap()));
    assert_eq!(c.log_format, LogFormat::Json);
}

#[test]
fn connections_exclusions() {
    let c = load("probes:\n  - name: web\n    connections:\n      exclude: { peers: [10.0.0.0/8, 'fd00::7'], ports: [9090] }\n").unwrap();
    assert_eq!(
        c.probes[0].kind,
        Spec::Connections(crate::probes::connections::Spec {
            ports: Vec::new(),
            exclude: Exclude {
                peers: vec!["10.0.0.0/8".parse().unwrap(), "fd00::7".parse().unwrap()],
                ports: vec![9090],
            },
            long_lived: None,
        })
    );
    let e = load("probes:\n  - name: web\n    connections:\n      exclude: { peers: [10.0.0.0/8, 10.1/16] }\n")
        .unwrap_err();
    assert!(
        e.contains("probes[0].connections.exclude.peers[1]")
            && e.contains("`10.1/16` is not an address or a CIDR block"),
        "{e}"
    );
    let e = load("probes:\n  - name: web\n    connections:\n      exclude: { hosts: [] }\n")
        .unwrap_err();
    assert!(
        e.contains("probes[0].connections.exclude") && e.contains("unknown field `hosts`"),
        "{e}"
    );
}

#[test]
fn errors_carry_file_line_column_and_key() {
    let e = load("grace_period: 30s\ngrace_priod: 5s\n").unwrap_err();
    assert!(
        e.starts_with("lameduck.yaml:2:14: grace_priod: unknown setting (known here: grace_period"),
        "{e}"
    );
    let e = load("policy:\n  cpu_budget: fast\n").unwrap_err();
    assert!(
        e.starts_with("lameduck.yaml:2:15: policy.cpu_budget: `fast` is not a duration"),
        "{e}"
    );
    let e = load("probes:\n  - name: web\n    connections: { ports: [http] }\n").unwrap_err();
    assert!(
        e.starts_with("lameduck.yaml:3:") && e.contains("probes[0].connections.ports[0]"),
        "{e}"
    );
    let e = load("probes:\n  - name: x\n    http: { url: 'http://a/' }\n    file: { path: /x }\n")
        .unwrap_err();
    assert!(e.contains("probes[0]") && e.contains("exactly one"), "{e}");
    let e = load("admin: { enabled: false }\n").unwrap_err();
    assert!(
        e.contains("admin.enabled: is gone: `admin.listen: off`"),
        "{e}"
    );
    let e = load("- a\n- b\n").unwrap_err();
    assert!(e.contains("not a map of settings"), "{e}");
}

#[test]
fn flags_win_over_variables_which_win_over_the_file() {
    let path = file(
        "layers.yaml",
        "grace_period: 45s\nsafety_margin: 1s\nadmin: { listen: off }\n",
    );
    let vars = |var: &str| match var {
        "LAMEDUCK_GRACE_PERIOD" => Some("20s".to_string()),
        "LAMEDUCK_SAFETY_MARGIN" => Some("3s".to_string()),
        _ => None,
    };
    let grace = DECLARATIONS
        .iter()
        .position(|d| d.key == "grace_period")
        .unwrap();
    let c = Config::load_with(Some(&path), vars, &[(grace, vec!["10s".into()])]).unwrap();
    assert_eq!(c.grace_period, Duration::from_secs(10));
    assert_eq!(c.safety_margin, Duration::from_secs(3));
    assert_eq!(c.admin, None);
    // An error names the layer it came from.
    let e = env(&[("LAMEDUCK_GRACE_PERIOD", "soon")]).unwrap_err();
    assert!(
        e.starts_with("LAMEDUCK_GRACE_PERIOD: grace_period: `soon`"),
        "{e}"
    );
    let e = flags(&[("grace-period", "soon")]).unwrap_err();
    assert!(e.starts_with("--grace-period: grace_period: `soon`"), "{e}");
}

#[test]
fn the_example_file_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../lameduck.example.yaml");
    Config::load_with(Some(&path), |_| None, &[]).unwrap();
}

#[test]
fn prestop_auth_needs_a_token() {
    let err = flags(&[("prestop-auth", "true")]).unwrap_err();
    assert!(
        err.contains(
            "--prestop-auth: admin.prestop_auth: /prestop needs a token but no token is set"
        ),
        "{err}"
    );
    let c = Config::load_with(
        None,
        |var| (var == "LAMEDUCK_ADMIN_TOKEN").then(|| "s3cret".to_string()),
        &[(
            DECLARATIONS
                .iter()
                .position(|d| d.key == "admin.prestop_auth")
                .unwrap(),
            vec!["true".into()],
        )],
    )
    .unwrap();
    assert_eq!(c.prestop_token(), Some("s3cret"));
    assert_eq!(c.push_token(), None);
    // Never shown.
    let summary = serde_json::to_string(&c).unwrap();
    assert!(!summary.contains("s3cret"), "{summary}");
}

#[test]
fn the_push_token_may_come_from_the_file_while_the_switch_is_a_flag() {
    let path = file("token.yaml", "admin: { token: s3cret }\n");
    let push = DECLARATIONS
        .iter()
        .position(|d| d.key == "admin.policy_push")
        .unwrap();
    let on = [(push, vec!["true".to_string()])];
    let c = Config::load_with(Some(&path), |_| None, &on).unwrap();
    assert_eq!(c.push_token(), Some("s3cret"));
    let err = Config::load_with(None, |_| None, &on)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no token is set"), "{err}");
    assert_eq!(
        Config::load_with(Some(&path), |_| None, &[])
            .unwrap()
            .push_token(),
        None
    );
}

#[test]
fn settings_that_cannot_work_are_refused_where_they_are() {
    let cases = [
        (
            "safety_margin: 500ms\nprobes:\n  - name: web\n    connections: {}\n",
            // The probe has no timeout of its own: its entry is named.
            ":3:5: probes[0].timeout: 1s for probe `web` does not fit the safety margin (500ms)",
        ),
        (
            "policy:\n  cpu_budget: 600ms\n",
            ":2:15: policy.cpu_budget: 600ms does not fit",
        ),
        (
            "policy:\n  reload_signal: STOP\n",
            ":2:18: policy.reload_signal: `STOP` cannot",
        ),
        (
            "admin:\n  readiness_url: http://[::1]:9911/\n",
            ":2:18: admin.readiness_url",
        ),
        (
            "admin:\n  token: \"a b\"\n",
            ":2:10: admin.token: the admin token contains",
        ),
    ];
    for (i, (yaml, expected)) in cases.into_iter().enumerate() {
        let path = file(&format!("refused{i}.yaml"), yaml);
        let error = Config::load_with(Some(&path), |_| None, &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&format!("{}{expected}", path.display())),
            "{yaml}: {error}"
        );
    }
    // Given by a flag, the setting is named by the flag and its key.
    let error = flags(&[("readiness-url", "http://127.0.0.1:9911/readyz")]).unwrap_err();
    assert!(
        error.starts_with("--readiness-url: admin.readiness_url: "),
        "{error}"
    );
}

#[test]
fn a_token_is_trimmed() {
    let c = env(&[
        ("LAMEDUCK_ADMIN_TOKEN", " s3cret\n"),
        ("LAMEDUCK_PRESTOP_AUTH", "true"),
    ])
    .unwrap();
    assert_eq!(c.prestop_token(), Some("s3cret"));
}

#[test]
fn only_regular_files_are_read() {
    let error = Config::load_with(Some(Path::new("/dev/zero")), |_| None, &[])
        .unwrap_err()
        .to_string();
    assert_eq!(error, "/dev/zero: not a regular file (a character device)");
}

/// The README's table of settings names every declaration, its flag and its
/// variable: a setting added here and not there fails.
#[test]
fn the_readme_lists_every_setting() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let table = readme
        .split("| file key | flag | environment | default |")
        .nth(1)
        .expect("the README's table of settings");
    let table = table.split("\n\n").next().unwrap();
    for d in DECLARATIONS {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", d.key)))
            .unwrap_or_else(|| panic!("no row for {} in the README", d.key));
        if let Some(flag) = d.flag {
            assert!(row.contains(&format!("`--{flag}")), "{row}");
        }
        if let Some(var) = d.env {
            assert!(row.contains(&format!("`{var}`")), "{row}");
        }
    }
}
