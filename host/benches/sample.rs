//! One `connections` sample on a busy node: before (the kernel returns every
//! socket in the states asked for, the probe keeps the app's) and after (the
//! kernel returns the sockets on the app's ports only; where no connection
//! was accepted since the last dump and the app has at most 256, each is
//! looked up instead, with no walk of the table), in the same run,
//! samples of the two interleaved. Prints p50 and p90 per sample, wall clock
//! and the sampling thread's CPU time (kernel time included: the kernel
//! walks its tables in the sampling thread's `recvmsg`). Then the cost of
//! the cheap look that comes before a sample: the namespace's TCP counters.
//!
//!     cargo bench -p lameduck --bench sample
//!
//! Needs root (network namespaces), and takes a few minutes. Each group of
//! rows runs on fresh namespaces made from the machine's, so they share the
//! kernel's table of connections as pods on a node do (unless the machine
//! sets `net.ipv4.tcp_child_ehash_entries`, which the bench reports):
//!
//! * the pod: the app listening on 10.201.0.1:8080, and the probe;
//! * a peer across a veth pair: the app's clients, and the servers the pod
//!   connects to;
//! * other pods: connections over their own loopback.
//!
//! Sockets that are not the app's are made in the pod's namespace (the
//! pod's own outbound connections, to the peer) or in the other pods', each
//! group growing 1k, 10k, 100k: established ones are connected and accepted
//! one at a time (no backlog to overflow) and kept open; TIME_WAIT ones are
//! connected, accepted, closed by the client first, and the server end
//! closed once it has read the client's FIN (so it ends in LAST_ACK, not in
//! TIME_WAIT too). Each connects to one of 8 listeners, from ports above
//! the app's, so 100k TIME_WAITs never run out of address pairs. The bench
//! raises what that needs: its open files (`RLIMIT_NOFILE`), and in each
//! namespace `ip_local_port_range` and `tcp_max_tw_buckets`. A group ends by
//! deleting its namespaces, and waits until the kernel has freed their
//! sockets (the namespaces' sentinel veths are gone) before the next one.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use lameduck::probes::{Agent, ConnectionsProbe, Evidence, Exclude, Snmp};

const APP: &str = "10.201.0.1";
const PEER: &str = "10.201.0.2";
const APP_PORT: u16 = 8080;
/// Listeners the non-app connections are spread over, from this port.
const LISTENERS: u16 = 8;
const FIRST_LISTENER: u16 = 9001;
/// Ephemeral ports, above the app's so no client end lands on it.
const PORT_RANGE: &str = "10000 65000";
const MAX_TIME_WAIT: &str = "400000";
const SCALES: [usize; 3] = [1_000, 10_000, 100_000];
const APP_SCALES: [usize; 2] = [1_000, 10_000];
/// Per row and variant: samples until this much time has passed, at least
/// `MIN_SAMPLES`, at most `MAX_SAMPLES`.
const BUDGET: Duration = Duration::from_millis(1_500);
const MIN_SAMPLES: usize = 21;
const MAX_SAMPLES: usize = 1_000;

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("sample bench: needs root (network namespaces); skipped");
        return;
    }
    let open_files = raise_open_files(2 * SCALES[2] as u64 + 10_000);
    describe_machine();
    counters_cost();
    println!();
    println!(
        "{:<46} {:^43} | {:^43} | goal (after, wall p50)",
        "", "before: every socket, kept here", "after: the kernel keeps the app's ports"
    );
    println!(
        "{:<46} {:>10} {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} {:>10} |",
        "",
        "wall p50",
        "wall p90",
        "cpu p50",
        "cpu p90",
        "wall p50",
        "wall p90",
        "cpu p50",
        "cpu p90"
    );
    let mut watch = Namespaces::watch();
    app_port_rows(&mut watch, open_files);
    for group in [
        Group::Established(Place::OtherPods),
        Group::Established(Place::Pod),
        Group::TimeWait(Place::OtherPods),
        Group::TimeWait(Place::Pod),
    ] {
        not_the_apps_rows(&mut watch, group, open_files);
    }
}

