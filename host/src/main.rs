//! The `lameduck` command.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use lameduck::config::{self, Config};
use lameduck::log::LogFormat;
use lameduck_core::record::printable;

/// A shutdown agent for Kubernetes pods: runs your app, and drains it when
/// the pod stops, as a WebAssembly policy decides.
#[derive(Parser)]
#[command(name = "lameduck", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run CMD as the container's main process and drain it on shutdown.
    Run {
        #[command(flatten)]
        settings: Settings,
        /// The app and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Run beside the app as a native sidecar, with no child of its own: the
    /// app's preStop hook calls /prestop, which holds until the app may be
    /// signalled; the kubelet then sends it TERM.
    Sidecar {
        #[command(flatten)]
        settings: Settings,
    },
    /// Load a policy (and a config) as `run` would, and print a verdict.
    Check {
        #[command(flatten)]
        settings: Settings,
    },
    /// Ask a policy what it would have decided during a recorded shutdown:
    /// replays the timeline of `/status` (saved to a file) call by call.
    Replay {
        #[command(flatten)]
        settings: Settings,
        /// Also draw the recorded drain as an SVG picture, to FILE.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// The saved answer of `/status` (e.g. `curl -s :9911/status`), or `-`.
        status: PathBuf,
    },
    /// Rehearse a policy on a virtual clock against a scenario (traffic,
    /// endpoint removal, what the app does with TERM); print the timeline and
    /// the figures: when the app was signalled, the waste, failed requests,
    /// whether the deadline was kept. Scenarios: `scenarios/`.
    Simulate {
        #[command(flatten)]
        settings: Settings,
        /// Also draw the drain as an SVG picture into FILE.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// The scenario (YAML).
        scenario: PathBuf,
    },
    /// Check a policy component as `check` does (compiled, instantiated,
    /// `init`-ed with an empty config), push it to a registry as a wasm
    /// artifact, and print the reference pinned to its digest as the last
    /// line: `oci://REGISTRY/REPO@sha256:…`, to put in policy.file or in a
    /// ConfigMap's reference file. Takes the registry settings of `run`.
    Push {
        #[command(flatten)]
        settings: Settings,
        /// The component.
        file: PathBuf,
        /// Where to push it: oci://REGISTRY/REPO:TAG.
        #[arg(value_name = "oci://REGISTRY/REPO:TAG")]
        target: String,
    },
    /// Copy this binary to DEST (for an init container: the image has no `cp`).
    Install {
        /// Where to put the binary, e.g. /lameduck/lameduck on an emptyDir.
        dest: PathBuf,
    },
    /// Add lameduck to Kubernetes manifests and print them:
    /// `lameduck inject -f app.yaml | kubectl apply -f -`.
    ///
    /// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and
    /// Pods get lameduck, the app container's preStop hook on /prestop, a
    /// terminationGracePeriodSeconds equal to lameduck's grace_period, and a
    /// ConfigMap NAME-lameduck with the config; other documents are copied as
    /// they are. Comments, key order and formatting are kept. An object
    /// already injected (annotation lameduck.dev/injected) is left as it is,
    /// so injecting twice changes nothing. Nothing is printed on an error
    /// (exit status 2).
    Inject(InjectArgs),
}

#[derive(Args)]
struct InjectArgs {
    /// The manifests: a file, or `-` for standard input.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE",
        default_value = "-"
    )]
    file: PathBuf,
    /// Where lameduck runs in the pod.
    #[arg(long, value_enum, default_value = "entrypoint")]
    mode: lameduck_inject::Mode,
    /// The lameduck image.
    #[arg(long, value_name = "IMAGE", default_value_t = lameduck_inject::default_image())]
    image: String,
    /// The grace period of pods that do not set terminationGracePeriodSeconds
    /// (a pod's own is kept) [default: the config's grace_period, 30s].
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    grace_period: Option<Duration>,
    /// A lameduck config to start from (its comments are kept); inject sets
    /// its grace_period, and its admin.listen port is the one the kubelet calls.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The app container [default: the pod's kubectl.kubernetes.io/default-container, else the first].
    #[arg(long, value_name = "NAME")]
    container: Option<String>,
    /// Entrypoint mode: the command of a container whose manifest has none (the
    /// image's ENTRYPOINT, and its CMD unless the container has args), as a
    /// list or as words: --command 'web=[/docker-entrypoint.sh, nginx, -g, "daemon off;"]'.
    #[arg(long, value_name = "NAME=CMD", value_parser = lameduck_inject::parse_command)]
    command: Vec<(String, Vec<String>)>,
    /// The policy, by reference: oci://REGISTRY/REPO@sha256:DIGEST (what
    /// `lameduck push` prints). The ConfigMap holds it under the key
    /// policy.ref, the file policy.file names: change it there, and lameduck
    /// pulls and swaps the policy while the app serves.
    #[arg(long, value_name = "oci://REF", value_parser = lameduck::inject::policy_reference)]
    policy: Option<String>,
}

