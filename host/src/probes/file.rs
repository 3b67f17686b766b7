//! `file`: whether a file exists, and its first bytes.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{MAX_BODY, Sample};
use lameduck_core::{FileState, ProbeValue};

/// `file: { path: /tmp/app-idle }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub path: PathBuf,
}

pub struct FileProbe {
    path: PathBuf,
}

impl FileProbe {
    pub fn new(path: PathBuf) -> Self {
        FileProbe { path }
    }
}

impl Sample for FileProbe {
    /// Reads on a blocking thread: opening a FIFO, or a file on a hung
    /// network mount, can block for ever, and that must cost the probe's
    /// timeout, not the agent's loop.
    async fn sample(&mut self) -> ProbeValue {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || read(&path))
            .await
            .unwrap_or_else(|e| ProbeValue::Failed(format!("the read failed: {e}")))
    }
}

fn read(path: &Path) -> ProbeValue {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return ProbeValue::File(FileState {
                exists: false,
                contents: String::new(),
            });
        }
        Err(e) => return ProbeValue::Failed(format!("{}: {e}", path.display())),
    };
    let mut contents = Vec::new();
    match file.take(MAX_BODY as u64).read_to_end(&mut contents) {
        Ok(_) => ProbeValue::File(FileState {
            exists: true,
            contents: String::from_utf8_lossy(&contents).into_owned(),
        }),
        Err(e) => ProbeValue::Failed(format!("{}: {e}", path.display())),
    }
}
