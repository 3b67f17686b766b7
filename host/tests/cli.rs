//! The command line itself. (Its being here also makes `cargo test` build the
//! `lameduck` binary that the end-to-end tests in `tests/` run.)

use std::process::Command;

#[test]
fn check_accepts_every_builtin_policy() {
    for name in ["drain", "delay", "jobs"] {
        let out = Command::new(env!("CARGO_BIN_EXE_lameduck"))
            .args([
                "check",
                "--cache-dir",
                "off",
                "--policy",
                &format!("builtin:{name}"),
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {stdout}");
        assert!(stdout.contains("verdict   OK"), "{stdout}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .args(["run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn install_copies_the_binary_for_an_init_container() {
    let dir = std::env::temp_dir().join(format!("lameduck-install-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dest = dir.join("lameduck");
    for _ in 0..2 {
        let status = Command::new(env!("CARGO_BIN_EXE_lameduck"))
            .args(["install", dest.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let out = Command::new(&dest)
        .args(["run", "--admin", "off", "--", "sh", "-c", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    std::fs::remove_dir_all(&dir).unwrap();
}
