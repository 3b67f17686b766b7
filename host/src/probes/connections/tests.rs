//! Real sockets, each test in a network namespace of its own (entered by
//! its thread alone), so `PassiveOpens` counts that test's accepts only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::look::*;
use super::*;
use crate::probes::exclusions::Cidr;
use crate::probes::namespace::in_own_namespace;
use crate::probes::traffic::Evidence;

/// A client bound to `from` (port 0: any) before it connects to `to`.
fn connect_from(from: SocketAddr, to: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(from).unwrap();
    let stream = runtime
        .block_on(socket.connect(to))
        .unwrap()
        .into_std()
        .unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

struct App {
    listener: TcpListener,
}

impl App {
    fn start() -> Self {
        App {
            listener: TcpListener::bind("127.0.0.1:0").unwrap(),
        }
    }

    fn address(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    fn port(&self) -> u16 {
        self.address().port()
    }

    /// A client connected, and the app's end of it.
    fn connect(&self) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(self.address()).unwrap();
        let (server, _) = self.listener.accept().unwrap();
        (client, server)
    }

    fn probe(&self) -> ConnectionsProbe {
        ConnectionsProbe::new(
            vec![self.port()],
            None,
            &Exclude::default(),
            &Agent::default(),
        )
    }
}

/// The client sends a request; the app reads it.
fn request(client: &mut TcpStream, server: &mut TcpStream) {
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = [0; 18];
    server.read_exact(&mut buf).unwrap();
}

/// The app answers; the client reads the answer.
fn respond(client: &mut TcpStream, server: &mut TcpStream) {
    server.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
    let mut buf = [0; 19];
    client.read_exact(&mut buf).unwrap();
}

fn sample(probe: &mut ConnectionsProbe) -> Traffic {
    probe.traffic(false).unwrap()
}

#[test]
fn idle_keep_alive_is_idle_and_pending_requests_are_in_flight() {
    in_own_namespace(|| {
        let app = App::start();
        // Answered, then idle; the answer on a later tick than the request
        // (within one tick the clocks cannot order them).
        let (mut idle_c, mut idle_s) = app.connect();
        request(&mut idle_c, &mut idle_s);
        std::thread::sleep(Duration::from_millis(30));
        respond(&mut idle_c, &mut idle_s);
        // Read by the app, not answered yet.
        let (mut read_c, mut read_s) = app.connect();
        request(&mut read_c, &mut read_s);
        // Not even read yet.
        let (mut unread_c, _unread_s) = app.connect();
        unread_c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        // Answered once, then a second request read and not answered: its
        // arrival must be on a later tick than the answer.
        let (mut again_c, mut again_s) = app.connect();
        request(&mut again_c, &mut again_s);
        respond(&mut again_c, &mut again_s);
        std::thread::sleep(Duration::from_millis(30));
        request(&mut again_c, &mut again_s);
        // Connected, nothing sent (a pre-opened pooled connection).
        let (_silent_c, _silent_s) = app.connect();

        let t = sample(&mut app.probe());
        assert_eq!(t.evidence, Evidence::SockDiag);
        assert_eq!((t.open, t.in_flight, t.idle), (5, 3, 2), "{t:?}");
        // The first sample has nothing to compare with.
        assert_eq!(t.accepted, 0);
        assert!(t.since_last_request_ms.is_some());
    });
}

#[test]
fn an_answer_not_yet_acknowledged_is_in_flight() {
    in_own_namespace(|| {
        let app = App::start();
        let (mut client, mut server) = app.connect();
        request(&mut client, &mut server);
        // More than the client's receive window: part stays unsent or
        // unacknowledged until the client reads.
        server.set_nonblocking(true).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        let mut written = 0;
        while written < 16 << 20 {
            match server.write(&chunk) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let t = sample(&mut app.probe());
        assert_eq!((t.open, t.in_flight, t.idle), (1, 1, 0), "{t:?}");
    });
}

/// A connection the app answers and closes first, its end left in TIME_WAIT.
fn exchange_and_close(app: &App) {
    let (mut client, mut server) = app.connect();
    request(&mut client, &mut server);
    respond(&mut client, &mut server);
    drop(server);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
}

#[test]
fn connections_that_came_and_went_between_samples_are_counted() {
    in_own_namespace(|| {
        let app = App::start();
        let mut probe = app.probe();
        assert_eq!(sample(&mut probe).accepted, 0);
        // The client closes first: the app's end is gone by the next
        // sample, seen only by PassiveOpens.
        {
            let (mut client, mut server) = app.connect();
            request(&mut client, &mut server);
            respond(&mut client, &mut server);
            drop(client);
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).unwrap();
        }
        let t = sample(&mut probe);
        assert_eq!((t.accepted, t.open), (1, 0), "{t:?}");
        assert_eq!(t.since_last_accept_ms, t.since_last_request_ms);
        assert!(t.since_last_accept_ms.is_some());
        // The app closes first: its end lingers in TIME_WAIT, and is not
        // counted twice.
        exchange_and_close(&app);
        assert_eq!(sample(&mut probe).accepted, 1);
        assert_eq!(sample(&mut probe).accepted, 0);
    });
}

#[test]
fn a_connection_closed_between_samples_is_timed_at_its_end_not_at_the_sample() {
    in_own_namespace(|| {
        let app = App::start();
        let mut probe = app.probe();
        sample(&mut probe);
        // The first TIME_WAIT seen tells how long the kernel keeps one.
        exchange_and_close(&app);
        assert_eq!(sample(&mut probe).accepted, 1);
        exchange_and_close(&app);
        let closed = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(300));
        let t = sample(&mut probe);
        let since = t.since_last_request_ms.unwrap();
        assert_eq!(t.accepted, 1);
        // Never later than it was (within the kernel's tick, which times
        // TIME_WAIT: up to 10 ms), and not at the sample.
        assert!(
            u128::from(since) <= closed.elapsed().as_millis() + 10,
            "{t:?}"
        );
        assert!(since >= 150, "{t:?}");
    });
}

