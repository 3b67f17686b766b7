//! The picture of a drain, from `replay --svg` and `/timeline.svg`, shown in
//! a real browser: it must display, not merely parse.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use lameduck_core::Signal;
use lameduck_core::record::Event;

use crate::util::{Agent, App, get, get_body, lameduck, policy_loaded, scratch};

const SECOND: Duration = Duration::from_secs(1);
const CHROMIUM: &str = "/usr/bin/chromium";

/// A real drain, caught after the policy sent TERM: the app ignores it, so
/// the agent waits for its deadline and there is time to ask.
/// Returns `/status` and `/timeline.svg`.
fn recorded_drain() -> (String, String) {
    let app = App::new("picture-app");
    let command = app.command(&["--on-term", "ignore"]);
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let args = ["--admin", "127.0.0.1:0", "--grace-period", "10s"];
    let mut agent = Agent::start(
        &[&args[..], &["--policy-config", "kill-after=10s"]].concat(),
        &command,
    );
    let admin = agent.admin_port();
    let port = app.port();
    agent.wait_for("the policy", 10 * SECOND, policy_loaded);

    // Traffic: a slow request in flight across the TERM, quick ones after.
    let slow = std::thread::spawn(move || get(port, "/slow?ms=700"));
    std::thread::sleep(Duration::from_millis(200));
    agent.signal(libc::SIGTERM);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(100));
        get(port, "/").unwrap();
    }
    slow.join().unwrap().unwrap();
    agent.wait_for("TERM sent", 10 * SECOND, |r| {
        r.iter().any(|e| {
            matches!(
                e.event,
                Event::Sent {
                    signal: Signal::Term,
                    ..
                }
            )
        })
    });

    let (code, status) = get_body(admin, "/status").unwrap();
    assert_eq!(code, 200, "{status}");
    let (code, head, svg) = get_with_headers(admin, "/timeline.svg");
    assert_eq!(code, 200, "{svg}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: image/svg+xml"),
        "{head}"
    );
    agent.kill();
    (status, svg)
}

/// `lameduck replay --svg` of a saved `/status`: the SVG, and what it printed.
fn replay_to_svg(dir: &Path, status: &Path) -> (String, String) {
    let svg = dir.join("drain.svg");
    let out = Command::new(lameduck())
        .args(["replay", "--svg"])
        .args([&svg, status])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    (std::fs::read_to_string(&svg).unwrap(), stdout)
}

/// A GET: (status, headers, body).
fn get_with_headers(port: u16, path: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, head.to_string(), body.to_string())
}

#[test]
fn a_real_drain_is_drawn_and_displays_in_a_browser() {
    let dir = scratch("picture");
    let (status, admin_svg) = recorded_drain();
    let status_file = dir.join("status.json");
    std::fs::write(&status_file, &status).unwrap();

    // `replay --svg` draws it and still replays it.
    let (replay_svg, stdout) = replay_to_svg(&dir, &status_file);
    assert!(stdout.contains("; 0 answer(s) differ"), "{stdout}");

    // What the browser must find: every decision on the timeline.
    let mut status: Value = serde_json::from_str(&status).unwrap();
    let entries = status["timeline"].as_array_mut().unwrap();
    let decisions = entries.iter().filter(|e| e["event"] == "decision").count();
    assert!(decisions >= 2, "{entries:#?}");

    // A policy's reason can be anything: it must stay text.
    let decision = entries.iter_mut().find(|e| e["event"] == "decision");
    let hostile = format!(
        "</title><script>alert(1)</script>&amp; \u{1}{}",
        "x".repeat(300)
    );
    decision.unwrap()["data"]["decision"]["reason"] = hostile.into();
    let hostile_file = dir.join("hostile.json");
    std::fs::write(&hostile_file, status.to_string()).unwrap();
    let (hostile_svg, _) = replay_to_svg(&dir, &hostile_file);

    let report = in_browser(
        &dir,
        &[
            ("replay", &replay_svg),
            ("admin", &admin_svg),
            ("hostile", &hostile_svg),
        ],
    );
    let hostile = &report["hostile"];
    assert!(hostile["error"].is_null(), "{hostile:#}");
    assert_eq!(hostile["scripts"], 0, "{hostile:#}");
    assert_eq!(hostile["reason_shown"], true, "{hostile:#}");
    for name in ["replay", "admin"] {
        let r = &report[name];
        assert!(r["error"].is_null(), "{name}: {r:#}");
        let boxes = &r["boxes"];
        for part in [
            "axis",
            "ready",
            "not_ready",
            "received",
            "sent",
            "deadline",
            "grace_end",
        ] {
            let found = boxes[part].as_array().unwrap();
            assert!(!found.is_empty(), "{name}: no {part} drawn: {r:#}");
            for b in found {
                let [x, y, w, h] = [0, 1, 2, 3].map(|i| b[i].as_f64().unwrap());
                assert!(w > 0.0 || h > 0.0, "{name}: {part} has no size: {r:#}");
                assert!(
                    x >= 0.0 && y >= 0.0 && x + w <= 961.0,
                    "{name}: {part} is off the picture: {r:#}"
                );
            }
        }
        // The admin's copy was taken a moment later: it may hold more.
        let drawn = boxes["decisions"].as_array().unwrap().len();
        if name == "replay" {
            assert_eq!(drawn, decisions, "{r:#}");
        } else {
            assert!(drawn >= decisions, "{r:#}");
        }
        // The pixels the browser painted, where those parts are.
        let colours = &r["colours"];
        let check = |what: &str| {
            assert_eq!(
                colours[what], true,
                "{name}: {what} is not painted as expected: {r:#}"
            )
        };
        for what in [
            "ready",
            "not_ready",
            "received",
            "sent",
            "deadline",
            "ticks",
        ] {
            check(what);
        }
        let ink = r["ink"].as_f64().unwrap();
        assert!(
            ink > 0.03,
            "{name}: the picture is nearly blank ({ink}): {r:#}"
        );
    }
}

