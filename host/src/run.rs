//! `lameduck run -- CMD`: start the app first, then everything else.

use std::ffi::OsString;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::admin::{self, Admin};
use crate::config::Config;
use crate::controller::{Controller, Deadlines};
use crate::policy::Policy;
use crate::probes::{Agent, Probes};
use crate::reload::Reloader;
use crate::shared::Shared;
use crate::supervisor::{self, Reaper};

/// Runs `argv` under the agent; returns the status to exit with.
pub fn run(config: Config, argv: Vec<OsString>) -> i32 {
    // Everything that can be refused without compiling is refused before
    // the app starts; the policy is read in full beside it.
    if let Err(e) = config.policy.inspect() {
        eprintln!("lameduck: policy {e}");
        return 2;
    }

    let admin_listener = match config.admin.map(bind).transpose() {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("lameduck: admin server: {e}");
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
    let (signal_tx, signal_rx) = mpsc::unbounded_channel();
    supervisor::start_signal_thread(reaper.clone(), signal_tx);

    let shared = Arc::new(Shared::new(config.summary()));
    shared.timeline.record(
        None,
        "started",
        format!("started {} as pid {app}", argv[0].to_string_lossy()),
        serde_json::json!({ "pid": app }),
    );

    // The policy compiles beside the app; early signals wait for it.
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let reloader = Reloader::start(
        config.limits,
        config.cache_dir.clone(),
        config.policy.clone(),
        config.policy_config.clone(),
        event_tx.clone(),
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let exit = runtime.block_on(async move {
        if let Some(listener) = admin_listener {
            let address = listener.local_addr().expect("a bound listener");
            shared.timeline.record(
                None,
                "admin",
                format!("admin server listening on {address}"),
                serde_json::json!({ "address": address.to_string() }),
            );
            let admin = Admin {
                shared: shared.clone(),
                events: event_tx.clone(),
                readiness_url: config.readiness_url.clone(),
                push: config
                    .push_token()
                    .map(|token| (token.to_string(), reloader.clone())),
                prestop_token: config.prestop_token().map(str::to_string),
            };
            tokio::spawn(admin::serve(listener, Arc::new(admin)));
        }
        let controller = Controller::new(
            Deadlines {
                budget: config.drain_budget(),
                kill_pause: config.safety_margin / 2,
            },
            app,
            Policy::fallback_only(config.policy_config.clone()),
            true,
            Probes::new(
                &config.probes,
                reaper.clone(),
                app,
                Agent {
                    admin_port: config.admin.map(|a| a.port()),
                    node_ip: config.node_ip,
                },
            ),
            shared,
            config.reload_signal.map(|signal| (signal, reloader)),
        );
        let _events = event_tx;
        controller.run(signal_rx, event_rx, app_exit).await
    });
    exit.status()
}

/// Binds the admin server's socket before the app starts, so a port in use
/// is a configuration error, not a surprise later.
fn bind(address: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{address}: {e}")))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}