#[test]
fn excluded_peers_the_admin_port_and_own_probes_are_left_out() {
    in_own_namespace(|| {
        let app = App::start();
        let admin = TcpListener::bind("127.0.0.1:0").unwrap();
        let admin_port = admin.local_addr().unwrap().port();
        let exclude = Exclude {
            peers: vec!["127.0.0.2".parse::<Cidr>().unwrap()],
            ports: Vec::new(),
        };
        let agent = Agent {
            admin_port: Some(admin_port),
            node_ip: Some("127.0.0.3".parse().unwrap()),
            own: Own::default(),
        };
        let mut probe = ConnectionsProbe::new(vec![app.port()], None, &exclude, &agent);
        sample(&mut probe);

        let from = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 0);
        let _peer = connect_from(from("127.0.0.2"), app.address());
        let _node = connect_from(from("127.0.0.3"), app.address());
        let _admin = TcpStream::connect(admin.local_addr().unwrap()).unwrap();
        // The agent's own probe, registered before it connects.
        let own_port = {
            let probe_socket = TcpListener::bind("127.0.0.1:0").unwrap();
            probe_socket.local_addr().unwrap().port()
        };
        agent.own.register_client_port(own_port);
        let _own = connect_from(
            SocketAddr::new([127, 0, 0, 1].into(), own_port),
            app.address(),
        );
        // An admin connection the admin server closed: TIME_WAIT.
        {
            let _client = TcpStream::connect(admin.local_addr().unwrap()).unwrap();
            let (server, _) = admin.accept().unwrap();
            drop(server);
        }
        // And the app's own traffic.
        let (_client, _server) = app.connect();

        let t = sample(&mut probe);
        assert_eq!((t.open, t.accepted), (1, 1), "{t:?}");
        assert_eq!(
            t.excluded,
            Excluded {
                admin: 1,
                own_probes: 1,
                ports: 0,
                peers: 2,
                other_listeners: 0,
                accepts: 5,
            }
        );
    });
}

