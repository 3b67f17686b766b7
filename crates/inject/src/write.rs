//! Applying a [`Plan`] to a document with yaml-edit, which changes only
//! the nodes it is told to: comments, key order, quoting and indentation
//! elsewhere stay as they were, and new nodes follow their parent's
//! indentation.

use serde_yaml::Value;
use yaml_edit::{AsYaml, Document, Mapping, Sequence, YamlNode};

use super::objects::{self, Container, EnvVar, HttpGet, HttpHandler, Probe, Volume, VolumeMount};
use super::plan::{CommandChange, Plan, ReadinessChange};
use super::{Mode, Options};

/// A place yaml-edit cannot edit as serde read it: an alias (`*name`), or
/// a tag.
#[derive(Debug)]
pub(super) struct Unedited(pub String);

/// Writes `plan` into `doc`.
pub(super) fn apply(doc: &Document, plan: &Plan, options: &Options) -> Result<(), Unedited> {
    let root = doc
        .as_mapping()
        .ok_or_else(|| Unedited("the document".into()))?;
    let template = descend(&root, plan.kind.template)?;
    annotate(&template, options.mode)?;
    let spec = descend(&template, &["spec"])?;
    if plan.set_grace {
        let grace = i64::try_from(plan.grace_seconds).unwrap_or(i64::MAX);
        spec.insert_before("containers", "terminationGracePeriodSeconds", grace);
    }
    let app = spec
        .get_sequence("containers")
        .and_then(|containers| containers.get(plan.app))
        .and_then(|node| node.as_mapping().cloned())
        .ok_or_else(|| Unedited(format!("containers[{}]", plan.app)))?;
    let port = options.config.admin_port();
    let config_map = &plan.config_map.metadata.name;
    let (init, volumes) = match options.mode {
        Mode::Sidecar => (
            Container::sidecar(&options.image, port),
            vec![Volume::config(config_map)],
        ),
        Mode::Entrypoint => {
            wrap_app(&app, plan, port)?;
            let volumes = vec![Volume::bin(), Volume::config(config_map)];
            (Container::install(&options.image), volumes)
        }
    };
    if plan.add_prestop {
        let hook = HttpHandler {
            http_get: HttpGet::prestop(port),
        };
        let lifecycle = ensure_mapping(&app, "lifecycle")?;
        put(&lifecycle, "preStop", &objects::to_value(&hook));
    }
    // First, so the sidecar is up before other init containers and the app.
    if spec.get("initContainers").is_none() {
        spec.insert_before("containers", "initContainers", Sequence::new());
    }
    insert(
        &ensure_sequence(&spec, "initContainers")?,
        0,
        &objects::to_value(&init),
    );
    let pod_volumes = ensure_sequence(&spec, "volumes")?;
    for volume in &volumes {
        push(&pod_volumes, &objects::to_value(volume));
    }
    Ok(())
}

/// Marks the pod template as injected in `mode`; `metadata` goes before
/// `spec`, where people write it.
fn annotate(template: &Mapping, mode: Mode) -> Result<(), Unedited> {
    if template.get("metadata").is_none() {
        template.insert_before("spec", "metadata", Mapping::new());
    }
    let annotations = ensure_mapping(&ensure_mapping(template, "metadata")?, "annotations")?;
    annotations.set(objects::ANNOTATION, mode.as_str());
    Ok(())
}

/// Entrypoint mode: the app runs under lameduck, which finds its config
/// and the node's IP in the environment and serves `/readyz`.
fn wrap_app(app: &Mapping, plan: &Plan, port: u16) -> Result<(), Unedited> {
    wrap_command(app, &plan.command)?;
    let env = ensure_sequence(app, "env")?;
    for var in EnvVar::lameduck() {
        push(&env, &objects::to_value(&var));
    }
    let mounts = ensure_sequence(app, "volumeMounts")?;
    let bin = VolumeMount::new(objects::BIN_VOLUME, objects::BIN_DIR, true);
    push(&mounts, &objects::to_value(&bin));
    push(&mounts, &objects::to_value(&VolumeMount::config()));
    set_readiness(app, &plan.readiness, port)
}

/// Entrypoint mode: `lameduck run --` in front of the command, which keeps
/// the style (flow or block) and quoting it was written with.
fn wrap_command(app: &Mapping, change: &CommandChange) -> Result<(), Unedited> {
    if let CommandChange::Given { command, .. } = change {
        let given: Vec<Value> = command.iter().map(|a| Value::from(a.as_str())).collect();
        // After the image, where a command is usually written.
        if !app.insert_after("image", "command", Sequence::new()) {
            app.set("command", Sequence::new());
        }
        fill_sequence(&ensure_sequence(app, "command")?, &given);
    }
    let command = ensure_sequence(app, "command")?;
    for (i, arg) in [objects::wrapped_binary().as_str(), "run", "--"]
        .into_iter()
        .enumerate()
    {
        command.insert(i, arg);
    }
    Ok(())
}