/// What the numbers depend on, beside the code.
fn describe_machine() {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let first = |text: String| text.split_whitespace().next().unwrap_or("?").to_owned();
    let child_table = read("/proc/sys/net/ipv4/tcp_child_ehash_entries");
    println!(
        "connections sample, busy node: kernel {}, {} CPUs, load average {}, table of connections {} buckets{}",
        first(read("/proc/sys/kernel/osrelease")),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        first(read("/proc/loadavg")),
        first(read("/proc/sys/net/ipv4/tcp_ehash_entries")),
        if child_table.trim() == "0" || child_table.is_empty() {
            " shared by every namespace".to_owned()
        } else {
            format!(
                " (new namespaces get their own of {}: not a shared table!)",
                child_table.trim()
            )
        }
    );
    println!(
        "  the machine's namespace: {}",
        read("/proc/net/sockstat")
            .lines()
            .find(|l| l.starts_with("TCP:"))
            .unwrap_or("?")
    );
}

/// The cheap look: one read of `/proc/net/snmp`, the file kept open, against
/// opening it each time.
fn counters_cost() {
    let mut kept = Snmp::new();
    let kept = time(|| {
        std::hint::black_box(kept.read().unwrap());
    });
    let opened = time(|| {
        std::hint::black_box(Snmp::new().read().unwrap());
    });
    println!("  TCP counters (/proc/net/snmp, Tcp:), one read:");
    for (how, t) in [("file kept open", kept), ("file opened each time", opened)] {
        println!(
            "    {how:<28} wall p50 {:>8.2?} p90 {:>8.2?}   cpu p50 {:>8.2?} p90 {:>8.2?}",
            t.wall.0, t.wall.1, t.cpu.0, t.cpu.1
        );
    }
}

/// Rows with the app's own connections: none, 1k, 10k.
fn app_port_rows(watch: &mut Namespaces, open_files: u64) {
    let node = watch.node();
    let listener = within(&node.pod, || TcpListener::bind((APP, APP_PORT)).unwrap());
    let mut held = Vec::new();
    row(&node, "app's port: nothing else on the node", 0, 0);
    for n in APP_SCALES {
        if !room(open_files, 2 * n) {
            continue;
        }
        let more = n - held.len() / 2;
        let mut pairs = within(&node.peer, || connect_app(&listener, more));
        requests(&mut pairs);
        held.extend(pairs.into_iter().flat_map(|(c, s)| [c, s]));
        row(
            &node,
            &format!("app's port: {} established", thousands(n)),
            n,
            n / 10,
        );
    }
    close(held);
    drop(listener);
    watch.remove(node);
}

/// Connects `n` clients to the app, accepted one at a time.
fn connect_app(listener: &TcpListener, n: usize) -> Vec<(TcpStream, TcpStream)> {
    (0..n)
        .map(|_| {
            let client = TcpStream::connect((APP, APP_PORT)).unwrap();
            (client, listener.accept().unwrap().0)
        })
        .collect()
}

/// Keep-alive clients that each made a request and got the answer; one in
/// ten has a request the app has not answered yet.
fn requests(pairs: &mut [(TcpStream, TcpStream)]) {
    for (client, server) in pairs.iter_mut() {
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        server.read_exact(&mut [0; 18]).unwrap();
    }
    // Answers on a later kernel tick than the requests, so the clocks order
    // them (within one tick an exchange counts as in flight for a while).
    std::thread::sleep(Duration::from_millis(20));
    for (i, (_, server)) in pairs.iter_mut().enumerate() {
        if i % 10 != 0 {
            server
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .unwrap();
        }
    }
}

