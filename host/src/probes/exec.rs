//! `exec`: run a command, read its exit code.

use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use super::Sample;
use crate::supervisor::{self, Exit, Reaper};
use lameduck_core::ProbeValue;

/// `exec: { command: [/bin/sh, -c, "test ! -s /tmp/queue"] }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(deserialize_with = "not_empty")]
    pub command: Vec<String>,
}

/// The program only: its arguments may hold secrets, and `/status` is read
/// by whoever reaches the admin port.
impl Serialize for Spec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            program: &'a str,
        }
        Shown {
            program: &self.command[0],
        }
        .serialize(s)
    }
}

fn not_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let command = Vec::<String>::deserialize(d)?;
    if command.is_empty() {
        return Err(serde::de::Error::custom("the command is empty"));
    }
    Ok(command)
}

pub struct ExecProbe {
    command: Vec<String>,
    reaper: Arc<Reaper>,
}

impl ExecProbe {
    pub fn new(command: Vec<String>, reaper: Arc<Reaper>) -> Self {
        ExecProbe { command, reaper }
    }
}

/// Kills the command if the sample is abandoned (its timeout passed).
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            supervisor::kill(pid, libc::SIGKILL);
        }
    }
}

impl Sample for ExecProbe {
    async fn sample(&mut self) -> ProbeValue {
        let mut command = supervisor::quiet_command(&self.command);
        let (pid, exited) = match self.reaper.spawn(&mut command) {
            Ok(spawned) => spawned,
            Err(e) => return ProbeValue::Failed(format!("{}: {e}", self.command[0])),
        };
        let mut guard = KillOnDrop(Some(pid));
        let exit = exited.await;
        guard.0 = None;
        match exit {
            Ok(Exit::Code(code)) => ProbeValue::Exec(code as i32),
            Ok(Exit::Signal(signal)) => ProbeValue::Failed(format!(
                "{} was killed by {}",
                self.command[0],
                crate::signals::name(signal)
            )),
            Err(_) => ProbeValue::Failed("the reaper stopped".into()),
        }
    }
}
