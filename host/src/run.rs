//! `lameduck run -- CMD`: start the app first, then everything else.

use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::sync::mpsc;

use crate::config::Config;
use crate::controller::{Controller, Deadlines, Event};
use crate::policy::{self, Compiler, Policy};
use crate::probes::Probes;
use crate::supervisor::{self, Reaper};
use crate::timeline::Timeline;

/// Runs `argv` under the agent; returns the status to exit with.
pub fn run(config: Config, argv: Vec<OsString>) -> i32 {
    // Everything that can be refused without compiling is refused before
    // the app starts.
    let source = config.policy.to_string();
    let bytes = match config.policy.read().and_then(|b| {
        policy::inspect(&b).map_err(|e| format!("{source}: {e}"))?;
        Ok(b)
    }) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("lameduck: policy {e}");
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

    let timeline = Timeline::default();
    timeline.record(
        None,
        "started",
        format!("started {} as pid {app}", argv[0].to_string_lossy()),
        serde_json::json!({ "pid": app }),
    );

    // The policy compiles beside the app; early signals wait for it.
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    {
        let events = event_tx.clone();
        let (limits, cache_dir, policy_config) = (
            config.limits,
            config.cache_dir.clone(),
            config.policy_config.clone(),
        );
        std::thread::Builder::new()
            .name("lameduck-compile".into())
            .spawn(move || {
                let loaded = Compiler::new(limits, cache_dir)
                    .map_err(|e| e.to_string())
                    .and_then(|compiler| {
                        compiler.compile(&source, &bytes).map_err(|e| e.to_string())
                    })
                    .and_then(|compiled| {
                        let instance = compiled
                            .instantiate(&policy_config)
                            .map_err(|e| e.to_string())?;
                        Ok((compiled, instance))
                    });
                let _ = events.send(match loaded {
                    Ok((compiled, instance)) => Event::PolicyLoaded(Arc::new(compiled), instance),
                    Err(reason) => Event::PolicyFailed { source, reason },
                });
            })
            .expect("spawn the compile thread");
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let exit = runtime.block_on(async move {
        let ready = Arc::new(AtomicBool::new(true));
        let controller = Controller::new(
            Deadlines {
                budget: config.drain_budget(),
                kill_pause: config.safety_margin / 2,
            },
            app,
            Policy::fallback_only(config.policy_config.clone()),
            true,
            Probes::new(&config.probes, reaper.clone(), app),
            timeline,
            ready,
        );
        let _events = event_tx;
        controller.run(signal_rx, event_rx, app_exit).await
    });
    exit.status()
}