/// Where the sockets that are not the app's are.
#[derive(Clone, Copy)]
enum Place {
    /// The pod's own outbound connections, to the peer.
    Pod,
    /// Connections between processes of other pods.
    OtherPods,
}

#[derive(Clone, Copy)]
enum Group {
    Established(Place),
    TimeWait(Place),
}

/// Rows with the app listening, idle, and 1k, 10k, 100k sockets of `group`.
fn not_the_apps_rows(watch: &mut Namespaces, group: Group, open_files: u64) {
    let node = watch.node();
    let app = within(&node.pod, || TcpListener::bind((APP, APP_PORT)).unwrap());
    let (place, kind) = match group {
        Group::Established(place) => (place, "established"),
        Group::TimeWait(place) => (place, "TIME_WAIT"),
    };
    let (clients, servers, address, where_) = match place {
        Place::Pod => (&node.pod, &node.peer, PEER, "in the pod's namespace"),
        Place::OtherPods => (&node.others, &node.others, "127.0.0.1", "in other pods'"),
    };
    let listeners = within(servers, || listeners(address));
    let mut held = Vec::new();
    let mut made = 0;
    for n in SCALES {
        // Both ends of a connection in other pods are theirs; in the pod,
        // the client end is its, the server end the peer's.
        let sockets_per_connection = match (group, place) {
            (Group::Established(_), Place::OtherPods) => 2,
            _ => 1,
        };
        // Each established connection holds both its ends open here.
        let held_files = match group {
            Group::Established(_) => 2 * n / sockets_per_connection,
            Group::TimeWait(_) => 0,
        };
        if !room(open_files, held_files) {
            continue;
        }
        let connections = n / sockets_per_connection - made;
        within(clients, || match group {
            Group::Established(_) => held.extend(established(&listeners, connections)),
            Group::TimeWait(_) => time_waits(&listeners, connections),
        });
        made += connections;
        let count = within(clients, tcp_sockstat);
        row(
            &node,
            &format!("{} {kind} {where_} ({count})", thousands(n)),
            0,
            0,
        );
    }
    close(held);
    // Every socket in the namespaces closed, or they are never cleaned up.
    drop((listeners, app));
    watch.remove(node);
}

/// `LISTENERS` listeners on `address`, in the calling thread's namespace.
fn listeners(address: &str) -> Vec<TcpListener> {
    (0..LISTENERS)
        .map(|i| TcpListener::bind((address, FIRST_LISTENER + i)).unwrap())
        .collect()
}

/// `n` connections spread over `listeners`, both ends kept.
fn established(listeners: &[TcpListener], n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(2 * n);
    for i in 0..n {
        let (client, server) = connect(listeners, i);
        held.extend([client, server]);
    }
    held
}

/// `n` connections spread over `listeners`, each left in TIME_WAIT at its
/// client end.
fn time_waits(listeners: &[TcpListener], n: usize) {
    for i in 0..n {
        let (client, mut server) = connect(listeners, i);
        drop(client);
        // The client's FIN is in: the server's close answers it (LAST_ACK)
        // rather than crossing it (which would leave both in TIME_WAIT).
        assert_eq!(server.read(&mut [0]).unwrap(), 0);
    }
}

fn connect(listeners: &[TcpListener], i: usize) -> (TcpStream, TcpStream) {
    let listener = &listeners[i % listeners.len()];
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    (client, listener.accept().unwrap().0)
}

/// Closes with a reset: nothing is left in TIME_WAIT.
fn close(sockets: Vec<TcpStream>) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    for socket in sockets {
        // SAFETY: setsockopt on an open socket, with a value of the size given.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
}

/// The calling thread's namespace's `TCP: inuse N … tw N`, shortened.
fn tcp_sockstat() -> String {
    let text = std::fs::read_to_string("/proc/thread-self/net/sockstat").unwrap_or_default();
    let line = text.lines().find(|l| l.starts_with("TCP:")).unwrap_or("");
    let words: Vec<&str> = line.split_whitespace().collect();
    let get = |name| {
        words
            .iter()
            .position(|w| *w == name)
            .and_then(|i| words.get(i + 1))
            .copied()
            .unwrap_or("?")
    };
    format!("inuse {}, tw {}", get("inuse"), get("tw"))
}