/// Shows each SVG in headless Chromium and reports, per SVG: where the
/// parts are (bounding boxes of the elements, drawn inline) and whether the
/// image the browser rasterised (the SVG as a strict XML image) has the
/// expected colours there.
fn in_browser(dir: &Path, svgs: &[(&str, &str)]) -> Value {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `apt-get install chromium` (the picture's test needs a real browser)"
    );
    let page = dir.join("page.html");
    let svgs: serde_json::Map<String, Value> = svgs
        .iter()
        .map(|(name, svg)| (name.to_string(), Value::from(*svg)))
        .collect();
    // `<` occurs only in JSON strings, where \u003c says the same without
    // ever closing the page's script.
    let svgs = Value::Object(svgs).to_string().replace('<', "\\u003c");
    std::fs::write(&page, PAGE.replace("/*SVGS*/", &svgs)).unwrap();
    let profile = dir.join("chromium-profile");
    let out = run_chromium(&profile, &page);
    let text = out
        .split_once("<pre id=\"out\">")
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(report, _)| {
            report
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .unwrap_or_else(|| panic!("no report in the page Chromium dumped: {out}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `chromium --dump-dom` of `page`, in a fresh profile, with nothing on the
/// network; killed if it hangs.
fn run_chromium(profile: &Path, page: &Path) -> String {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        out
    });
    let deadline = std::time::Instant::now() + 120 * SECOND;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 120s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// The page: each SVG is parsed as XML (a parse error is reported), drawn
/// inline to measure its parts, and rasterised as an image to read pixels.
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<body style="margin:0;background:#fff">
<pre id="out">pending</pre>
<script>
const SVGS = /*SVGS*/;
const COLOURS = {
  ready: [0, 158, 115], not_ready: [200, 200, 200], received: [204, 121, 167],
  sent: [213, 94, 0], deadline: [213, 94, 0], ticks: [34, 34, 34],
};
const PARTS = {
  axis: ".axis-line", ready: ".ready .band", not_ready: ".not-ready .band",
  received: ".signal-received .mark-line", sent: ".signal-sent .mark-line",
  deadline: ".deadline .mark-line", grace_end: ".grace-end .mark-line",
  decisions: ".decision path", ticks: ".decision:not(.signalled) path",
};
async function check(text) {
  const doc = new DOMParser().parseFromString(text, "image/svg+xml");
  const error = doc.querySelector("parsererror");
  if (error) return { error: "not XML: " + error.textContent };
  const svg = document.importNode(doc.documentElement, true);
  document.body.appendChild(svg);
  const origin = svg.getBoundingClientRect();
  const box = el => {
    const r = el.getBoundingClientRect();
    return [r.x - origin.x, r.y - origin.y, r.width, r.height];
  };
  const boxes = {};
  for (const [part, selector] of Object.entries(PARTS)) {
    boxes[part] = Array.from(svg.querySelectorAll(selector), box);
  }
  const img = new Image();
  // A blob of the page's own origin: the canvas stays readable.
  img.src = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const at = (x, y) => {
    // The pixel that x, y falls in: wholly inside a 2px line centred there.
    const i = (Math.floor(y) * canvas.width + Math.floor(x)) * 4;
    return [pixels[i], pixels[i + 1], pixels[i + 2]];
  };
  const near = (a, b) => a.every((v, i) => Math.abs(v - b[i]) <= 40);
  // A part is painted if, in each of its boxes, some pixel on a grid has its colour.
  const colours = {};
  for (const [part, colour] of Object.entries(COLOURS)) {
    colours[part] = boxes[part].length > 0 && boxes[part].every(([x, y, w, h]) => {
      for (let i = 0; i <= 8; i++) for (let j = 0; j <= 8; j++) {
        if (near(at(x + w * i / 8, y + h * j / 8), colour)) return true;
      }
      return false;
    });
  }
  let inked = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    if (pixels[i] + pixels[i + 1] + pixels[i + 2] < 600) inked++;
  }
  return {
    boxes, colours, ink: inked / (pixels.length / 4), size: [canvas.width, canvas.height],
    scripts: svg.querySelectorAll("script").length,
    reason_shown: Array.from(svg.querySelectorAll("title"), t => t.textContent)
      // `<\/` keeps this page's own script open.
      .some(t => t.includes("<\/title><script>alert(1)<\/script>&amp;")),
  };
}
(async () => {
  const report = {};
  for (const [name, text] of Object.entries(SVGS)) {
    try { report[name] = await check(text); } catch (e) { report[name] = { error: String(e) }; }
  }
  document.getElementById("out").textContent = JSON.stringify(report);
})();
</script>
"#;