#[test]
fn a_listed_port_is_left_out() {
    in_own_namespace(|| {
        let app = App::start();
        let metrics = App::start();
        let exclude = Exclude {
            peers: Vec::new(),
            ports: vec![metrics.port()],
        };
        let mut probe = ConnectionsProbe::new(
            vec![app.port(), metrics.port()],
            None,
            &exclude,
            &Agent::default(),
        );
        sample(&mut probe);
        let _scrape = metrics.connect();
        let t = sample(&mut probe);
        assert_eq!((t.open, t.accepted, t.excluded.ports), (0, 0, 1), "{t:?}");
    });
}

#[test]
fn a_request_on_an_old_keep_alive_connection_is_seen() {
    in_own_namespace(|| {
        let app = App::start();
        let (mut client, mut server) = app.connect();
        request(&mut client, &mut server);
        respond(&mut client, &mut server);
        let mut probe = app.probe();
        sample(&mut probe);
        std::thread::sleep(Duration::from_millis(100));
        let quiet = sample(&mut probe);
        request(&mut client, &mut server);
        respond(&mut client, &mut server);
        let t = sample(&mut probe);
        assert_eq!((t.open, t.accepted), (1, 0), "{t:?}");
        assert!(
            t.since_last_request_ms < quiet.since_last_request_ms,
            "{t:?} after {quiet:?}"
        );
    });
}

#[test]
fn learning_sees_requests_on_kept_alive_connections() {
    in_own_namespace(|| {
        let app = App::start();
        let mut pairs: Vec<_> = (0..3).map(|_| app.connect()).collect();
        let mut probe = app.probe();
        probe.traffic(true).unwrap();
        for round in 0..4 {
            // Later than the previous arrival on each connection by more
            // than the kernel's clock can blur.
            std::thread::sleep(Duration::from_millis(50));
            for (client, server) in &mut pairs {
                request(client, server);
                respond(client, server);
            }
            let t = probe.traffic(true).unwrap();
            assert_eq!(t.accepted, 0);
            // Three arrivals a round, each ending a silence.
            assert_eq!(t.silences.count, 3 * (round + 1), "{t:?}");
        }
    });
}

#[test]
fn where_netlink_is_refused_proc_net_tcp_is_read_and_said() {
    in_own_namespace(|| {
        let app = App::start();
        let mut probe = app.probe();
        probe.fall_back();
        let (mut client, mut server) = app.connect();
        request(&mut client, &mut server);
        respond(&mut client, &mut server);
        let t = sample(&mut probe);
        assert_eq!(t.evidence, Evidence::ProcNetTcp);
        // Who owes a response cannot be told: with empty queues, unsure.
        assert_eq!(
            (t.open, t.in_flight, t.unsure, t.idle),
            (1, 1, 1, 0),
            "{t:?}"
        );
        let _second = app.connect();
        {
            let _gone = app.connect();
        }
        let t = sample(&mut probe);
        assert_eq!(
            (t.evidence, t.open, t.accepted),
            (Evidence::ProcNetTcp, 2, 2),
            "{t:?}"
        );
        // A request not read yet: in flight, surely.
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let t = sample(&mut probe);
        assert_eq!((t.in_flight, t.unsure), (2, 1), "{t:?}");
        let mut buf = [0; 18];
        server.read_exact(&mut buf).unwrap();
        sample(&mut probe);
        // Empty queues, look after look, for as long as the agent holds what
        // it cannot see: idle keep-alive, which no longer holds a drain.
        std::thread::sleep(LONGEST_HELD + Duration::from_millis(100));
        let t = sample(&mut probe);
        assert_eq!((t.open, t.in_flight, t.idle), (2, 0, 2), "{t:?}");
    });
}

