//! The contract's signals by name.

use crate::Signal;

impl Signal {
    /// Every signal of the contract, in declaration order.
    pub const ALL: [Signal; 22] = [
        Signal::Hup,
        Signal::Int,
        Signal::Quit,
        Signal::Kill,
        Signal::Usr1,
        Signal::Usr2,
        Signal::Pipe,
        Signal::Alrm,
        Signal::Term,
        Signal::Cont,
        Signal::Stop,
        Signal::Tstp,
        Signal::Ttin,
        Signal::Ttou,
        Signal::Urg,
        Signal::Xcpu,
        Signal::Xfsz,
        Signal::Vtalrm,
        Signal::Prof,
        Signal::Winch,
        Signal::Io,
        Signal::Pwr,
    ];

    /// The conventional name, without `SIG`: `TERM`, `USR1`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hup => "HUP",
            Signal::Int => "INT",
            Signal::Quit => "QUIT",
            Signal::Kill => "KILL",
            Signal::Usr1 => "USR1",
            Signal::Usr2 => "USR2",
            Signal::Pipe => "PIPE",
            Signal::Alrm => "ALRM",
            Signal::Term => "TERM",
            Signal::Cont => "CONT",
            Signal::Stop => "STOP",
            Signal::Tstp => "TSTP",
            Signal::Ttin => "TTIN",
            Signal::Ttou => "TTOU",
            Signal::Urg => "URG",
            Signal::Xcpu => "XCPU",
            Signal::Xfsz => "XFSZ",
            Signal::Vtalrm => "VTALRM",
            Signal::Prof => "PROF",
            Signal::Winch => "WINCH",
            Signal::Io => "IO",
            Signal::Pwr => "PWR",
        }
    }

    /// Parses `TERM`, `SIGTERM` or `term`.
    pub fn from_name(text: &str) -> Option<Signal> {
        let upper = text.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        Signal::ALL.into_iter().find(|s| s.name() == bare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name() {
        assert_eq!(Signal::from_name("TERM"), Some(Signal::Term));
        assert_eq!(Signal::from_name("sigusr1"), Some(Signal::Usr1));
        assert_eq!(Signal::from_name("SIGFOO"), None);
        for s in Signal::ALL {
            assert_eq!(Signal::from_name(s.name()), Some(s));
        }
    }
}
