//! `lameduck inject`: manifests in, manifests with lameduck out, through
//! the real binary. Each fixture under `tests/fixtures/inject/` has its
//! expected output in both modes under `expected/`; `BLESS=1` rewrites those
//! from what the binary prints (review the diff).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::util::{fixture, lameduck, scratch};

/// `lameduck inject ARGS`, with `stdin` on standard input: the exit code,
/// stdout and stderr.
fn inject(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(lameduck())
        .arg("inject")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn input(name: &str) -> PathBuf {
    fixture(&format!("inject/{name}.yaml"))
}

/// The `--command` the image of `no-command.yaml` needs in entrypoint mode.
const NGINX: &str = r#"nginx=[/docker-entrypoint.sh, nginx, -g, "daemon off;"]"#;

/// The fixtures, and the extra flags each needs in entrypoint mode.
const CASES: &[(&str, &[&str])] = &[
    ("deployment", &[]),
    ("statefulset", &[]),
    ("daemonset", &[]),
    ("job", &[]),
    ("cronjob", &[]),
    ("pod", &[]),
    ("no-command", &["--command", NGINX]),
];

/// Injects `case` in `mode` from the file, checks it against the expected
/// output, and returns it.
fn check_case(case: &str, mode: &str, extra: &[&str]) -> String {
    let file = input(case);
    let mut args = vec!["--mode", mode, "-f", file.to_str().unwrap()];
    args.extend(extra);
    let (code, out, err) = inject(&args, "");
    assert_eq!(code, 0, "{case} ({mode}): {err}");
    let expected = fixture(&format!("inject/expected/{case}.{mode}.yaml"));
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&expected, &out).unwrap();
    }
    let want = std::fs::read_to_string(&expected).unwrap_or_default();
    assert!(
        out == want,
        "{case} ({mode}) differs from {}; BLESS=1 rewrites it:\n{out}",
        expected.display()
    );
    out
}

#[test]
fn every_fixture_injects_as_expected_in_both_modes_and_a_second_time_changes_nothing() {
    for (case, extra) in CASES {
        for (mode, extra) in [("entrypoint", *extra), ("sidecar", &[][..])] {
            let once = check_case(case, mode, extra);
            let mut args = vec!["--mode", mode];
            args.extend(extra);
            let (code, twice, err) = inject(&args, &once);
            assert_eq!(code, 0, "{case} ({mode}) again: {err}");
            assert!(
                twice == once,
                "{case} ({mode}): injecting again changed it:\n{twice}"
            );
            assert!(err.contains("already injected"), "{case}: {err}");
        }
    }
}

#[test]
fn every_document_of_a_stream_from_stdin_is_handled_in_order() {
    let stream: String = ["deployment", "job", "statefulset"]
        .iter()
        .map(|case| std::fs::read_to_string(input(case)).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let (code, out, err) = inject(&["--mode", "sidecar", "-f", "-"], &stream);
    assert_eq!(code, 0, "{err}");
    let kinds: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .collect();
    assert_eq!(
        kinds,
        [
            "ConfigMap",   // web-settings, as it was
            "ConfigMap",   // web-lameduck
            "Deployment",  // web
            "Service",     // web, as it was
            "ConfigMap",   // report-lameduck
            "Job",         // report
            "ConfigMap",   // db-lameduck
            "StatefulSet", // db
        ]
    );
    // Standard input is the default.
    let (code, same, _) = inject(&["--mode", "sidecar"], &stream);
    assert_eq!((code, &same), (0, &out));
}

#[test]
fn other_kinds_and_comments_pass_through_byte_for_byte() {
    let text = "# settings\napiVersion: v1\nkind: ConfigMap   # not a workload\n\
                metadata: {name: x}\ndata:\n  k: 'v'\n---\n\
                apiVersion: example.com/v1\nkind: Deployment  # not apps/v1: a CRD\n\
                metadata:\n  name: y\n...\n";
    let (code, out, err) = inject(&[], text);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, text);
    assert_eq!(err, "");
}