#[test]
fn ipv6_connections_are_seen() {
    in_own_namespace(|| {
        let listener = TcpListener::bind("[::1]:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut probe =
            ConnectionsProbe::new(vec![port], None, &Exclude::default(), &Agent::default());
        sample(&mut probe);
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        let t = sample(&mut probe);
        assert_eq!((t.open, t.idle, t.accepted), (1, 1, 1), "{t:?}");
    });
}

#[test]
fn the_reading_maps_onto_the_contract() {
    in_own_namespace(|| {
        let app = App::start();
        let _pair = app.connect();
        let mut probe = app.probe();
        match probe.learn() {
            ProbeValue::Connections(c) => {
                assert_eq!((c.open, c.idle, c.in_flight, c.accepted), (1, 1, 0, 0));
                assert_eq!(c.evidence, lameduck_core::Evidence::SockDiag);
                assert_eq!(c.silences.p99_ms, None);
            }
            other => panic!("{other:?}"),
        }
    });
}

/// An established connection's socket with `tcp_info` (times in ms ago).
fn with_activity(recv_ms: u32, sent_ms: u32, received: u64, acked: u64) -> Socket {
    Socket {
        key: 1,
        state: state::ESTABLISHED,
        local: "10.0.0.1:8080".parse().unwrap(),
        remote: "10.0.0.2:40000".parse().unwrap(),
        inode: 1,
        recv_queue: 0,
        send_queue: 0,
        activity: Some(super::super::sockets::Activity {
            last_data_recv_ms: recv_ms,
            last_data_sent_ms: sent_ms,
            notsent_bytes: 0,
            bytes_received: received,
            bytes_acked: acked,
        }),
        time_wait_left_ms: None,
    }
}

#[test]
fn what_a_connection_owes_is_read_from_its_clocks_and_queues() {
    assert_eq!(owes(&with_activity(5, 0, 0, 0)), Owes::No, "pre-opened");
    assert_eq!(
        owes(&with_activity(5, 5, 100, 0)),
        Owes::Yes,
        "never answered"
    );
    assert_eq!(
        owes(&with_activity(3, 40, 100, 50)),
        Owes::Yes,
        "asked again"
    );
    assert_eq!(owes(&with_activity(40, 3, 100, 50)), Owes::No, "answered");
    assert_eq!(
        owes(&with_activity(40, 40, 100, 50)),
        Owes::Maybe,
        "same tick"
    );
    let mut unread = with_activity(40, 3, 100, 50);
    unread.recv_queue = 18;
    assert_eq!(owes(&unread), Owes::Yes);
    let mut unsent = with_activity(40, 3, 100, 50);
    unsent.send_queue = 1;
    assert_eq!(owes(&unsent), Owes::Yes);
    unsent.activity = None;
    unsent.send_queue = 0;
    assert_eq!(owes(&unsent), Owes::Yes, "no tcp_info: counted");
}

#[test]
fn an_arrival_read_late_is_the_same_arrival_while_no_byte_came_in() {
    let ms = Duration::from_millis;
    let t0 = Instant::now() + ms(1_000);
    // A request owed, read by a look delayed 50 ms on a busy node: its
    // clock says 60 ms ago, where it came 10 ms ago.
    let first = Look::at(&with_activity(60, 500, 100, 50), None, t0);
    assert!(first.seen.owed);
    // The next look, on time, reads the true moment: 35 ms later than the
    // first read, more than the kernel's tick, with no byte in since.
    let again = Look::at(
        &with_activity(110, 600, 100, 50),
        Some(first.seen),
        t0 + ms(100),
    );
    assert_eq!(again.seen.recv_at, first.seen.recv_at);
    assert!(!again.overlapped, "no second call on the connection");
    // A byte in: a new arrival, and calls that overlap.
    let more = Look::at(
        &with_activity(20, 700, 120, 50),
        Some(first.seen),
        t0 + ms(100),
    );
    assert!(more.seen.recv_at > first.seen.recv_at);
    assert!(more.overlapped);
}

#[test]
fn an_exchange_within_one_tick_is_in_flight_as_long_as_requests_have_taken() {
    let ms = Duration::from_millis;
    // A balancer's next request sent the moment the previous answer came:
    // in progress for as long as requests were seen to take.
    assert!(in_flight(Owes::Maybe, Some(ms(250)), Some(ms(300))));
    // Longer ago than any request took: a quick answer, then idle.
    assert!(!in_flight(Owes::Maybe, Some(ms(400)), Some(ms(300))));
    // Nothing seen yet: a second at most.
    assert!(in_flight(Owes::Maybe, Some(ms(900)), None));
    assert!(!in_flight(Owes::Maybe, Some(ms(1_100)), None));
    // A stream open for an hour does not make every quick exchange hold.
    assert!(!in_flight(
        Owes::Maybe,
        Some(ms(6_000)),
        Some(ms(3_600_000))
    ));
    assert!(in_flight(Owes::Yes, Some(ms(6_000)), None));
    assert!(!in_flight(Owes::No, Some(ms(1)), Some(ms(300))));
}

#[test]
fn the_longest_wait_is_learned_from_requests_seen_in_progress() {
    in_own_namespace(|| {
        let app = App::start();
        let mut probe = app.probe();
        let (mut client, mut server) = app.connect();
        request(&mut client, &mut server);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(sample(&mut probe).in_flight, 1);
        let longest = probe.longest_wait.expect("a wait was seen");
        assert!(longest >= Duration::from_millis(60), "{longest:?}");
        respond(&mut client, &mut server);
        assert_eq!(sample(&mut probe).in_flight, 0);
        assert_eq!(probe.longest_wait, Some(longest));
    });
}

/// The app sends a chunk of its answer and the client reads it.
fn chunk(client: &mut TcpStream, server: &mut TcpStream) {
    server.write_all(b"data: x\n\n").unwrap();
    let mut buf = [0; 9];
    client.read_exact(&mut buf).unwrap();
}

#[test]
fn a_streamed_answer_is_in_flight_while_it_sends_and_unsure_when_it_pauses() {
    in_own_namespace(|| {
        let app = App::start();
        let mut probe = app.probe();
        let (mut c, mut s) = app.connect();
        request(&mut c, &mut s);
        std::thread::sleep(Duration::from_millis(50));
        let mut seen = Vec::new();
        // One chunk per look, as a stream sends one every 100 ms.
        for _ in 0..4 {
            chunk(&mut c, &mut s);
            std::thread::sleep(Duration::from_millis(50));
            seen.push(sample(&mut probe));
        }
        // The first chunk looks like an answer; from the second on, a stream.
        let last = seen.last().unwrap();
        assert_eq!(
            (last.in_flight, last.streaming, last.idle),
            (1, 1, 0),
            "{seen:?}"
        );
        // It pauses (a heartbeat's wait): it may have ended, or not.
        std::thread::sleep(Duration::from_millis(50));
        let paused = sample(&mut probe);
        assert_eq!(
            (paused.in_flight, paused.unsure, paused.idle),
            (1, 1, 0),
            "{paused:?}"
        );
        // A new request on the connection: an ordinary exchange again.
        request(&mut c, &mut s);
        std::thread::sleep(Duration::from_millis(50));
        respond(&mut c, &mut s);
        std::thread::sleep(Duration::from_millis(50));
        let t = sample(&mut probe);
        assert_eq!((t.in_flight, t.idle), (0, 1), "{t:?}");
    });
}

#[test]
fn an_old_stream_is_long_lived_and_what_it_receives_is_no_request() {
    in_own_namespace(|| {
        let app = App::start();
        let mut probe = app.probe().long_lived_from(Duration::from_millis(150));
        let (mut c, mut s) = app.connect();
        request(&mut c, &mut s);
        let mut t = sample(&mut probe);
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(60));
            chunk(&mut c, &mut s);
            t = sample(&mut probe);
        }
        assert_eq!(
            (t.open, t.in_flight, t.idle, t.long_lived),
            (1, 0, 0, 1),
            "{t:?}"
        );
        assert!(t.long_lived_oldest_ms.unwrap() >= 150, "{t:?}");
        // Quiet since its request, whatever it sends: the time since the
        // last request keeps growing.
        let since = t.since_last_request_ms.unwrap();
        std::thread::sleep(Duration::from_millis(60));
        chunk(&mut c, &mut s);
        let later = sample(&mut probe);
        assert!(later.since_last_request_ms.unwrap() > since, "{later:?}");
    });
}