/// Samples with both probes in the pod, interleaved, and prints a row.
/// `open` and `in_flight` are what both must read.
fn row(node: &Node, label: &str, open: usize, in_flight: usize) {
    let (before, after) = within(&node.pod, || {
        let probe =
            || ConnectionsProbe::new(vec![APP_PORT], None, &Exclude::default(), &Agent::default());
        let (mut before, mut after) = (probe(), probe());
        before.without_kernel_filter();
        for probe in [&mut before, &mut after] {
            // The first sample has nothing to compare with.
            probe.traffic(true).unwrap();
            let reading = probe.traffic(true).unwrap();
            assert_eq!(reading.evidence, Evidence::SockDiag);
            assert_eq!(
                (reading.open, reading.in_flight),
                (open as u32, in_flight as u32),
                "{label}"
            );
        }
        assert!(!before.kernel_filtered() && after.kernel_filtered());
        time_pair(
            || std::hint::black_box(before.traffic(true).unwrap().open),
            || std::hint::black_box(after.traffic(true).unwrap().open),
        )
    });
    let per_thousand = (open.max(1000) / 1000) as u32;
    let goal = Duration::from_millis(1) * per_thousand;
    println!(
        "{label:<46} {:>10.2?} {:>10.2?} {:>10.2?} {:>10.2?} | {:>10.2?} {:>10.2?} {:>10.2?} {:>10.2?} | <= {goal:?}: {}",
        before.wall.0,
        before.wall.1,
        before.cpu.0,
        before.cpu.1,
        after.wall.0,
        after.wall.1,
        after.cpu.0,
        after.cpu.1,
        if after.wall.0 <= goal {
            "met"
        } else if after.cpu.0 <= goal {
            "met in CPU time (wall over)"
        } else {
            "NOT met"
        }
    );
}

/// p50 and p90, wall clock and the thread's CPU time.
struct Times {
    wall: (Duration, Duration),
    cpu: (Duration, Duration),
}

#[derive(Default)]
struct Samples {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl Samples {
    fn take(&mut self, sample: &mut impl FnMut()) {
        let (start, start_cpu) = (Instant::now(), cpu_now());
        sample();
        self.wall.push(start.elapsed());
        self.cpu.push(cpu_now() - start_cpu);
    }

    fn times(mut self) -> Times {
        let percentiles = |times: &mut Vec<Duration>| {
            times.sort_unstable();
            let at = |p: usize| times[(times.len() - 1) * p / 100];
            (at(50), at(90))
        };
        Times {
            wall: percentiles(&mut self.wall),
            cpu: percentiles(&mut self.cpu),
        }
    }
}

fn cpu_now() -> Duration {
    cpu_time::ThreadTime::now().as_duration()
}

/// Whether a series begun at `start` with `n` samples has enough.
fn enough(start: Instant, n: usize) -> bool {
    n >= MAX_SAMPLES || (n >= MIN_SAMPLES && start.elapsed() >= BUDGET)
}

fn time(mut sample: impl FnMut()) -> Times {
    let mut samples = Samples::default();
    let start = Instant::now();
    while !enough(start, samples.wall.len()) {
        samples.take(&mut sample);
    }
    samples.times()
}

/// Times `a` and `b` in turns, so a busy moment of the machine falls on
/// both alike.
fn time_pair<T, U>(mut a: impl FnMut() -> T, mut b: impl FnMut() -> U) -> (Times, Times) {
    let (mut first, mut second) = (Samples::default(), Samples::default());
    let start = Instant::now();
    while !enough(start, first.wall.len()) {
        first.take(&mut || {
            a();
        });
        second.take(&mut || {
            b();
        });
    }
    (first.times(), second.times())
}

fn thousands(n: usize) -> String {
    match n {
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

/// Runs `f` on a thread in the named network namespace: the sockets it
/// makes are that namespace's.
fn within<T: Send>(namespace: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(namespace);
                f()
            })
            .join()
            .unwrap()
    })
}