/// Entrypoint mode: the app's readiness probe is lameduck's `/readyz`.
fn set_readiness(app: &Mapping, change: &ReadinessChange, port: u16) -> Result<(), Unedited> {
    match change {
        ReadinessChange::Keep => {}
        ReadinessChange::Add => put(
            app,
            "readinessProbe",
            &objects::to_value(&Probe::readyz(port)),
        ),
        ReadinessChange::ReplaceHttpGet => {
            let probe = ensure_mapping(app, "readinessProbe")?;
            put(
                &probe,
                "httpGet",
                &objects::to_value(&HttpGet::readyz(port)),
            );
        }
    }
    Ok(())
}

/// The mapping at `path` under `from`.
fn descend(from: &Mapping, path: &[&str]) -> Result<Mapping, Unedited> {
    let mut at = from.clone();
    for (i, key) in path.iter().enumerate() {
        at = at
            .get_mapping(key)
            .ok_or_else(|| Unedited(path[..=i].join(".")))?;
    }
    Ok(at)
}

/// The mapping at `key`, made if absent or null.
fn ensure_mapping(parent: &Mapping, key: &str) -> Result<Mapping, Unedited> {
    ensure(parent, key, Mapping::new, |node| node.as_mapping().cloned())
}

/// The sequence at `key`, made if absent or null.
fn ensure_sequence(parent: &Mapping, key: &str) -> Result<Sequence, Unedited> {
    ensure(parent, key, Sequence::new, |node| {
        node.as_sequence().cloned()
    })
}

/// The node at `key` as `cast` reads it, `empty()` put there if absent or
/// null; anything else (an alias) is not edited.
fn ensure<T, E: AsYaml>(
    parent: &Mapping,
    key: &str,
    empty: fn() -> E,
    cast: fn(&YamlNode) -> Option<T>,
) -> Result<T, Unedited> {
    if let Some(node) = parent.get(key) {
        if let Some(found) = cast(&node) {
            return Ok(found);
        }
        if !is_null(&node) {
            return Err(Unedited(key.into()));
        }
    }
    parent.set(key, empty());
    let made = parent.get(key).and_then(|node| cast(&node));
    made.ok_or_else(|| Unedited(key.into()))
}

fn is_null(node: &YamlNode) -> bool {
    node.as_scalar().is_some_and(|s| s.is_null())
}

/// Sets `key` to `value`, built in place so that it takes the document's
/// indentation.
fn put(parent: &Mapping, key: &str, value: &Value) {
    match value {
        Value::Mapping(entries) => {
            parent.set(key, Mapping::new());
            let child = parent.get_mapping(key).expect("just set");
            fill_mapping(&child, entries);
        }
        Value::Sequence(items) => {
            parent.set(key, Sequence::new());
            let child = parent.get_sequence(key).expect("just set");
            fill_sequence(&child, items);
        }
        scalar => set_scalar(parent, key, scalar),
    }
}

fn fill_mapping(mapping: &Mapping, entries: &serde_yaml::Mapping) {
    for (key, value) in entries {
        put(
            mapping,
            key.as_str().expect("inject writes string keys"),
            value,
        );
    }
}

fn fill_sequence(sequence: &Sequence, items: &[Value]) {
    for item in items {
        push(sequence, item);
    }
}

/// Appends `value` to `sequence`.
fn push(sequence: &Sequence, value: &Value) {
    insert(sequence, sequence.len(), value);
}

/// Inserts `value` at `index`, built in place.
fn insert(sequence: &Sequence, index: usize, value: &Value) {
    match value {
        Value::Mapping(entries) => {
            sequence.insert(index, Mapping::new());
            let item = sequence.get(index).expect("just inserted");
            fill_mapping(item.as_mapping().expect("a mapping"), entries);
        }
        Value::Sequence(items) => {
            sequence.insert(index, Sequence::new());
            let item = sequence.get(index).expect("just inserted");
            fill_sequence(item.as_sequence().expect("a sequence"), items);
        }
        Value::String(s) => sequence.insert(index, s.as_str()),
        Value::Bool(b) => sequence.insert(index, *b),
        Value::Number(n) => sequence.insert(index, n.as_i64().expect("inject writes integers")),
        _ => unreachable!("inject writes strings, numbers, booleans and collections"),
    }
}

fn set_scalar(parent: &Mapping, key: &str, value: &Value) {
    match value {
        Value::String(s) => parent.set(key, s.as_str()),
        Value::Bool(b) => parent.set(key, *b),
        Value::Number(n) => parent.set(key, n.as_i64().expect("inject writes integers")),
        _ => unreachable!("inject writes strings, numbers, booleans and collections"),
    }
}