#[test]
fn calls_that_overlap_on_a_connection_make_it_unsure_after_an_answer() {
    in_own_namespace(|| {
        let app = App::start();
        let mut probe = app.probe();
        // An HTTP/1.1 exchange, answered: idle, nothing multiplexed.
        let (mut one_c, mut one_s) = app.connect();
        request(&mut one_c, &mut one_s);
        std::thread::sleep(Duration::from_millis(20));
        respond(&mut one_c, &mut one_s);
        std::thread::sleep(Duration::from_millis(20));
        let t = sample(&mut probe);
        assert_eq!((t.in_flight, t.idle, t.multiplexed), (0, 1, false), "{t:?}");
        // Two calls on one connection: a slow one, and while it is owed,
        // another, with nothing sent between (HTTP/2 multiplexes them).
        let (mut c, mut s) = app.connect();
        request(&mut c, &mut s);
        std::thread::sleep(Duration::from_millis(20));
        let owed = sample(&mut probe);
        assert_eq!(owed.in_flight, 1, "{owed:?}");
        request(&mut c, &mut s);
        std::thread::sleep(Duration::from_millis(20));
        let t = sample(&mut probe);
        assert!(t.multiplexed, "{t:?}");
        // The quick call is answered; the slow one is not, and the clocks
        // cannot tell: in flight, unsure. The port multiplexes: the other
        // connection on it, which received data lately, is unsure too.
        respond(&mut c, &mut s);
        std::thread::sleep(Duration::from_millis(20));
        let t = sample(&mut probe);
        assert_eq!((t.in_flight, t.unsure, t.idle), (2, 2, 0), "{t:?}");
        // And stays so after its next exchange.
        request(&mut one_c, &mut one_s);
        std::thread::sleep(Duration::from_millis(20));
        respond(&mut one_c, &mut one_s);
        std::thread::sleep(Duration::from_millis(20));
        let t = sample(&mut probe);
        assert_eq!((t.in_flight, t.unsure, t.idle), (2, 2, 0), "{t:?}");
    });
}

