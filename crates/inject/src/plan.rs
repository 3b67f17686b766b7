//! Deciding what to change in one document, from a strict serde reading of
//! it. Every refusal happens here, before anything is edited.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde_yaml::Value;

use super::objects::{self, ANNOTATION, DEFAULT_CONTAINER};
use super::{Mode, Options};

/// A workload kind: its API group and kind, and where its pod template
/// (`metadata` and `spec`) is; a Pod is its own template.
#[derive(Debug)]
pub(super) struct Kind {
    group: &'static str,
    kind: &'static str,
    pub template: &'static [&'static str],
}

const KINDS: &[Kind] = &[
    Kind::new("", "Pod", &[]),
    Kind::new("apps", "Deployment", &["spec", "template"]),
    Kind::new("apps", "StatefulSet", &["spec", "template"]),
    Kind::new("apps", "DaemonSet", &["spec", "template"]),
    Kind::new("apps", "ReplicaSet", &["spec", "template"]),
    Kind::new("batch", "Job", &["spec", "template"]),
    Kind::new(
        "batch",
        "CronJob",
        &["spec", "jobTemplate", "spec", "template"],
    ),
];

impl Kind {
    const fn new(
        group: &'static str,
        kind: &'static str,
        template: &'static [&'static str],
    ) -> Self {
        Kind {
            group,
            kind,
            template,
        }
    }

    /// The kind of `object`, if it is a workload inject knows.
    fn of(object: &Value) -> Option<&'static Kind> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let kind = object.get("kind")?.as_str()?;
        // `v1` is the core group; `apps/v1` is the group `apps`.
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        KINDS.iter().find(|k| k.group == group && k.kind == kind)
    }
}

