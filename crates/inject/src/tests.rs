//! The rules of `inject`, one by one, on small manifests.

use std::time::Duration;

use super::*;

/// A Deployment whose pod spec is `spec` (indented by 6).
fn deployment(spec: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    \
         spec:\n{spec}"
    )
}

const APP: &str = "      containers:\n        - name: web\n          image: web:1\n          \
                   command: [/web]\n";

fn run(text: &str, options: &Options) -> Result<Injected, InjectError> {
    inject("test.yaml", text, options)
}

fn ok(text: &str, options: &Options) -> Injected {
    run(text, options).unwrap_or_else(|e| panic!("{e}"))
}

fn refused(text: &str, options: &Options) -> String {
    match run(text, options) {
        Ok(out) => panic!("injected:\n{}", out.text),
        Err(e) => e.to_string(),
    }
}

/// The document of `kind` in `text`, as a value.
fn object(text: &str, kind: &str) -> Value {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .find(|v| v["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in:\n{text}"))
}

fn pod_spec(text: &str) -> Value {
    object(text, "Deployment")["spec"]["template"]["spec"].clone()
}

fn lameduck_yaml(text: &str) -> Value {
    let config = object(text, "ConfigMap")["data"]["lameduck.yaml"].clone();
    serde_yaml::from_str(config.as_str().unwrap()).unwrap()
}

