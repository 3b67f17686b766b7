//! `lameduck-precompile TARGET IN.wasm OUT.cwasm`: compiles a component
//! ahead of time for any CPU of the TARGET triple, with the agent's engine
//! settings. `host/build.rs` runs it on the default policy, so that a first
//! start (every start of a pod without a persistent cache) loads native code
//! instead of compiling: it spares the time and the compiler's memory.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, input, output] = &args[..] else {
        eprintln!("usage: lameduck-precompile TARGET IN.wasm OUT.cwasm");
        return ExitCode::from(2);
    };
    match precompile(target, input, output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lameduck-precompile: {input}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn precompile(target: &str, input: &str, output: &str) -> wasmtime::Result<()> {
    let engine = wasmtime::Engine::new(&lameduck_engine::config(Some(target))?)?;
    let compiled = engine.precompile_component(&std::fs::read(input)?)?;
    std::fs::write(output, compiled)?;
    Ok(())
}