/// One group's namespaces: the pod, its peer, other pods.
struct Node {
    pod: String,
    peer: String,
    others: String,
}

/// Makes and removes the namespaces of the bench. Each has a sentinel veth
/// whose other end is in the `watch` namespace: it goes when the kernel has
/// cleaned the namespace up (its sockets freed, TIME_WAITs included).
struct Namespaces {
    watch: String,
    made: usize,
}

impl Namespaces {
    fn watch() -> Self {
        let watch = format!("ldb-{}-watch", std::process::id());
        ip(&["netns", "add", &watch]);
        Namespaces { watch, made: 0 }
    }

    fn node(&mut self) -> Node {
        let node = Node {
            pod: self.add(),
            peer: self.add(),
            others: self.add(),
        };
        ip(&[
            "-n", &node.pod, "link", "add", "ldb0", "type", "veth", "peer", "name", "ldb1",
            "netns", &node.peer,
        ]);
        for (namespace, link, address) in [(&node.pod, "ldb0", APP), (&node.peer, "ldb1", PEER)] {
            ip(&[
                "-n",
                namespace,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                link,
            ]);
            ip(&["-n", namespace, "link", "set", link, "up"]);
        }
        node
    }

    /// A namespace made from the machine's, with loopback up and room for
    /// many connections.
    fn add(&mut self) -> String {
        let n = self.made;
        self.made += 1;
        let name = format!("ldb-{}-{n}", std::process::id());
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &name,
            "link",
            "add",
            "sentinel",
            "type",
            "veth",
            "peer",
            "name",
            &format!("ldbw{n}"),
            "netns",
            &self.watch,
        ]);
        within(&name, || {
            std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", PORT_RANGE).unwrap();
            std::fs::write("/proc/sys/net/ipv4/tcp_max_tw_buckets", MAX_TIME_WAIT).unwrap();
        });
        name
    }

    /// Deletes the node's namespaces, and waits until the kernel has
    /// cleaned them up.
    fn remove(&mut self, node: Node) {
        for namespace in [&node.pod, &node.peer, &node.others] {
            ip(&["netns", "delete", namespace]);
        }
        let start = Instant::now();
        while self.sentinels() > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "namespaces not cleaned up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sentinel veths still in the watch namespace.
    fn sentinels(&self) -> usize {
        let out = Command::new("ip")
            .args(["-n", &self.watch, "-o", "link", "show"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("ldbw"))
            .count()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        ip(&["netns", "delete", &self.watch]);
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
    let done = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(done, 0, "setns: {}", std::io::Error::last_os_error());
}

/// Whether `files` more open files fit under `limit`, with room for the
/// rest; says so where not.
fn room(limit: u64, files: usize) -> bool {
    let fits = files as u64 + 5_000 <= limit;
    if !fits {
        println!("  skipped: a row that holds {files} open files (the limit is {limit})");
    }
    fits
}

/// Raises the open files allowed to `wanted`, or as far as the hard limit
/// lets (a container may not raise it); returns the limit.
fn raise_open_files(wanted: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        if limit.rlim_cur >= wanted {
            return limit.rlim_cur;
        }
        let hard = limit.rlim_max;
        limit.rlim_cur = wanted;
        limit.rlim_max = hard.max(wanted);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
            return wanted;
        }
        limit.rlim_cur = hard;
        limit.rlim_max = hard;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        println!(
            "  open files: {hard} at most here (wanted {wanted}); rows that need more are skipped"
        );
        hard
    }
}