#[test]
fn entrypoint_mode_wraps_the_command_and_wires_the_admin_port() {
    let out = ok(&deployment(APP), &Options::new(Mode::Entrypoint));
    let spec = pod_spec(&out.text);
    let app = &spec["containers"][0];
    assert_eq!(
        app["command"],
        serde_yaml::from_str::<Value>("[/lameduck-bin/lameduck, run, --, /web]").unwrap()
    );
    assert_eq!(app["lifecycle"]["preStop"]["httpGet"]["path"], "/prestop");
    assert_eq!(app["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(app["readinessProbe"]["httpGet"]["port"], 9911);
    assert_eq!(app["env"][0]["value"], "/etc/lameduck/lameduck.yaml");
    assert_eq!(
        app["env"][1]["valueFrom"]["fieldRef"]["fieldPath"],
        "status.hostIP"
    );
    let install = &spec["initContainers"][0];
    assert_eq!(install["name"], "lameduck-install");
    assert_eq!(
        install["image"],
        format!("lameduck:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(lameduck_yaml(&out.text)["grace_period"], "30s");
    assert_eq!(
        object(&out.text, "Deployment")["spec"]["template"]["metadata"]["annotations"]["lameduck.dev/injected"],
        "entrypoint"
    );
    // The flow style of the original command is kept.
    assert!(
        out.text
            .contains("command: [/lameduck-bin/lameduck, run, '--', /web]"),
        "{}",
        out.text
    );
}

#[test]
fn sidecar_mode_leaves_the_command_and_adds_a_restartable_init_container() {
    let out = ok(&deployment(APP), &Options::new(Mode::Sidecar));
    let spec = pod_spec(&out.text);
    let app = &spec["containers"][0];
    assert_eq!(app["command"][0], "/web");
    assert_eq!(app["lifecycle"]["preStop"]["httpGet"]["port"], 9911);
    assert!(app.get("readinessProbe").is_none());
    assert!(app.get("env").is_none());
    let sidecar = &spec["initContainers"][0];
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(sidecar["command"][1], "sidecar");
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(sidecar["env"][1]["name"], "LAMEDUCK_NODE_IP");
    assert_eq!(spec["volumes"][0]["configMap"]["name"], "web-lameduck");
}

#[test]
fn the_pods_grace_period_wins_then_the_flag_then_the_config() {
    let mut options = Options::new(Mode::Sidecar);
    let with_grace = format!("      terminationGracePeriodSeconds: 75\n{APP}");
    options.grace_period = Some(Duration::from_secs(20));
    let out = ok(&deployment(&with_grace), &options);
    assert_eq!(pod_spec(&out.text)["terminationGracePeriodSeconds"], 75);
    assert_eq!(lameduck_yaml(&out.text)["grace_period"], "75s");

    let out = ok(&deployment(APP), &options);
    assert_eq!(pod_spec(&out.text)["terminationGracePeriodSeconds"], 20);
    assert_eq!(lameduck_yaml(&out.text)["grace_period"], "20s");

    options.grace_period = Some(Duration::from_millis(20_500));
    let e = refused(&deployment(APP), &options);
    assert!(e.contains("not whole seconds"), "{e}");
}

#[test]
fn an_http_readiness_probe_becomes_the_readiness_url_and_others_are_kept() {
    let probe = |probe: &str| {
        deployment(&format!(
            "{APP}          ports: [{{name: http, containerPort: 8080}}]\n          \
             readinessProbe:\n{probe}"
        ))
    };
    let options = Options::new(Mode::Entrypoint);
    for (handler, url) in [
        (
            "httpGet: {path: /ready, port: http}",
            "http://127.0.0.1:8080/ready",
        ),
        ("httpGet: {port: 8081}", "http://127.0.0.1:8081/"),
        (
            "httpGet: {path: health, port: '8082'}",
            "http://127.0.0.1:8082/health",
        ),
    ] {
        let out = ok(
            &probe(&format!(
                "            {handler}\n            periodSeconds: 7\n"
            )),
            &options,
        );
        assert_eq!(
            lameduck_yaml(&out.text)["admin"]["readiness_url"],
            url,
            "{handler}"
        );
        let kept = &pod_spec(&out.text)["containers"][0]["readinessProbe"];
        assert_eq!(kept["httpGet"]["path"], "/readyz");
        assert_eq!(kept["periodSeconds"], 7, "the probe's timings stay");
        assert!(out.notes.is_empty(), "{:?}", out.notes);
    }
    for handler in [
        "exec: {command: [/ready]}",
        "tcpSocket: {port: 8080}",
        "httpGet: {path: /ready, port: 8080, scheme: HTTPS}",
        "httpGet: {path: /ready, port: 8080, httpHeaders: [{name: X, value: y}]}",
        "httpGet: {path: /ready, port: admin}",
    ] {
        let out = ok(&probe(&format!("            {handler}\n")), &options);
        assert!(lameduck_yaml(&out.text).get("admin").is_none(), "{handler}");
        let kept = &pod_spec(&out.text)["containers"][0]["readinessProbe"];
        assert_ne!(kept["httpGet"]["path"], "/readyz", "{handler}");
        assert!(
            out.notes[0].contains("keeps its readinessProbe"),
            "{:?}",
            out.notes
        );
    }
}

#[test]
fn the_app_container_is_the_flag_the_default_container_or_the_first() {
    let two = "      containers:\n        - {name: log, image: l, command: [/log]}\n        \
               - {name: web, image: w, command: [/web]}\n";
    let mut options = Options::new(Mode::Entrypoint);
    let out = ok(&deployment(two), &options);
    assert_eq!(
        pod_spec(&out.text)["containers"][0]["command"][0],
        "/lameduck-bin/lameduck"
    );
    assert!(
        out.notes[0].contains("drains container log, the first of log, web"),
        "{:?}",
        out.notes
    );

    options.container = Some("web".into());
    let out = ok(&deployment(two), &options);
    assert_eq!(pod_spec(&out.text)["containers"][0]["command"][0], "/log");
    assert_eq!(
        pod_spec(&out.text)["containers"][1]["command"][0],
        "/lameduck-bin/lameduck"
    );
    assert!(out.notes.is_empty());
}

#[test]
fn a_pod_wired_by_hand_or_injected_before_is_left_byte_for_byte() {
    let by_hand = deployment(
        "      containers:\n        - name: web\n          image: w\n          command: \
         [/usr/local/bin/lameduck, run, --, /web]\n",
    );
    let out = ok(&by_hand, &Options::new(Mode::Entrypoint));
    assert_eq!(out.text, by_hand);
    assert!(
        out.notes[0].contains("container web already runs lameduck"),
        "{:?}",
        out.notes
    );

    let once = ok(&deployment(APP), &Options::new(Mode::Entrypoint)).text;
    let twice = ok(&once, &Options::new(Mode::Entrypoint));
    assert_eq!(twice.text, once);
}

#[test]
fn names_and_the_port_inject_uses_must_be_free() {
    let options = Options::new(Mode::Sidecar);
    let cases = [
        (
            format!("{APP}      initContainers: [{{name: lameduck, image: x}}]\n"),
            "a container named lameduck",
        ),
        (
            format!("{APP}      volumes: [{{name: lameduck-config, emptyDir: {{}}}}]\n"),
            "a volume named lameduck-config",
        ),
        (
            format!("{APP}          ports: [{{containerPort: 9911}}]\n"),
            "listens on 9911, lameduck's admin port",
        ),
    ];
    for (spec, want) in cases {
        let e = refused(&deployment(&spec), &options);
        assert!(e.contains(want), "{e}");
    }
    let taken = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web-lameduck}}\n---\n{}",
        deployment(APP)
    );
    let e = refused(&taken, &options);
    assert!(e.contains("already has a ConfigMap web-lameduck"), "{e}");
    // In another namespace it is another ConfigMap.
    let elsewhere = taken.replace("{name: web-lameduck}", "{name: web-lameduck, namespace: x}");
    ok(&elsewhere, &options);
}

#[test]
fn every_workload_kind_is_found_and_json_input_works() {
    let kinds = [
        ("v1", "Pod", "spec:\n"),
        ("apps/v1", "StatefulSet", "spec:\n  template:\n    spec:\n"),
        ("apps/v1", "DaemonSet", "spec:\n  template:\n    spec:\n"),
        ("apps/v1", "ReplicaSet", "spec:\n  template:\n    spec:\n"),
        ("batch/v1", "Job", "spec:\n  template:\n    spec:\n"),
        (
            "batch/v1",
            "CronJob",
            "spec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n",
        ),
    ];
    for (api, kind, path) in kinds {
        let indent = " ".repeat(path.lines().count() * 2);
        let text = format!(
            "apiVersion: {api}\nkind: {kind}\nmetadata: {{name: w}}\n{path}{indent}containers: \
             [{{name: w, image: w, command: [/w]}}]\n"
        );
        let out = ok(&text, &Options::new(Mode::Sidecar));
        assert!(
            out.text.contains("restartPolicy: Always"),
            "{kind}:\n{}",
            out.text
        );
        assert!(
            out.text.contains("name: w-lameduck"),
            "{kind}:\n{}",
            out.text
        );
    }
    let json = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "j"},
        "spec": {"containers": [{"name": "j", "image": "j", "command": ["/j"]}]}}