/// The parts of a pod template inject reads; the rest it never looks at.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PodTemplate {
    metadata: TemplateMetadata,
    spec: PodSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TemplateMetadata {
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PodSpec {
    containers: Vec<ContainerSpec>,
    init_containers: Vec<ContainerSpec>,
    volumes: Vec<Named>,
    termination_grace_period_seconds: Option<i64>,
    host_network: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ContainerSpec {
    name: String,
    command: Option<Vec<Value>>,
    args: Option<Vec<Value>>,
    env: Vec<Named>,
    volume_mounts: Vec<Mount>,
    ports: Vec<Port>,
    lifecycle: Option<Lifecycle>,
    readiness_probe: Option<Handler>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Named {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Mount {
    mount_path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Port {
    name: Option<String>,
    container_port: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Lifecycle {
    pre_stop: Option<Handler>,
}

/// A hook or a probe: an HTTP GET, or something else (exec, tcpSocket,
/// grpc, sleep) inject does not look into.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Handler {
    http_get: Option<HttpGet>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct HttpGet {
    path: Option<String>,
    port: Value,
    host: Option<String>,
    scheme: Option<String>,
    http_headers: Vec<Value>,
}

impl Handler {
    /// What the handler does, for messages: `httpGet /path on 8080`, `exec`.
    fn describe(&self) -> String {
        if let Some(get) = &self.http_get {
            return format!(
                "httpGet {} on port {}",
                get.path.as_deref().unwrap_or("/"),
                scalar(&get.port)
            );
        }
        const KINDS: [&str; 4] = ["exec", "tcpSocket", "grpc", "sleep"];
        KINDS
            .into_iter()
            .find(|k| self.rest.contains_key(*k))
            .unwrap_or("a handler")
            .to_string()
    }

    /// An HTTP GET of `path` on `port`.
    fn is_get(&self, path: &str, port: u16) -> bool {
        self.http_get.as_ref().is_some_and(|get| {
            get.path.as_deref() == Some(path) && port_number(&get.port) == Some(port)
        })
    }
}

/// What to do with a document.
#[derive(Debug)]
pub(super) enum Decision {
    /// Not a workload: copied as it is.
    Pass,
    /// A workload left as it is; the note says why.
    Leave(String),
    /// A workload to inject.
    Inject(Plan),
}

/// The changes to one workload, every value decided.
#[derive(Debug)]
pub(super) struct Plan {
    pub kind: &'static Kind,
    /// The app container's index in `containers`.
    pub app: usize,
    /// The pod's grace period, in seconds, and whether the pod lacked it.
    pub grace_seconds: u64,
    pub set_grace: bool,
    pub command: CommandChange,
    pub readiness: ReadinessChange,
    /// False when the app already has lameduck's preStop hook.
    pub add_prestop: bool,
    /// The ConfigMap to put before the workload.
    pub config_map: objects::ConfigMap,
    /// Things the user should know (a probe kept, a container chosen).
    pub notes: Vec<String>,
}

/// The app container's command.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum CommandChange {
    /// Sidecar mode: untouched.
    Keep,
    /// Entrypoint mode: `lameduck run --` goes in front of it.
    Wrap,
    /// Entrypoint mode, no command in the manifest: `--command NAME=…`
    /// gives it, and it is wrapped.
    Given { name: String, command: Vec<String> },
}

/// The app container's readiness probe.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ReadinessChange {
    Keep,
    /// No probe: lameduck's `/readyz`.
    Add,
    /// The probe's `httpGet` becomes `/readyz`; its timings stay.
    ReplaceHttpGet,
}

/// Why a workload cannot be injected as it is.
#[derive(Debug)]
pub(super) struct Refusal {
    pub container: Option<String>,
    pub message: String,
}

impl Refusal {
    fn pod(message: impl Into<String>) -> Self {
        Refusal {
            container: None,
            message: message.into(),
        }
    }

    fn container(name: &str, message: impl Into<String>) -> Self {
        Refusal {
            container: Some(name.to_string()),
            message: message.into(),
        }
    }
}

/// The longest grace period lameduck's config takes, in whole seconds: its
/// durations are `u32` milliseconds.
pub(super) const MAX_GRACE_SECONDS: u64 = u32::MAX as u64 / 1_000;

/// The ConfigMaps already in the input, by namespace and name.
pub(super) type ConfigMaps = HashSet<(Option<String>, String)>;

/// Decides what to do with `object`.
pub(super) fn decide(
    object: &Value,
    options: &Options,
    existing: &ConfigMaps,
) -> Result<Decision, Refusal> {
    let Some(kind) = Kind::of(object) else {
        if object.get("kind").and_then(Value::as_str) == Some("List") {
            return Ok(Decision::Leave(
                "a List: inject does not look into its items; give them as documents".into(),
            ));
        }
        return Ok(Decision::Pass);
    };
    let template = read_template(object, kind)?;
    let mode = options.mode;
    if let Some(note) = previous_injection(&template, mode)? {
        return Ok(Decision::Leave(note));
    }
    let spec = &template.spec;
    check_names_free(spec, mode)?;
    let admin_port = options.config.admin_port();
    check_port_free(spec, admin_port)?;

    let mut notes = Vec::new();
    if spec.host_network {
        notes.push(format!(
            "hostNetwork: lameduck's admin port {admin_port} is open on the node, and one pod \
             per node can have it"
        ));
    }
    let app = choose_app(&template, options.container.as_deref(), &mut notes)?;
    let container = &spec.containers[app];
    let add_prestop = check_prestop(container, admin_port)?;
    let (command, readiness, readiness_url) = match mode {
        Mode::Sidecar => (CommandChange::Keep, ReadinessChange::Keep, None),
        Mode::Entrypoint => {
            check_entrypoint_free(container)?;
            let command = command_change(container, options)?;
            let (readiness, url) = readiness_change(container, admin_port, &mut notes);
            (command, readiness, url)
        }
    };
    let (grace_seconds, set_grace) = grace(spec, options)?;
    // The API server takes any int64; lameduck's durations end at u32 ms.
    let config_grace = grace_seconds.min(MAX_GRACE_SECONDS);
    if config_grace < grace_seconds {
        notes.push(format!(
            "terminationGracePeriodSeconds {grace_seconds} is longer than lameduck's longest \
             grace period: its config says {MAX_GRACE_SECONDS}s (about 49.7 days), so its \
             deadline comes {}s before the kubelet's",
            grace_seconds - MAX_GRACE_SECONDS
        ));
    }

    let (config_map_name, namespace) = config_map_place(object, existing)?;
    let policy_file = options.policy.as_ref().map(|_| objects::policy_file());
    let config = options
        .config
        .render(
            config_grace,
            readiness_url.as_deref(),
            policy_file.as_deref(),
        )
        .map_err(Refusal::pod)?;
    Ok(Decision::Inject(Plan {
        kind,
        app,
        grace_seconds,
        set_grace,
        command,
        readiness,
        add_prestop,
        config_map: objects::ConfigMap::new(
            config_map_name,
            namespace,
            config,
            options.policy.as_deref(),
        ),
        notes,
    }))
}

/// The pod template of `object`, read strictly enough to decide.
fn read_template(object: &Value, kind: &Kind) -> Result<PodTemplate, Refusal> {
    let mut template = object;
    for key in kind.template {
        template = template.get(key).ok_or_else(|| {
            Refusal::pod(format!(
                "has no pod template at {}",
                kind.template.join(".")
            ))
        })?;
    }
    let at = |path: String| match kind.template {
        [] => path,
        keys => format!("{}.{path}", keys.join(".")),
    };
    serde_path_to_error::deserialize(template).map_err(|e| {
        let message = e.inner().to_string();
        Refusal::pod(format!("{}: {message}", at(e.path().to_string())))
    })
}

/// Why a pod that has lameduck already is left alone (injected in this
/// mode, or wired by hand); refuses one injected in the other mode.
fn previous_injection(template: &PodTemplate, mode: Mode) -> Result<Option<String>, Refusal> {
    if let Some(injected) = template.metadata.annotations.get(ANNOTATION) {
        return if injected == mode.as_str() {
            Ok(Some(format!(
                "already injected ({ANNOTATION}: {injected}); left as it is"
            )))
        } else {
            Err(Refusal::pod(format!(
                "already injected in {injected} mode ({ANNOTATION}); to change the mode, \
                 inject the original manifest"
            )))
        };
    }
    let spec = &template.spec;
    let wired = spec
        .containers
        .iter()
        .chain(&spec.init_containers)
        .find(|c| runs_lameduck(c));
    Ok(wired.map(|c| format!("container {} already runs lameduck; left as it is", c.name)))
}

/// The name and namespace of the workload's ConfigMap, which must not be
/// in the input already.
fn config_map_place(
    object: &Value,
    existing: &ConfigMaps,
) -> Result<(String, Option<String>), Refusal> {
    let field = |key: &str| object.get("metadata")?.get(key)?.as_str();
    let name = field("name")
        .ok_or_else(|| Refusal::pod("has no metadata.name, which its ConfigMap is named after"))?;
    let namespace = field("namespace").map(str::to_string);
    let name = objects::config_map_name(name);
    if existing.contains(&(namespace.clone(), name.clone())) {
        return Err(Refusal::pod(format!(
            "the input already has a ConfigMap {name}, the name inject gives lameduck's \
             config: rename it"
        )));
    }
    Ok((name, namespace))
}

/// A container whose command already starts lameduck: a pod wired by hand.
fn runs_lameduck(container: &ContainerSpec) -> bool {
    let first = container.command.as_deref().and_then(|c| c.first());
    first
        .and_then(Value::as_str)
        .is_some_and(|program| program.rsplit('/').next() == Some("lameduck"))
}

/// The names inject adds must not be taken.
fn check_names_free(spec: &PodSpec, mode: Mode) -> Result<(), Refusal> {
    let container = match mode {
        Mode::Entrypoint => objects::INSTALL,
        Mode::Sidecar => objects::SIDECAR,
    };
    if let Some(c) = spec
        .containers
        .iter()
        .chain(&spec.init_containers)
        .find(|c| c.name == container)
    {
        return Err(Refusal::container(
            &c.name,
            format!("the pod already has a container named {container}, the name inject uses"),
        ));
    }
    let volumes: &[&str] = match mode {
        Mode::Entrypoint => &[objects::BIN_VOLUME, objects::CONFIG_VOLUME],
        Mode::Sidecar => &[objects::CONFIG_VOLUME],
    };
    match spec
        .volumes
        .iter()
        .find(|v| volumes.contains(&v.name.as_str()))
    {
        Some(v) => Err(Refusal::pod(format!(
            "the pod already has a volume named {}, a name inject uses",
            v.name
        ))),
        None => Ok(()),
    }
}

/// lameduck's admin port is free in the pod's network namespace.
fn check_port_free(spec: &PodSpec, admin_port: u16) -> Result<(), Refusal> {
    for c in spec.containers.iter().chain(&spec.init_containers) {
        if c.ports
            .iter()
            .any(|p| p.container_port == i64::from(admin_port))
        {
            return Err(Refusal::container(
                &c.name,
                format!(
                    "listens on {admin_port}, lameduck's admin port: give lameduck another \
                     with admin.listen in a --config file"
                ),
            ));
        }
    }
    Ok(())
}

/// The app container: `--container`, else the one kubectl defaults to,
/// else the first.
fn choose_app(
    template: &PodTemplate,
    wanted: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<usize, Refusal> {
    let containers = &template.spec.containers;
    let names = || {
        containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if containers.is_empty() {
        return Err(Refusal::pod("has no containers"));
    }
    let annotated = template.metadata.annotations.get(DEFAULT_CONTAINER);
    let Some(name) = wanted.or(annotated.map(String::as_str)) else {
        if containers.len() > 1 {
            notes.push(format!(
                "lameduck drains container {}, the first of {}; choose another with --container",
                containers[0].name,
                names()
            ));
        }
        return Ok(0);
    };
    containers
        .iter()
        .position(|c| c.name == name)
        .ok_or_else(|| Refusal::pod(format!("has no container {name} (it has {})", names())))
}

/// Whether the app needs lameduck's preStop hook; refuses another hook.
fn check_prestop(container: &ContainerSpec, admin_port: u16) -> Result<bool, Refusal> {
    let Some(hook) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    else {
        return Ok(true);
    };
    if hook.is_get("/prestop", admin_port) {
        return Ok(false);
    }
    Err(Refusal::container(
        &container.name,
        format!(
            "already has a preStop hook ({}); lameduck's must be the only one: remove it \
             (a sleep is what lameduck's drain replaces) and inject again",
            hook.describe()
        ),
    ))
}

/// Entrypoint mode adds environment variables and mounts to the app:
/// they must not be there already.
fn check_entrypoint_free(container: &ContainerSpec) -> Result<(), Refusal> {
    if let Some(e) = container
        .env
        .iter()
        .find(|e| [objects::ENV_CONFIG, objects::ENV_NODE_IP].contains(&e.name.as_str()))
    {
        return Err(Refusal::container(
            &container.name,
            format!(
                "already sets {}, which inject sets (give lameduck's config with --config)",
                e.name
            ),
        ));
    }
    if let Some(m) = container.volume_mounts.iter().find(|m| {
        [objects::BIN_DIR, objects::CONFIG_DIR].contains(&m.mount_path.trim_end_matches('/'))
    }) {
        return Err(Refusal::container(
            &container.name,
            format!(
                "already mounts something at {}, where inject mounts lameduck's",
                m.mount_path
            ),
        ));
    }
    Ok(())
}

/// Entrypoint mode: the command to wrap. Without one in the manifest the
/// image's entrypoint would run, and inject cannot know it.
fn command_change(container: &ContainerSpec, options: &Options) -> Result<CommandChange, Refusal> {
    let name = &container.name;
    let given = options.commands.iter().find(|(n, _)| n == name);
    let has_command = container.command.as_ref().is_some_and(|c| !c.is_empty());
    match (has_command, given) {
        (true, None) => Ok(CommandChange::Wrap),
        (true, Some(_)) => Err(Refusal::container(
            name,
            format!("has a command of its own; --command {name}=… is for a container without one"),
        )),
        (false, Some((_, command))) => Ok(CommandChange::Given {
            name: name.clone(),
            command: command.clone(),
        }),
        (false, None) => {
            let has_args = container.args.as_ref().is_some_and(|a| !a.is_empty());
            let what = if has_args {
                "has args but no command, so it runs its image's ENTRYPOINT"
            } else {
                "has no command, so it runs its image's ENTRYPOINT and CMD"
            };
            let give = if has_args {
                "ENTRYPOINT"
            } else {
                "ENTRYPOINT and CMD"
            };
            Err(Refusal::container(
                name,
                format!(
                    "{what}, which inject cannot see and lameduck must run: give the image's \
                     {give} with --command '{name}=[/path/to/program, arg]' (docker inspect \
                     shows them), or use --mode sidecar, which leaves the command alone"
                ),
            ))
        }
    }
}

/// Entrypoint mode: the readiness probe becomes lameduck's `/readyz`; the
/// app's own HTTP check, if it had one, becomes `admin.readiness_url`,
/// which `/readyz` also requires.
fn readiness_change(
    container: &ContainerSpec,
    admin_port: u16,
    notes: &mut Vec<String>,
) -> (ReadinessChange, Option<String>) {
    let Some(probe) = &container.readiness_probe else {
        return (ReadinessChange::Add, None);
    };
    if probe.is_get("/readyz", admin_port) {
        return (ReadinessChange::Keep, None);
    }
    match readiness_url(probe, container) {
        Some(url) => (ReadinessChange::ReplaceHttpGet, Some(url)),
        None => {
            notes.push(format!(
                "container {} keeps its readinessProbe ({}), which lameduck cannot poll \
                 (it polls a plain HTTP GET on a port of the pod), so a drain does not turn \
                 the pod unready before preStop: point it at /readyz on port {admin_port} \
                 to have it do so",
                container.name,
                probe.describe()
            ));
            (ReadinessChange::Keep, None)
        }
    }
}

/// The app's readiness check as a URL lameduck can poll: a plain HTTP GET
/// on a port of this container (by number or by name), without headers.
fn readiness_url(probe: &Handler, container: &ContainerSpec) -> Option<String> {
    let get = probe.http_get.as_ref()?;
    let plain = get.host.is_none()
        && get.http_headers.is_empty()
        && get
            .scheme
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("http"));
    if !plain {
        return None;
    }
    let port = port_number(&get.port).or_else(|| {
        let name = get.port.as_str()?;
        let port = container
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name))?;
        u16::try_from(port.container_port).ok()
    })?;
    let path = get.path.as_deref().unwrap_or("/");
    let slash = if path.starts_with('/') { "" } else { "/" };
    let url = format!("http://127.0.0.1:{port}{slash}{path}");
    let uri: http::Uri = url.parse().ok()?;
    uri.host().is_some().then_some(url)
}

/// The pod's grace period (the kubelet's clock wins), or the one to give it.
fn grace(spec: &PodSpec, options: &Options) -> Result<(u64, bool), Refusal> {
    let (seconds, set) = match spec.termination_grace_period_seconds {
        Some(seconds) => {
            let seconds = u64::try_from(seconds)
                .map_err(|_| Refusal::pod(format!("terminationGracePeriodSeconds is {seconds}")))?;
            (seconds, false)
        }
        None => {
            let grace = options
                .grace_period
                .unwrap_or_else(|| options.config.grace_period());
            if grace.subsec_nanos() != 0 {
                return Err(Refusal::pod(format!(
                    "the grace period {grace:?} is not whole seconds, as \
                     terminationGracePeriodSeconds must be"
                )));
            }
            (grace.as_secs(), true)
        }
    };
    let margin = options.config.safety_margin();
    if std::time::Duration::from_secs(seconds) <= margin {
        return Err(Refusal::pod(format!(
            "terminationGracePeriodSeconds {seconds} leaves no time for a drain: it must be \
             longer than lameduck's safety_margin ({margin:?})"
        )));
    }
    Ok((seconds, set))
}

/// A port given as a number (or a string of digits).
fn port_number(port: &Value) -> Option<u16> {
    match port {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A scalar as it would be written.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default(),
    }
}