impl InjectArgs {
    fn options(self) -> Result<lameduck_inject::Options, String> {
        let config = match &self.config {
            Some(path) => lameduck::inject::base_config(path)?,
            None => lameduck_inject::BaseConfig::default(),
        };
        Ok(lameduck_inject::Options {
            mode: self.mode,
            image: self.image,
            grace_period: self.grace_period,
            config,
            container: self.container,
            commands: self.command,
            policy: self.policy,
        })
    }
}

/// `lameduck inject`: everything or nothing on standard output.
fn inject(args: InjectArgs) -> i32 {
    use std::io::Write;
    let read = lameduck::inject::read_manifests(&args.file);
    let result = read.and_then(|(name, text)| {
        let options = args.options()?;
        let injected =
            lameduck_inject::inject(&name, &text, &options).map_err(|e| e.to_string())?;
        lameduck::inject::check_written(&injected)?;
        Ok(injected)
    });
    match result {
        Ok(injected) => {
            for note in &injected.notes {
                eprintln!("lameduck inject: {}", printable(note));
            }
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(injected.text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("lameduck inject: {e}");
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("lameduck inject: {}", printable(&e));
            2
        }
    }
}

/// Every setting is a flag, an environment variable and a config key (but
/// the admin token, never a flag); flags win over the environment, which
/// wins over the file. Declared once each, in `lameduck::config`.
type Settings = config::Args;

/// The configuration, or exit 2 with what is wrong and where.
fn load(settings: &Settings) -> Config {
    match settings.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("lameduck: {}", printable(&e.to_string()));
            std::process::exit(2);
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAMEDUCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Copies the running binary to `dest`, executable, through a temporary file
/// and a rename, so an init container that runs again never leaves half a file.
fn install(dest: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = dest.with_extension("tmp");
    std::fs::copy("/proc/self/exe", &tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, dest)
}

/// For commands that print: a closed pipe (`| head`) ends them quietly, as
/// it does other Unix tools, instead of a panic on the next print.
fn die_on_closed_pipe() {
    // SAFETY: restoring a default disposition, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

fn main() {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Run { settings, command } => {
            let config = load(&settings);
            init_logging(config.log_format);
            lameduck::run::run(config, command)
        }
        Command::Sidecar { settings } => {
            let config = load(&settings);
            init_logging(config.log_format);
            lameduck::run::sidecar(config)
        }
        Command::Check { settings } => {
            die_on_closed_pipe();
            let config = load(&settings);
            init_logging(config.log_format);
            lameduck::check::check(&config, settings.config.as_deref())
        }
        Command::Replay {
            settings,
            svg,
            status,
        } => {
            die_on_closed_pipe();
            let config = load(&settings);
            init_logging(config.log_format);
            lameduck::replay::replay(&config, &status, svg.as_deref())
        }
        Command::Inject(args) => {
            die_on_closed_pipe();
            inject(args)
        }
        Command::Simulate {
            settings,
            svg,
            scenario,
        } => {
            die_on_closed_pipe();
            let config = load(&settings);
            init_logging(config.log_format);
            lameduck::simulate::simulate(&config, &scenario, svg.as_deref())
        }
        Command::Push {
            settings,
            file,
            target,
        } => {
            die_on_closed_pipe();
            let config = load(&settings);
            init_logging(config.log_format);
            lameduck::push::push(&config, &file, &target)
        }
        Command::Install { dest } => match install(&dest) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("lameduck: install {}: {e}", dest.display());
                1
            }
        },
    };
    std::process::exit(status);
}
