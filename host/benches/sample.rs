//! One `connections` sample with 1,000 established connections to the app:
//! netlink `sock_diag` with `tcp_info` (the evidence) against
//! `/proc/net/tcp` (0.1's source, now the fallback) in the same run, both
//! through the same probe. Prints p50 and p99 per sample, wall clock and CPU
//! time (the machine may be busy with other work), and the ratio.
//!
//!     cargo bench -p lameduck --bench sample
//!
//! As root it runs like a pod: the app's end of the connections in a network
//! namespace of its own, the clients in another one across a veth pair, so
//! the pod's namespace holds the 1,000 server-side connections and nothing
//! else. Both sources walk the kernel's table of connections, which is the
//! node's whatever the namespace (every pod's sockets in it) unless the node
//! sets `net.ipv4.tcp_child_ehash_entries` (Linux 6.1+): so it runs twice,
//! with the node's table, then with a table of the pod's own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use lameduck::probes::{Agent, ConnectionsProbe, Evidence, Exclude};

const CONNECTIONS: usize = 1_000;
const SAMPLES: usize = 2_000;
const APP: &str = "10.201.0.1";
const CLIENTS: &str = "10.201.0.2";
/// Buckets of the pod's own table in the second run.
const OWN_TABLE: u32 = 4_096;

fn main() {
    raise_open_files(4 * CONNECTIONS as u64 + 64);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "connections sample, {CONNECTIONS} established connections, {SAMPLES} samples each (load average {})",
        load.split_whitespace().next().unwrap_or("?")
    );
    println!("                                      wall p50    wall p99     cpu p50     cpu p99");
    // This thread alone moves between namespaces: the probe reads the
    // calling thread's.
    let Some(clients) = Clients::namespace() else {
        println!("  (not root: both ends in the machine's namespace)");
        measure("node's table", None);
        return;
    };
    measure("node's table", Some(&clients));
    drop(clients);
    // Namespaces made from this one get a table of their own.
    std::fs::write(
        "/proc/sys/net/ipv4/tcp_child_ehash_entries",
        OWN_TABLE.to_string(),
    )
    .unwrap();
    let clients = Clients::namespace().expect("a second namespace");
    measure(&format!("own table ({OWN_TABLE})"), Some(&clients));
}

/// Connects the clients, samples with both sources, prints a row each.
fn measure(table: &str, clients: Option<&Clients>) {
    let bind = if clients.is_some() { APP } else { "127.0.0.1" };
    let listener = TcpListener::bind((bind, 0)).unwrap();
    let address = listener.local_addr().unwrap();
    let namespace = clients.map(|c| c.name.clone());
    let connecting = std::thread::spawn(move || connect_all(namespace, address));
    let mut servers: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| listener.accept().unwrap().0)
        .collect();
    let mut client_ends = connecting.join().unwrap();
    // Keep-alive clients that each made a request and got the answer; one
    // in ten has a request the app has not answered yet.
    for (client, server) in client_ends.iter_mut().zip(&mut servers) {
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut request = [0; 18];
        server.read_exact(&mut request).unwrap();
    }
    // Answers on a later kernel tick than the requests, so the clocks order
    // them (within one tick an exchange counts as in flight for a while).
    std::thread::sleep(Duration::from_millis(20));
    for (i, server) in servers.iter_mut().enumerate() {
        if i % 10 != 0 {
            server
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .unwrap();
        }
    }

    let port = address.port();
    let probe = || ConnectionsProbe::new(vec![port], None, &Exclude::default(), &Agent::default());
    let mut sock_diag = probe();
    let mut proc_net_tcp = probe();
    proc_net_tcp.fall_back();
    let first = sock_diag.traffic(true).unwrap();
    assert_eq!(first.evidence, Evidence::SockDiag);
    assert_eq!(
        (first.open, first.in_flight),
        (CONNECTIONS as u32, CONNECTIONS as u32 / 10)
    );
    let fallback = proc_net_tcp.traffic(true).unwrap();
    assert_eq!(fallback.evidence, Evidence::ProcNetTcp);
    assert_eq!(fallback.open, CONNECTIONS as u32);

    let diag = time_samples(|| sock_diag.traffic(true).unwrap().open);
    let proc = time_samples(|| proc_net_tcp.traffic(true).unwrap().open);
    for (source, t) in [("sock_diag + tcp_info", &diag), ("/proc/net/tcp", &proc)] {
        println!(
            "  {:<36} {:>10.2?}  {:>10.2?}  {:>10.2?}  {:>10.2?}",
            format!("{table}, {source}"),
            t.wall.0,
            t.wall.1,
            t.cpu.0,
            t.cpu.1
        );
    }
    println!(
        "  {table}: sock_diag/proc p50 wall {:.2}x cpu {:.2}x; goal <= 1 ms: {}",
        diag.wall.0.as_secs_f64() / proc.wall.0.as_secs_f64(),
        diag.cpu.0.as_secs_f64() / proc.cpu.0.as_secs_f64(),
        if diag.wall.0 <= Duration::from_millis(1) {
            "met (wall p50)"
        } else if diag.cpu.0 <= Duration::from_millis(1) {
            "met in CPU time (wall p50 over)"
        } else {
            "NOT met"
        }
    );
}