/// The connections reading of a learning sample.
fn learned(probe: &mut ConnectionsProbe) -> lameduck_core::Connections {
    match probe.learn() {
        ProbeValue::Connections(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn while_nothing_happens_on_tcp_learning_takes_no_dump_and_its_clocks_move_on() {
    in_own_namespace(|| {
        let app = App::start();
        let (mut client, mut server) = app.connect();
        request(&mut client, &mut server);
        // Delayed acknowledgements are segments too: let them go first.
        let settle = || std::thread::sleep(Duration::from_millis(100));
        settle();
        let mut probe = app.probe();
        let first = learned(&mut probe);
        assert_eq!((first.open, first.in_flight), (1, 1));
        std::thread::sleep(Duration::from_millis(50));
        // Owed and quiet: the same reading, older.
        let quiet = learned(&mut probe);
        assert_eq!(probe.skipped(), 1);
        assert_eq!((quiet.open, quiet.in_flight), (1, 1));
        let ago = |c: &lameduck_core::Connections| c.since_last_request_ms.unwrap();
        assert!(ago(&quiet) >= ago(&first) + 50, "{first:?} then {quiet:?}");
        // The answer is a segment out: a dump again, which sees it.
        respond(&mut client, &mut server);
        let answered = learned(&mut probe);
        assert_eq!(probe.skipped(), 1);
        assert_eq!(
            (answered.open, answered.in_flight, answered.idle),
            (1, 0, 1)
        );
        // A new connection: an accept, owed (the known connection looked
        // up, no dump), then seen at the next sample without one.
        let _second = app.connect();
        let owed = learned(&mut probe);
        assert_eq!((owed.open, owed.accepted), (1, 1), "{owed:?}");
        assert!(owed.since_last_request_ms.unwrap() < 50, "{owed:?}");
        assert_eq!(learned(&mut probe).open, 2);
        assert_eq!(probe.skipped(), 1);
        // Quiet again: nothing a clock decides, so no dump however long.
        settle();
        learned(&mut probe);
        let skipped = probe.skipped();
        learned(&mut probe);
        std::thread::sleep(STALE);
        learned(&mut probe);
        assert_eq!(probe.skipped(), skipped + 2);
        // An answer that streams, paused: its class is the clock's, so a
        // dump once it is older than `STALE`.
        request(&mut client, &mut server);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(50));
            chunk(&mut client, &mut server);
            learned(&mut probe);
        }
        settle();
        let paused = probe.traffic(true).unwrap();
        assert_eq!(paused.unsure, 1, "{paused:?}");
        let skipped = probe.skipped();
        learned(&mut probe);
        assert_eq!(probe.skipped(), skipped + 1);
        std::thread::sleep(STALE);
        learned(&mut probe);
        assert_eq!(probe.skipped(), skipped + 1);
    });
}

#[test]
fn with_no_new_connection_the_known_ones_are_looked_up_and_tell_what_a_dump_would() {
    in_own_namespace(|| {
        let app = App::start();
        let mut pairs: Vec<_> = (0..3).map(|_| app.connect()).collect();
        let mut probe = app.probe();
        let first = sample(&mut probe);
        assert_eq!((first.open, first.idle, probe.looked_up()), (3, 3, 0));
        // Requests on kept-alive connections: no accept, so lookups.
        let (client, server) = &mut pairs[0];
        request(client, server);
        let owed = sample(&mut probe);
        assert_eq!(probe.looked_up(), 1);
        assert_eq!(
            (owed.open, owed.in_flight, owed.accepted),
            (3, 1, 0),
            "{owed:?}"
        );
        // Later than the request by more than the kernel's clock can blur.
        std::thread::sleep(Duration::from_millis(50));
        respond(client, server);
        let answered = sample(&mut probe);
        assert_eq!(probe.looked_up(), 2);
        assert_eq!((answered.in_flight, answered.idle), (0, 3), "{answered:?}");
        // A new connection: a dump, which sees it.
        pairs.push(app.connect());
        let grown = sample(&mut probe);
        assert_eq!(probe.looked_up(), 2);
        assert_eq!((grown.open, grown.accepted), (4, 1), "{grown:?}");
        // One closed by the app: closing (a lookup finds it so), or gone
        // (a dump then tells what became of it); not open either way.
        let (_, server) = pairs.remove(0);
        drop(server);
        std::thread::sleep(Duration::from_millis(20));
        let closed = sample(&mut probe);
        assert_eq!(closed.open, 3, "{closed:?}");
        // And lookups again.
        let looked_up = probe.looked_up();
        sample(&mut probe);
        assert_eq!(probe.looked_up(), looked_up + 1);
    });
}

#[test]
fn learning_owes_accepts_and_dates_each_close_into_its_sample_once_a_second() {
    in_own_namespace(|| {
        let app = App::start();
        let mut probe = app.probe();
        learned(&mut probe);
        assert_eq!(probe.time_wait_reads(), 1, "the first sample reads them");
        // A close just before each sample, without a pause in accepts: the
        // samples are held, and TIME_WAIT is read once a second.
        let started = std::time::Instant::now();
        let mut closed = Vec::new();
        for _ in 0..15 {
            std::thread::sleep(Duration::from_millis(100));
            exchange_and_close(&app);
            closed.push(std::time::Instant::now());
            learned(&mut probe);
        }
        let reads = probe.time_wait_reads() - 1;
        let seconds = started.elapsed().as_secs_f64().ceil() as u64;
        assert!(
            reads <= seconds && reads < 5,
            "{reads} reads in {seconds} s"
        );
        // The others walked no table: the known sockets were looked up.
        assert!(probe.looked_up() >= 15 - reads, "{}", probe.looked_up());
        // The first sample without an accept reads them and lets the held
        // samples in: each close dated into its own.
        std::thread::sleep(Duration::from_millis(100));
        let silences = learned(&mut probe).silences;
        assert_eq!(probe.time_wait_reads() - 1, reads + 1);
        let longest = closed.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        // Timed at the samples instead, each would span two of them.
        let longest_ms = u32::try_from(longest.as_millis()).unwrap();
        assert_eq!(silences.count, 14, "{silences:?}");
        assert!(
            silences.max_ms.unwrap() <= longest_ms + 30,
            "{silences:?}, longest {longest_ms} ms"
        );
    });
}
