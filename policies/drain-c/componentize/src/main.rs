//! `componentize CORE.wasm OUT.wasm`: wraps a core module that carries its
//! component type (the object file wit-bindgen's C generator emits) into a
//! component, adapting its WASI preview 1 imports to preview 2.

use std::process::ExitCode;

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [core, out] = args.as_slice() else {
        eprintln!("usage: componentize CORE.wasm OUT.wasm");
        return ExitCode::from(2);
    };
    match componentize(core, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("componentize: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn componentize(core: &str, out: &str) -> anyhow::Result<()> {
    let module = std::fs::read(core).map_err(|e| anyhow::anyhow!("read {core}: {e}"))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)?
        // A reactor: the policy is called, it has no `main`.
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .validate(true)
        .encode()?;
    std::fs::write(out, component).map_err(|e| anyhow::anyhow!("write {out}: {e}"))?;
    Ok(())
}
