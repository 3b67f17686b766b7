//! `file`: whether a file exists, and its first bytes.

use std::io::Read;
use std::path::PathBuf;

use super::{MAX_BODY, Sample};
use crate::policy::{FileState, ProbeValue};

pub struct FileProbe {
    path: PathBuf,
}

impl FileProbe {
    pub fn new(path: PathBuf) -> Self {
        FileProbe { path }
    }
}

impl Sample for FileProbe {
    async fn sample(&mut self) -> ProbeValue {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return ProbeValue::File(FileState {
                    exists: false,
                    contents: String::new(),
                });
            }
            Err(e) => return ProbeValue::Failed(format!("{}: {e}", self.path.display())),
        };
        let mut contents = Vec::new();
        match file.take(MAX_BODY as u64).read_to_end(&mut contents) {
            Ok(_) => ProbeValue::File(FileState {
                exists: true,
                contents: String::from_utf8_lossy(&contents).into_owned(),
            }),
            Err(e) => ProbeValue::Failed(format!("{}: {e}", self.path.display())),
        }
    }
}