/// The refusals: exit 2, nothing on stdout, a message that says where.
#[test]
fn what_cannot_be_injected_is_refused_with_its_place_and_nothing_written() {
    let refused = |args: &[&str], stdin: &str, wants: &[&str]| {
        let (code, out, err) = inject(args, stdin);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(out, "", "nothing is written on error");
        for want in wants {
            assert!(err.contains(want), "{args:?}: wants `{want}` in: {err}");
        }
    };
    let nginx = std::fs::read_to_string(input("no-command")).unwrap();
    let web = std::fs::read_to_string(input("deployment")).unwrap();

    // No command: the image's entrypoint is unknown.
    refused(
        &[],
        &nginx,
        &[
            "<stdin>: document 1 at line 3 (Deployment/nginx), container nginx",
            "ENTRYPOINT and CMD",
            "--command",
            "--mode sidecar",
        ],
    );
    // Args but no command: the same, the ENTRYPOINT alone is missing.
    let args_only = nginx.replace(
        "          image: nginx:1.27\n",
        "          image: nginx:1.27\n          args: [nginx-debug]\n",
    );
    refused(&[], &args_only, &["has args but no command", "ENTRYPOINT,"]);
    // A different preStop hook.
    let sleep = web.replace(
        "          # The app's own check",
        "          lifecycle:\n            preStop:\n              exec:\n                \
         command: [sleep, '5']\n          # The app's own check",
    );
    refused(
        &["--mode", "sidecar"],
        &sleep,
        &[
            "document 2 at line 9 (Deployment/web), container web",
            "preStop hook (exec)",
        ],
    );
    // Already injected in the other mode.
    let (_, sidecar, _) = inject(&["--mode", "sidecar"], &web);
    refused(&[], &sidecar, &["already injected in sidecar mode"]);
    // A --command that matches nothing, or with a command of its own.
    refused(
        &["--command", "web=/web"],
        &web,
        &["has a command of its own"],
    );
    refused(
        &["--mode", "sidecar", "--command", NGINX],
        &nginx,
        &["sidecar mode leaves commands alone"],
    );
    // --container that is not there.
    refused(
        &["--container", "api"],
        &web,
        &["has no container api (it has web)"],
    );
    // YAML syntax: line and column.
    refused(
        &[],
        "kind: Pod\nmetadata:\n  name: [x\n",
        &["<stdin>: ", "line 4 column 1"],
    );
    refused(&[], "a: b\n  c: d\n", &["line 2 column 4"]);
    // A grace period the safety margin eats.
    refused(
        &[],
        &web.replace(
            "    spec:\n      containers:",
            "    spec:\n      terminationGracePeriodSeconds: 1\n      containers:",
        ),
        &["terminationGracePeriodSeconds 1 leaves no time"],
    );
    // The input file itself.
    refused(&["-f", "/nonexistent.yaml"], "", &["/nonexistent.yaml: "]);
}

#[test]
fn a_config_file_is_the_start_of_each_configmap_with_its_comments() {
    let dir = scratch("inject-config");
    let config = dir.join("lameduck.yaml");
    std::fs::write(
        &config,
        "# ours\ngrace_period: 10s   # overwritten by the pod's\nadmin:\n  listen: 0.0.0.0:9000\n",
    )
    .unwrap();
    let web = std::fs::read_to_string(input("deployment")).unwrap();
    let (code, out, err) = inject(
        &[
            "--config",
            config.to_str().unwrap(),
            "--grace-period",
            "40s",
        ],
        &web,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("terminationGracePeriodSeconds: 40\n"), "{out}");
    assert!(
        out.contains(
            "    # ours\n    grace_period: 40s   # overwritten by the pod's\n    admin:\n      \
             listen: 0.0.0.0:9000\n      readiness_url: http://127.0.0.1:8080/ready\n"
        ),
        "{out}"
    );
    // The kubelet calls the config's port.
    assert!(
        out.contains("path: /prestop\n                port: 9000\n"),
        "{out}"
    );
    assert!(
        out.contains("path: /readyz\n              port: 9000\n"),
        "{out}"
    );

    // A config with the admin server off is refused before anything is read.
    std::fs::write(&config, "admin:\n  listen: \"off\"\n").unwrap();
    let (code, out, err) = inject(&["--config", config.to_str().unwrap()], &web);
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(err.contains("the admin server is off"), "{err}");
}