"#;
    let out = ok(json, &Options::new(Mode::Entrypoint));
    let pod = object(&out.text, "Pod");
    assert_eq!(pod["spec"]["containers"][0]["command"][3], "/j");
    assert_eq!(pod["spec"]["initContainers"][0]["name"], "lameduck-install");
}

#[test]
fn an_alias_inject_would_edit_is_refused() {
    let text = "x: &containers\n  - {name: w, image: w, command: [/w]}\n---\n".to_string()
        + &deployment(
            "      containers:\n        - {name: w, image: w, command: [/w]}\n      volumes: *v\n",
        )
        .replace("kind: Deployment\n", "kind: Deployment\nv: &v []\n");
    let e = refused(&text, &Options::new(Mode::Sidecar));
    assert!(e.contains("cannot edit volumes"), "{e}");
}

#[test]
fn commands_are_lists_or_words() {
    assert_eq!(
        parse_command(r#"web=[/docker-entrypoint.sh, nginx, -g, "daemon off;"]"#).unwrap(),
        (
            "web".into(),
            vec![
                "/docker-entrypoint.sh".into(),
                "nginx".into(),
                "-g".into(),
                "daemon off;".into()
            ]
        )
    );
    assert_eq!(
        parse_command(r#"web=["/app", "--port", "8080"]"#)
            .unwrap()
            .1,
        ["/app", "--port", "8080"]
    );
    assert_eq!(
        parse_command("web=/app --port 8080").unwrap().1,
        ["/app", "--port", "8080"]
    );
    for bad in ["web", "=x", "web=", "web=[unclosed"] {
        assert!(parse_command(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_base_config_keeps_its_comments_and_its_readiness_url() {
    let theirs = Facts {
        readiness_url: true,
        ..Facts::default()
    };
    let base = BaseConfig::new(
        "# mine\nadmin:\n  readiness_url: http://127.0.0.1:1/up  # theirs\n".into(),
        theirs,
    );
    assert_eq!(
        base.render(45, Some("http://127.0.0.1:2/ready"), None)
            .unwrap(),
        "# mine\nadmin:\n  readiness_url: http://127.0.0.1:1/up  # theirs\ngrace_period: 45s\n"
    );
    let base = BaseConfig::new("# only a comment\n".into(), Facts::default());
    assert_eq!(
        base.render(30, None, None).unwrap(),
        "# only a comment\ngrace_period: 30s\n"
    );
    assert!(
        BaseConfig::default()
            .render(30, None, None)
            .unwrap()
            .ends_with("\ngrace_period: 30s\n")
    );
}

#[test]
fn a_policy_reference_goes_into_the_config_map_as_the_file_policy_file_names() {
    let reference = format!(
        "oci://registry.example:5000/drain@sha256:{}",
        "ab".repeat(32)
    );
    for mode in [Mode::Entrypoint, Mode::Sidecar] {
        let options = Options {
            policy: Some(reference.clone()),
            config: BaseConfig::new(
                "# mine\npolicy:\n  file: /somewhere/else.wasm  # replaced\n".into(),
                Facts::default(),
            ),
            ..Options::new(mode)
        };
        let out = ok(&deployment(APP), &options);
        let map = object(&out.text, "ConfigMap");
        assert_eq!(
            map["data"]["policy.ref"].as_str(),
            Some(&*format!("{reference}\n"))
        );
        let config = lameduck_yaml(&out.text);
        assert_eq!(
            config["policy"]["file"].as_str(),
            Some("/etc/lameduck/policy.ref")
        );
        // The reference file is in the volume lameduck's container mounts.
        let spec = pod_spec(&out.text);
        let mounts = serde_yaml::to_string(&spec).unwrap();
        assert!(mounts.contains("mountPath: /etc/lameduck"), "{mounts}");
    }
    // Without --policy, the ConfigMap holds the config alone.
    let out = ok(&deployment(APP), &Options::new(Mode::Sidecar));
    assert!(
        object(&out.text, "ConfigMap")["data"]
            .get("policy.ref")
            .is_none()
    );
}

#[test]
fn what_inject_cannot_do_well_is_said_in_a_note() {
    let list = "apiVersion: v1\nkind: List\nitems: []\n";
    let out = ok(list, &Options::new(Mode::Sidecar));
    assert_eq!(out.text, list);
    assert!(out.notes[0].contains("a List: inject does not look into its items"));

    let host = deployment(&format!("      hostNetwork: true\n{APP}"));
    let out = ok(&host, &Options::new(Mode::Sidecar));
    assert!(out.notes[0].contains("hostNetwork: lameduck's admin port 9911 is open on the node"));

    let mut options = Options::new(Mode::Entrypoint);
    options.commands.push(parse_command("api=/api").unwrap());
    let out = ok(&deployment(APP), &options);
    assert!(out.notes[0].contains("--command api=…: no container api was given it"));
}

#[test]
fn a_byte_order_mark_is_read_past_and_not_written() {
    let out = ok(
        &format!("\u{feff}{}", deployment(APP)),
        &Options::new(Mode::Sidecar),
    );
    assert!(!out.text.contains('\u{feff}'), "{}", out.text);
    assert_eq!(pod_spec(&out.text)["initContainers"][0]["name"], "lameduck");
}

#[test]
fn yaml_1_1_is_taken_and_other_versions_refused_as_the_api_server_does() {
    let text = |version: &str| format!("# one\n%YAML {version}\n---\n{}", deployment(APP));
    let e = refused(&text("1.2"), &Options::new(Mode::Sidecar));
    assert!(
        e.starts_with("test.yaml: document 1 at line 2: `%YAML 1.2`: the Kubernetes API server"),
        "{e}"
    );
    let out = ok(&text("1.1"), &Options::new(Mode::Sidecar));
    assert!(
        out.text.starts_with("# one\n%YAML 1.1\n---\n"),
        "{}",
        out.text
    );
}

#[test]
fn a_base_config_with_directives_keeps_them() {
    // yaml-edit's document refuses directives: this panicked (exit 101).
    let base = BaseConfig::new(
        "%YAML 1.2\n---\n# mine\ngrace_period: 30s\n".into(),
        Facts::default(),
    );
    assert_eq!(
        base.render(45, None, None).unwrap(),
        "%YAML 1.2\n---\n# mine\ngrace_period: 45s\n"
    );
    let base = BaseConfig::new("%YAML 1.2\n--- # the settings\n".into(), Facts::default());
    let rendered = base.render(45, None, None).unwrap();
    assert!(rendered.starts_with("%YAML 1.2\n---"), "{rendered}");
    assert!(rendered.ends_with("grace_period: 45s\n"), "{rendered}");
}

#[test]
fn a_grace_period_past_lameduck_s_durations_is_clamped_in_its_config_only() {
    let long = format!("      terminationGracePeriodSeconds: 4294968\n{APP}");
    let out = ok(&deployment(&long), &Options::new(Mode::Sidecar));
    assert_eq!(lameduck_yaml(&out.text)["grace_period"], "4294967s");
    assert_eq!(
        pod_spec(&out.text)["terminationGracePeriodSeconds"],
        4294968
    );
    assert!(
        out.notes[0].contains("its config says 4294967s (about 49.7 days), so its deadline comes 1s before the kubelet's"),
        "{:?}",
        out.notes
    );
    assert_eq!(out.configs.len(), 1);
    assert!(out.configs[0].config.contains("grace_period: 4294967s"));
    // The longest that fits is written as it is.
    let fits = format!("      terminationGracePeriodSeconds: 4294967\n{APP}");
    let out = ok(&deployment(&fits), &Options::new(Mode::Sidecar));
    assert_eq!(lameduck_yaml(&out.text)["grace_period"], "4294967s");
    assert!(out.notes.is_empty(), "{:?}", out.notes);
}

#[test]
fn input_past_the_bounds_is_refused_with_its_place() {
    let bomb = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\nx: &a [{}]\ny: [{}]\n",
        vec!["s"; 1_000].join(", "),
        vec!["*a"; 3_000].join(", ")
    );
    let e = refused(&bomb, &Options::new(Mode::Sidecar));
    assert!(
        e.starts_with("test.yaml:5:")
            && e.contains(": y[")
            && e.contains("more than 2000000 nodes"),
        "{e}"
    );
    let many = "---\na: 1\n".repeat(BOUNDS.documents + 1);
    let e = refused(&many, &Options::new(Mode::Sidecar));
    assert!(
        e.starts_with("test.yaml:20001:1: more than 10000 documents"),
        "{e}"
    );
    let e = parse_command(&format!("web=[{}]", "[".repeat(3))).unwrap_err();
    assert!(e.contains("nested more than 1 deep"), "{e}");
}

#[test]
fn documents_are_named_by_their_line_however_many_come_before() {
    let config_map = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
    let text = config_map.repeat(3) + "---\n# the app\n" + &deployment("      containers: []\n");
    let e = refused(&text, &Options::new(Mode::Sidecar));
    assert!(
        e.starts_with("test.yaml: document 4 at line 15 (Deployment/web): has no containers"),
        "{e}"
    );
}
