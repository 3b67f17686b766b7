//! Text from a policy (or a recording of one), made safe to print on a
//! terminal. A reason, an error or a logged line may carry escape
//! sequences: OSC 52 writes the operator's clipboard, others set the
//! window's title or clear the screen, a carriage return or a
//! right-to-left override hides what is printed before it. The agent's log
//! escapes what tracing-subscriber knows of; the commands that print such
//! text themselves (`replay`, `simulate`, `check`) escape it here.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character (C0, DEL, C1; newlines and tabs
/// too, which would forge lines and columns) and every bidirectional
/// override written out as an escape: `\x1b`, `\u{9b}`, `\u{202e}`.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_on_terminal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !unsafe_on_terminal(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

fn unsafe_on_terminal(c: char) -> bool {
    // The embeddings, overrides and isolates of Unicode's bidirectional
    // algorithm reorder what follows them on screen.
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_cannot_reach_the_terminal() {
        // OSC 52 (the clipboard), a title, clear screen, a C1 CSI, a
        // carriage return, a right-to-left override.
        let hostile =
            "a\u{1b}]52;c;cm0gLXJmIH4=\u{7}b\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\r\u{202e}z\nnext";
        let shown = printable(hostile);
        assert_eq!(
            shown,
            "a\\x1b]52;c;cm0gLXJmIH4=\\x07b\\x1b]0;owned\\x07\\x1b[2J\\u{9b}31m\\x0d\\u{202e}z\\x0anext"
        );
        assert!(!shown.chars().any(unsafe_on_terminal));
        // What is plain stays as it is, and is not copied.
        assert!(matches!(
            printable("quiet for 120 ms → TERM ✓"),
            Cow::Borrowed(_)
        ));
    }
}
