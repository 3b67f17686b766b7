//! Signal numbers and the contract's signal names.

use lameduck_core::Signal;

const TABLE: [(Signal, libc::c_int, &str); 22] = [
    (Signal::Hup, libc::SIGHUP, "HUP"),
    (Signal::Int, libc::SIGINT, "INT"),
    (Signal::Quit, libc::SIGQUIT, "QUIT"),
    (Signal::Kill, libc::SIGKILL, "KILL"),
    (Signal::Usr1, libc::SIGUSR1, "USR1"),
    (Signal::Usr2, libc::SIGUSR2, "USR2"),
    (Signal::Pipe, libc::SIGPIPE, "PIPE"),
    (Signal::Alrm, libc::SIGALRM, "ALRM"),
    (Signal::Term, libc::SIGTERM, "TERM"),
    (Signal::Cont, libc::SIGCONT, "CONT"),
    (Signal::Stop, libc::SIGSTOP, "STOP"),
    (Signal::Tstp, libc::SIGTSTP, "TSTP"),
    (Signal::Ttin, libc::SIGTTIN, "TTIN"),
    (Signal::Ttou, libc::SIGTTOU, "TTOU"),
    (Signal::Urg, libc::SIGURG, "URG"),
    (Signal::Xcpu, libc::SIGXCPU, "XCPU"),
    (Signal::Xfsz, libc::SIGXFSZ, "XFSZ"),
    (Signal::Vtalrm, libc::SIGVTALRM, "VTALRM"),
    (Signal::Prof, libc::SIGPROF, "PROF"),
    (Signal::Winch, libc::SIGWINCH, "WINCH"),
    (Signal::Io, libc::SIGIO, "IO"),
    (Signal::Pwr, libc::SIGPWR, "PWR"),
];

/// The signal's number on this system.
pub fn number(signal: Signal) -> libc::c_int {
    TABLE
        .iter()
        .find(|(s, _, _)| *s == signal)
        .expect("every signal is in the table")
        .1
}

/// The contract's name for a signal number, if it has one.
pub fn from_number(number: libc::c_int) -> Option<Signal> {
    TABLE
        .iter()
        .find(|(_, n, _)| *n == number)
        .map(|(s, _, _)| *s)
}

/// `TERM`, `USR1`, or `SIG34` for a signal without a name in the contract.
pub fn name(number: libc::c_int) -> String {
    match TABLE.iter().find(|(_, n, _)| *n == number) {
        Some((_, _, name)) => name.to_string(),
        None => format!("SIG{number}"),
    }
}

/// Parses `TERM`, `SIGTERM`, `term` or a number.
pub fn parse(text: &str) -> Option<libc::c_int> {
    if let Ok(n) = text.parse::<libc::c_int>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = text.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    TABLE
        .iter()
        .find(|(_, _, name)| *name == bare)
        .map(|(_, n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for (signal, n, _) in TABLE {
            assert_eq!(from_number(n), Some(signal));
            assert_eq!(number(signal), n);
            assert_eq!(parse(&name(n)), Some(n));
        }
        assert_eq!(name(libc::SIGTERM), "TERM");
        assert_eq!(parse("sigusr1"), Some(libc::SIGUSR1));
        assert_eq!(parse("15"), Some(15));
        assert_eq!(parse("BOGUS"), None);
    }
}