fn connect_all(namespace: Option<String>, address: SocketAddr) -> Vec<TcpStream> {
    if let Some(name) = namespace {
        enter(&name);
    }
    (0..CONNECTIONS)
        .map(|_| TcpStream::connect(address).unwrap())
        .collect()
}

/// p50 and p99, wall clock and the thread's CPU time.
struct Times {
    wall: (Duration, Duration),
    cpu: (Duration, Duration),
}

/// `SAMPLES` timed samples, after a warm-up.
fn time_samples(mut sample: impl FnMut() -> u32) -> Times {
    for _ in 0..50 {
        std::hint::black_box(sample());
    }
    let (mut wall, mut cpu): (Vec<Duration>, Vec<Duration>) = (0..SAMPLES)
        .map(|_| {
            let (start, start_cpu) = (Instant::now(), cpu_time::ThreadTime::now().as_duration());
            std::hint::black_box(sample());
            (
                start.elapsed(),
                cpu_time::ThreadTime::now().as_duration() - start_cpu,
            )
        })
        .unzip();
    let percentiles = |times: &mut Vec<Duration>| {
        times.sort_unstable();
        (times[SAMPLES / 2], times[SAMPLES * 99 / 100])
    };
    Times {
        wall: percentiles(&mut wall),
        cpu: percentiles(&mut cpu),
    }
}

/// A namespace for the calling thread (the pod's) and one for the clients,
/// joined by a veth pair; the clients' is removed on drop.
struct Clients {
    name: String,
}

impl Clients {
    /// `None` where namespaces cannot be made (not root).
    fn namespace() -> Option<Self> {
        // SAFETY: unshare moves this thread alone to a new namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return None;
        }
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("lameduck-bench-{}-{n}", std::process::id());
        // `ip` runs in this thread's namespace: the clients' is made from it.
        ip(&["netns", "add", &name]);
        let clients = Clients { name };
        let n = clients.name.as_str();
        ip(&["link", "set", "lo", "up"]);
        ip(&[
            "link", "add", "ldb0", "type", "veth", "peer", "name", "ldb1", "netns", n,
        ]);
        ip(&["addr", "add", &format!("{APP}/24"), "dev", "ldb0"]);
        ip(&["link", "set", "ldb0", "up"]);
        ip(&[
            "-n",
            n,
            "addr",
            "add",
            &format!("{CLIENTS}/24"),
            "dev",
            "ldb1",
        ]);
        ip(&["-n", n, "link", "set", "ldb1", "up"]);
        ip(&["-n", n, "link", "set", "lo", "up"]);
        Some(clients)
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        ip(&["netns", "delete", &self.name]);
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "`ip {}` failed",
        args.join(" ")
    );
}

/// Moves the calling thread into the named network namespace.
fn enter(name: &str) {
    let file = std::fs::File::open(format!("/var/run/netns/{name}")).unwrap();
    // SAFETY: setns on an open namespace file, for this thread only.
    let done = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
    assert_eq!(done, 0, "setns: {}", std::io::Error::last_os_error());
}

fn raise_open_files(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
