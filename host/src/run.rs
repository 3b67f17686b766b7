//! `lameduck run -- CMD`: start the app first, then everything else; and
//! `lameduck sidecar`: the same agent beside an app it did not start.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use lameduck_core::Mode;
use lameduck_core::record::Event;
use lameduck_runtime::Policy;
use tokio::sync::oneshot;

use crate::admin::{self, Admin};
use crate::config::Config;
use crate::controller::{self, App, Controller};
use crate::decider::Decider;
use crate::inbox::{self, Message, Role};
use crate::log::Log;
use crate::probes::{Agent, Get, Own, Probes};
use crate::reload::Reloader;
use crate::shared::Shared;
use crate::supervisor::{self, Exit, Reaper};
use lameduck_picture::Frame;

/// Runs `argv` under the agent; returns the status to exit with.
pub fn run(config: Config, argv: Vec<OsString>) -> i32 {
    let admin_listener = match prepare(&config) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("lameduck: {e}");
            return 2;
        }
    };
    supervisor::block_signals();
    supervisor::become_subreaper();
    let reaper = Arc::new(Reaper::default());
    let (app, app_exit) = match supervisor::spawn_app(&reaper, &argv) {
        Ok(spawned) => spawned,
        Err(e) => {
            eprintln!("lameduck: {e}");
            return e.status();
        }
    };
    let started = Event::Started {
        pid: Some(app),
        program: Some(argv[0].to_string_lossy().into_owned()),
    };
    agent(
        config,
        App::Child(app),
        reaper,
        admin_listener,
        started,
        Some(app_exit),
    )
}

/// Runs the agent beside an app it did not start (a native sidecar): the
/// app's `preStop` hook calls `/prestop`, which holds until the policy says
/// the app may be signalled; the kubelet then sends it TERM. Returns when
/// the kubelet stops the sidecar.
pub fn sidecar(config: Config) -> i32 {
    let admin_listener = match prepare(&config) {
        Ok(Some(listener)) => listener,
        Ok(None) => {
            eprintln!(
                "lameduck: a sidecar needs its admin server: the app's preStop calls /prestop"
            );
            return 2;
        }
        Err(e) => {
            eprintln!("lameduck: {e}");
            return 2;
        }
    };
    supervisor::block_signals();
    let reaper = Arc::new(Reaper::default());
    let started = Event::Started {
        pid: None,
        program: None,
    };
    agent(
        config,
        App::Beside,
        reaper,
        Some(admin_listener),
        started,
        None,
    )
}

/// Everything that can be refused without compiling is refused before the
/// app starts (the policy is read in full beside it); a reference's syntax
/// is checked, but the registry is not called before the app starts. The
/// admin port is bound, so that a port in use is a configuration error.
fn prepare(config: &Config) -> Result<Option<std::net::TcpListener>, String> {
    config.policy.inspect().map_err(|e| format!("policy {e}"))?;
    let listener = config.admin.map(bind).transpose();
    listener.map_err(|e| format!("admin server: {e}"))
}

/// The agent around `app`: signals are taken on a thread of their own,
/// the policy compiles beside the app, the admin server serves on its own
/// thread, and the controller runs until the end. `app_exit` says when the
/// app (our child) exits.
fn agent(
    config: Config,
    app: App,
    reaper: Arc<Reaper>,
    admin_listener: Option<std::net::TcpListener>,
    started: Event,
    app_exit: Option<oneshot::Receiver<Exit>>,
) -> i32 {
    let (sender, inbox) = inbox::channel();
    let signals = sender.clone();
    supervisor::start_signal_thread(reaper.clone(), move |signal| {
        signals.send(Message::Signal(signal)).is_ok()
    });
    let log = Log::new(config.log_format);
    let shared = Arc::new(Shared::new(
        serde_json::to_value(&config).expect("the config serializes"),
        config.shadow.is_some(),
        log,
    ));
    let pid = match app {
        App::Child(pid) => Some(pid),
        App::Beside => None,
    };
    shared.timeline.record(None, started);
    let own = Own::default();
    let agent_itself = Agent {
        admin_port: admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port()),
        node_ip: config.node_ip,
        own: own.clone(),
    };
    let probes = Probes::new(&config.probes, reaper, pid, &agent_itself);
    // The policy compiles beside the app; early signals wait for it.
    // A policy named by a reference is pulled on the same thread, first.
    let reloader = Reloader::start(Role::Live, config.policy.clone(), &config, sender.clone());
    // A shadow, if any, loads on its own thread, in its own engine.
    let shadow = config
        .shadow
        .clone()
        .map(|source| Reloader::start(Role::Shadow, source, &config, sender.clone()));
    if let Some(listener) = admin_listener {
        let address = listener.local_addr().expect("a bound listener");
        shared.timeline.record(
            None,
            Event::Admin {
                address: address.to_string(),
            },
        );
        let admin = Admin {
            shared: shared.clone(),
            inbox: sender.clone(),
            readiness: config
                .readiness_url
                .as_ref()
                .map(|url| Get::new(url, own.clone())),
            own: own.clone(),
            frame: Frame {
                budget_ms: Some(config.drain_budget().as_millis() as u64),
                grace_period_ms: Some(config.grace_period.as_millis() as u64),
            },
            limits: Default::default(),
            push: config
                .push_token()
                .map(|token| (token.to_string(), reloader.clone())),
            prestop_token: config.prestop_token().map(str::to_string),
        };
        admin::start(listener, admin);
    }
    let mode = match app {
        App::Child(_) => Mode::Entrypoint,
        App::Beside => Mode::Sidecar,
    };
    let settings = controller::settings(&config, mode, &probes, true);
    let decider = Decider::start(
        Policy::fallback_only(config.policy_config.clone()),
        config.shadow.is_some(),
        config.patience(),
        sender.clone(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let answering = shared.clone();
    let exit = runtime.block_on(async move {
        if let Some(app_exit) = app_exit {
            let sender = sender.clone();
            tokio::spawn(async move {
                if let Ok(exit) = app_exit.await {
                    let _ = sender.send(Message::AppExited(exit));
                }
            });
        }
        let controller = Controller::new(
            settings,
            app,
            decider,
            probes,
            shared,
            match config.reload_signal {
                Some(_) => [Some(reloader), shadow].into_iter().flatten().collect(),
                None => Vec::new(),
            },
            sender,
        );
        controller.run(inbox).await
    });
    // A probe stuck in a blocking read (a FIFO) must not hold the exit.
    runtime.shutdown_background();
    // The answers owed to released `/prestop` calls go out first.
    answering.let_prestops_go(Duration::from_millis(500));
    exit.status()
}

/// Binds the admin server's socket before the app starts.
fn bind(address: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{address}: {e}")))?;
    // A longer queue than std's 128: in a flood of clients, the kubelet's
    // probe waits its turn rather than for a SYN to be sent again (1 s).
    // (nix's `Backlog` refuses more than the libc's SOMAXCONN, 128 in musl;
    // the kernel caps it at `net.core.somaxconn` itself.)
    use std::os::fd::AsRawFd;
    // SAFETY: listen(2) again on a socket this function owns.
    if unsafe { libc::listen(listener.as_raw_fd(), 1024) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}
