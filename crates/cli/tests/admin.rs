//! `--admin-listen` and `admin_listen`: how `check` shows them, and how mistakes in them
//! are reported.

mod common;

use common::{config_file, run};

/// `check` on a config with one mistake: exit 1 and one line `error: FILE:LINE: ...`;
/// returns what follows the file's name.
fn check_fails(name: &str, text: &str) -> String {
    let path = config_file(name, text);
    let path = path.to_str().unwrap();
    let out = run(&["check", "--config", path]);
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{}", out.stderr);
    let message = lines[0].strip_prefix("error: ").unwrap_or(lines[0]);
    message
        .strip_prefix(path)
        .unwrap_or_else(|| panic!("message does not name the file: {message}"))
        .to_string()
}

#[test]
fn check_shows_the_admin_listener_from_the_flag_and_from_the_file() {
    let out = run(&[
        "check",
        "--listen",
        "127.0.0.1:8080",
        "--upstream",
        "127.0.0.1:9000",
        "--admin-listen",
        "127.0.0.1:9100",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("\nadmin              127.0.0.1:9100   /metrics /status /status.json /healthz /readyz\n"),
        "{}",
        out.stdout
    );
    let path = config_file(
        "admin.toml",
        "listen = [\"127.0.0.1:8080\"]\nadmin_listen = \"[::1]:9100\"\n",
    );
    let path = path.to_str().unwrap();
    let out = run(&["check", "--config", path, "--upstream", "127.0.0.1:9000"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("\nadmin              [::1]:9100   "),
        "{}",
        out.stdout
    );
    let out = run(&[
        "check",
        "--listen",
        "127.0.0.1:8080",
        "--upstream",
        "127.0.0.1:9000",
    ]);
    assert!(
        out.stdout.contains("\nadmin              off\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_bad_admin_listen_is_refused_with_its_line_or_flag() {
    let err = check_fails(
        "admin-bad.toml",
        "listen = [\"127.0.0.1:8080\"]\n\nadmin_listen = \"127.0.0.1\"\n",
    );
    assert!(
        err.starts_with(":3: admin_listen: invalid address `127.0.0.1`"),
        "{err}"
    );
    let err = check_fails(
        "admin-clash.toml",
        "listen = [\"127.0.0.1:8080\"]\nadmin_listen = \"127.0.0.1:8080\"\n",
    );
    assert!(
        err.starts_with(":2: admin_listen 127.0.0.1:8080 is also a listen address"),
        "{err}"
    );
    let out = run(&["--upstream", "127.0.0.1:9000", "--admin-listen", "9100"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("--admin-listen"), "{}", out.stderr);
}
