//! One sandboxed policy instance and the budgets around each call into it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{Engine, EngineWeak, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{v0_1, v0_2, v0_3};
use super::convert;
use super::output::{GuestOutput, Lines};
use super::{
    Decision, Level, Limits, MAX_ERROR, MAX_REASON, PolicyError, Signal, SignalAction, Snapshot,
    bounded,
};

/// What the host keeps for one instance: the empty WASI context, the memory
/// budget and the CPU deadline of the call in progress.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryBudget,
    deadline: Duration,
    lines: Arc<Lines>,
}

/// The most random bytes one WASI call may ask for: the host allocates what
/// is asked (wasmtime-wasi's default is 64 MiB, half a second of work).
const MAX_RANDOM: u64 = 64 << 10;

/// The most host resources (streams, pollables) an instance may hold at
/// once: each costs the host memory that the memory budget does not see.
const MAX_RESOURCES: usize = 4096;

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl State {
    fn log(&self, level: Level, message: String) {
        self.lines.write(level, None, &message);
    }
}

/// The `host` interface of a version of the world: its `log`.
macro_rules! host {
    ($version:ident) => {
        impl $version::lameduck::policy::types::Host for State {}

        impl $version::lameduck::policy::host::Host for State {
            fn log(&mut self, level: $version::lameduck::policy::types::Level, message: String) {
                use $version::lameduck::policy::types::Level as L;
                let level = match level {
                    L::Debug => Level::Debug,
                    L::Info => Level::Info,
                    L::Warn => Level::Warn,
                    L::Error => Level::Error,
                };
                State::log(self, level, message);
            }
        }
    };
}

host!(v0_3);
host!(v0_2);
host!(v0_1);

/// A component checked against one of the versions of the world.
#[derive(Clone)]
pub enum Pre {
    V0_3(v0_3::DrainPolicyPre<State>),
    V0_2(v0_2::DrainPolicyPre<State>),
    V0_1(v0_1::DrainPolicyPre<State>),
}

/// An instance's exports, by version.
enum Bindings {
    V0_3(v0_3::DrainPolicy),
    V0_2(v0_2::DrainPolicy),
    V0_1(v0_1::DrainPolicy),
}

/// The WASI version whose clock this agent's linker provides.
const WASI_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// A pollable that is always ready.
struct Ready;

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for Ready {
    async fn ready(&mut self) {}
}

