//! The namespace's `PassiveOpens`: every connection the kernel accepted on
//! any port, even one that opened and closed between two samples.

/// Reads `Tcp: … PassiveOpens …` from the calling thread's namespace
/// (`/proc/thread-self`, so a thread that entered its own namespace reads
/// its own; in the agent it is the pod's either way).
pub(super) fn passive_opens() -> std::io::Result<u64> {
    const PATH: &str = "/proc/thread-self/net/snmp";
    let text = std::fs::read_to_string(PATH)?;
    parse(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{PATH}: no Tcp PassiveOpens"),
        )
    })
}

/// The `Tcp:` section is a line of names followed by a line of values.
fn parse(text: &str) -> Option<u64> {
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let names = tcp.next()?;
    let values = tcp.next()?;
    let column = names.split_whitespace().position(|n| n == "PassiveOpens")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_is_found_by_name() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails\nTcp: 1 200 120000 -1 17 42 0\nUdp: InDatagrams\nUdp: 3\n";
        assert_eq!(parse(text), Some(42));
        assert_eq!(parse("Ip: Forwarding\nIp: 1\n"), None);
        assert!(passive_opens().is_ok());
    }
}