/// Makes the clock's timers ready at once. Epoch interruption stops a policy
/// only while it runs wasm code; a wait inside the host (a sleep through
/// `wasi:io/poll`) would hold the controller, and the deadline with it.
/// Time only enters the sandbox through these two functions — streams are
/// always ready, sockets and files are denied — so with them a policy can
/// never wait: a sleep returns at once.
pub(super) fn forbid_waiting(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    fn ready(state: &mut State) -> wasmtime::Result<(Resource<DynPollable>,)> {
        let ready = state.table.push(Ready)?;
        Ok((wasmtime_wasi::p2::subscribe(&mut state.table, ready)?,))
    }
    linker.allow_shadowing(true);
    let mut clock = linker.instance(WASI_CLOCK)?;
    clock.func_wrap("subscribe-duration", |mut store, (_,): (u64,)| {
        ready(store.data_mut())
    })?;
    clock.func_wrap("subscribe-instant", |mut store, (_,): (u64,)| {
        ready(store.data_mut())
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The memory of an instance: its linear memories and tables, together,
/// within one limit. Per memory, a policy could declare a hundred of them.
struct MemoryBudget {
    limit: usize,
    used: usize,
    /// The growth last allowed, taken back if it then failed.
    growing: usize,
}

/// What the host spends on a table element (a pointer).
const TABLE_ELEMENT: usize = std::mem::size_of::<usize>();

#[derive(Debug, thiserror::Error)]
#[error("memory limit reached")]
struct MemoryCapReached;

impl MemoryBudget {
    fn grow(&mut self, bytes: usize) -> wasmtime::Result<bool> {
        let used = self.used.saturating_add(bytes);
        if used > self.limit {
            return Err(MemoryCapReached.into());
        }
        self.used = used;
        self.growing = bytes;
        Ok(true)
    }

    fn failed(&mut self) {
        self.used -= std::mem::take(&mut self.growing);
    }
}

impl ResourceLimiter for MemoryBudget {
    /// Also called for each memory an instance creates (from 0).
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.failed();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            desired
                .saturating_sub(current)
                .saturating_mul(TABLE_ELEMENT),
        )
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.failed();
        Ok(())
    }
}

/// A live policy instance. Each call runs within the CPU budget; a call that
/// fails leaves the instance unusable, and the caller starts a new one.
pub struct Instance {
    store: Store<State>,
    bindings: Bindings,
    limits: Limits,
    ticker: Arc<Ticker>,
}

impl Instance {
    pub(super) fn new(
        pre: &Pre,
        limits: Limits,
        ticker: Arc<Ticker>,
        lines: Arc<Lines>,
        config: &[(String, String)],
    ) -> Result<Self, PolicyError> {
        let wasi = WasiCtxBuilder::new()
            .stdout(GuestOutput::new(lines.clone(), "stdout"))
            .stderr(GuestOutput::new(lines.clone(), "stderr"))
            .allow_tcp(false)
            .allow_udp(false)
            .max_random_size(MAX_RANDOM)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        let state = State {
            wasi,
            table,
            memory: MemoryBudget {
                limit: limits.memory,
                used: 0,
                growing: 0,
            },
            deadline: Duration::ZERO,
            lines,
        };
        let engine = match pre {
            Pre::V0_3(pre) => pre.engine(),
            Pre::V0_2(pre) => pre.engine(),
            Pre::V0_1(pre) => pre.engine(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.memory);
        // Runs on the thread executing the policy, at every tick.
        store.epoch_deadline_callback(|ctx| {
            Ok(
                if cpu_time::ThreadTime::now().as_duration() >= ctx.data().deadline {
                    UpdateDeadline::Interrupt
                } else {
                    UpdateDeadline::Continue(1)
                },
            )
        });
        // Instantiating and `init` have a budget of their own: once per
        // instance, off the drain's path.
        let bindings = arm(
            &mut store,
            &ticker,
            limits.init,
            limits,
            |store| match pre {
                Pre::V0_3(pre) => pre.instantiate(store).map(Bindings::V0_3),
                Pre::V0_2(pre) => pre.instantiate(store).map(Bindings::V0_2),
                Pre::V0_1(pre) => pre.instantiate(store).map(Bindings::V0_1),
            },
        )?;
        let mut instance = Instance {
            bindings,
            store,
            limits,
            ticker,
        };
        let bindings = &instance.bindings;
        arm(
            &mut instance.store,
            &instance.ticker,
            limits.init,
            limits,
            |store| match bindings {
                Bindings::V0_3(p) => p.call_init(store, config),
                Bindings::V0_2(p) => p.call_init(store, config),
                Bindings::V0_1(p) => p.call_init(store, config),
            },
        )?
        .map_err(|error| PolicyError::Init(bounded(redacted(error, config), MAX_ERROR)))?;
        Ok(instance)
    }

    /// The next step of the drain.
    pub fn decide(&mut self, snapshot: &Snapshot) -> Result<Decision, PolicyError> {
        let mut decision = self.guarded(|store, policy| match policy {
            Bindings::V0_3(p) => p
                .call_decide(store, &convert::snapshot_v0_3(snapshot))
                .map(convert::current::decision),
            Bindings::V0_2(p) => p
                .call_decide(store, &convert::snapshot_v0_2(snapshot))
                .map(convert::second::decision),
            Bindings::V0_1(p) => p
                .call_decide(store, &convert::snapshot_v0_1(snapshot))
                .map(convert::first::decision),
        })?;
        decision.reason = bounded(decision.reason, MAX_REASON);
        Ok(decision)
    }

    /// What to do with a signal.
    pub fn on_signal(
        &mut self,
        signal: Signal,
        snapshot: &Snapshot,
    ) -> Result<SignalAction, PolicyError> {
        self.guarded(|store, policy| match policy {
            Bindings::V0_3(p) => p
                .call_on_signal(
                    store,
                    convert::current::signal(signal),
                    &convert::snapshot_v0_3(snapshot),
                )
                .map(convert::current::signal_action),
            Bindings::V0_2(p) => p
                .call_on_signal(
                    store,
                    convert::second::signal(signal),
                    &convert::snapshot_v0_2(snapshot),
                )
                .map(convert::second::signal_action),
            Bindings::V0_1(p) => p
                .call_on_signal(
                    store,
                    convert::first::signal(signal),
                    &convert::snapshot_v0_1(snapshot),
                )
                .map(convert::first::signal_action),
        })
    }

    fn guarded<T>(
        &mut self,
        call: impl FnOnce(&mut Store<State>, &Bindings) -> wasmtime::Result<T>,
    ) -> Result<T, PolicyError> {
        let bindings = &self.bindings;
        arm(
            &mut self.store,
            &self.ticker,
            self.limits.cpu,
            self.limits,
            |store| call(store, bindings),
        )
    }
}

/// Runs `call` with `cpu` armed, and names what went wrong.
fn arm<T>(
    store: &mut Store<State>,
    ticker: &Ticker,
    cpu: Duration,
    limits: Limits,
    call: impl FnOnce(&mut Store<State>) -> wasmtime::Result<T>,
) -> Result<T, PolicyError> {
    store.data_mut().deadline = cpu_time::ThreadTime::now().as_duration() + cpu;
    store.set_epoch_deadline(1);
    let _busy = ticker.busy();
    call(store).map_err(|e| classify(&e, cpu, limits))
}

fn classify(error: &wasmtime::Error, cpu: Duration, limits: Limits) -> PolicyError {
    if error.downcast_ref::<MemoryCapReached>().is_some() {
        return PolicyError::Memory(limits.memory);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PolicyError::Timeout(cpu),
        Some(Trap::StackOverflow) => PolicyError::StackOverflow,
        Some(trap) => PolicyError::Trap(trap.to_string()),
        None => PolicyError::Trap(bounded(format!("{error:#}"), MAX_ERROR)),
    }
}

/// `text` with the config's longer values masked: an `init` error may quote
/// one, and it may be a secret (the agent never shows config values).
/// Short values (`1s`, `TERM`) say nothing secret and are kept, so the
/// error still reads.
fn redacted(mut text: String, config: &[(String, String)]) -> String {
    for (key, value) in config {
        if value.len() >= REDACTED_FROM && text.contains(value.as_str()) {
            text = text.replace(value.as_str(), &format!("<the value of {key}>"));
        }
    }
    text
}

/// Config values this long or longer are masked in errors.
const REDACTED_FROM: usize = 8;

/// Advances the engine's epoch every millisecond while a call is in flight,
/// and sleeps otherwise, so an idle agent does no work at all.
pub struct Ticker {
    in_flight: AtomicUsize,
    thread: Thread,
}

const TICK: Duration = Duration::from_millis(1);

impl Ticker {
    pub fn start(engine: &Engine) -> Arc<Ticker> {
        let engine = engine.weak();
        let (tx, rx) = std::sync::mpsc::channel::<std::sync::Weak<Ticker>>();
        let handle = std::thread::Builder::new()
            .name("lameduck-epoch".into())
            .spawn(move || {
                let ticker = rx.recv().expect("the ticker is sent at once");
                Ticker::run(&ticker, &engine)
            })
            .expect("spawn the epoch ticker");
        let ticker = Arc::new(Ticker {
            in_flight: AtomicUsize::new(0),
            thread: handle.thread().clone(),
        });
        tx.send(Arc::downgrade(&ticker))
            .expect("the ticker thread waits for it");
        ticker
    }

    /// Ends when the ticker or the engine is dropped.
    fn run(ticker: &std::sync::Weak<Ticker>, engine: &EngineWeak) {
        loop {
            let Some(idle) = ticker
                .upgrade()
                .map(|t| t.in_flight.load(Ordering::Acquire) == 0)
            else {
                return;
            };
            if idle {
                std::thread::park();
                continue;
            }
            std::thread::sleep(TICK);
            match engine.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        }
    }

    fn busy(&self) -> Busy<'_> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Busy(self)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.thread.unpark();
    }
}

struct Busy<'a>(&'a Ticker);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
