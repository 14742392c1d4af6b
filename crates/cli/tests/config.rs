//! Flags and config files: what is accepted, what is refused, and how it is said.

mod common;

use common::{config_file, run};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/switchyard.example.toml");

/// The message of a failed run: exactly one line on stderr, starting with `error: `.
fn one_line_error(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    lines[0]
        .strip_prefix("error: ")
        .unwrap_or_else(|| panic!("{stderr}"))
}

#[test]
fn bad_duration_flag_exits_2_naming_the_flag_and_the_fix() {
    let out = run(&["--upstream", "127.0.0.1:9000", "--read-timeout", "60"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("--read-timeout"), "{}", out.stderr);
    assert!(out.stderr.contains("missing unit"), "{}", out.stderr);
}

#[test]
fn zero_timeout_flag_exits_2_but_zero_tunnel_idle_is_off() {
    let out = run(&["--upstream", "127.0.0.1:9000", "--send-timeout", "0s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("--send-timeout"), "{}", out.stderr);

    let out = run(&[
        "check",
        "--listen",
        "127.0.0.1:8080",
        "--upstream",
        "127.0.0.1:9000",
        "--tunnel-idle-timeout",
        "0s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("tunnel_idle off"), "{}", out.stdout);
}

#[test]
fn bad_address_flag_exits_2() {
    let out = run(&["--listen", "localhost", "--upstream", "127.0.0.1:9000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.contains("invalid address `localhost`"),
        "{}",
        out.stderr
    );
}

#[test]
fn h2c_upgrade_is_refused_as_smuggling() {
    let out = run(&["--upstream", "127.0.0.1:9000", "--allow-upgrade", "h2c"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stderr.contains("smuggle"), "{}", out.stderr);
}

#[test]
fn unknown_flag_exits_2() {
    let out = run(&["--upstream", "127.0.0.1:9000", "--proxy-read-timeout", "5s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr.contains("--proxy-read-timeout"),
        "{}",
        out.stderr
    );
}

#[test]
fn missing_upstream_exits_2_with_one_line() {
    let out = run(&["--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line_error(&out.stderr).starts_with("no upstream"));
}

#[test]
fn bad_log_filter_exits_2() {
    let out = run(&[
        "--upstream",
        "127.0.0.1:9000",
        "--listen",
        "127.0.0.1:0",
        "--log",
        "=[bad",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line_error(&out.stderr).contains("--log"));
}

#[test]
fn check_accepts_the_example_config_and_prints_what_would_run() {
    let out = run(&["check", "--config", EXAMPLE]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let s = &out.stdout;
    assert!(s.contains("listen             127.0.0.1:8080"), "{s}");
    assert!(
        s.contains("upstream backend   127.0.0.1:9000 127.0.0.1:9001   balance round_robin"),
        "{s}"
    );
    assert!(s.contains("route /chat/ -> backend"), "{s}");
    assert!(s.contains("allow_upgrade  websocket"), "{s}");
    assert!(s.contains("read 60s"), "{s}");
    assert!(s.contains("header 60s   idle 75s"), "{s}");
    assert!(
        s.contains("\n    websocket      validate on   ping off\n"),
        "{s}"
    );
    assert!(s.trim_end().ends_with("test is successful"), "{s}");
}

#[test]
fn readme_shows_what_check_prints_for_the_example() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md at the repository root");
    let command = "$ switchyard check --config crates/cli/switchyard.example.toml\n";
    let start = readme
        .find(command)
        .expect("README shows `switchyard check`")
        + command.len();
    let shown = &readme[start..start + readme[start..].find("```").unwrap()];
    // The README's run had two workers; elsewhere the default is the number of cores.
    let out = run(&["check", "--config", EXAMPLE, "--workers", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout
            .replace(EXAMPLE, "crates/cli/switchyard.example.toml"),
        shown
    );
}

#[test]
fn flags_win_over_the_file_on_every_route() {
    let out = run(&[
        "check",
        "--config",
        EXAMPLE,
        "--read-timeout",
        "5s",
        "--listen",
        "127.0.0.1:9999",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("read 5s"), "{}", out.stdout);
    assert!(!out.stdout.contains("read 60s"), "{}", out.stdout);
    assert!(out.stdout.contains("listen             127.0.0.1:9999"));
}

#[test]
fn routes_inherit_defaults_and_override_them() {
    let path = config_file(
        "inherit.toml",
        r#"listen = ["127.0.0.1:8080"]
[defaults]
read_timeout = "30s"
tunnel_idle_timeout = "5m"
[upstreams.a]
servers = ["127.0.0.1:9000"]
[[routes]]
prefix = "/"
upstream = "a"
[[routes]]
prefix = "/slow/"
upstream = "a"
read_timeout = "2h"
allow_upgrade = []
max_body_bytes = 1024
"#,
    );
    let out = run(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let s = &out.stdout;
    let slash = s.find("route / -> a").expect(s);
    let slow = s.find("route /slow/ -> a").expect(s);
    assert!(
        s[slash..slow].contains("read 30s   send 60s   tunnel_idle 5m"),
        "{s}"
    );
    assert!(s[slow..].contains("read 2h"), "{s}");
    assert!(s[slow..].contains("allow_upgrade  none"), "{s}");
    assert!(s[slow..].contains("max_body_bytes 1024"), "{s}");
}

/// `check` on a config with one mistake: exit 1 and one line `error: FILE:LINE: ...`.
fn check_fails(name: &str, text: &str) -> String {
    let path = config_file(name, text);
    let path = path.to_str().unwrap();
    let out = run(&["check", "--config", path]);
    assert_eq!(out.status.code(), Some(1), "{}{}", out.stdout, out.stderr);
    let message = one_line_error(&out.stderr);
    message
        .strip_prefix(path)
        .unwrap_or_else(|| panic!("message does not name the file: {message}"))
        .to_string()
}

const GOOD_HEAD: &str =
    "listen = [\"127.0.0.1:8080\"]\n\n[upstreams.backend]\nservers = [\"127.0.0.1:9000\"]\n\n";

#[test]
fn check_names_an_unknown_key_and_its_line() {
    let message = check_fails(
        "unknown_key.toml",
        &format!("{GOOD_HEAD}[[routes]]\nprefx = \"/chat/\"\nupstream = \"backend\"\n"),
    );
    assert!(
        message.starts_with(":7: unknown field `prefx`, expected one of"),
        "{message}"
    );
}

#[test]
fn check_names_a_bad_value_its_key_and_line() {
    let message = check_fails(
        "bad_value.toml",
        &format!("{GOOD_HEAD}[[routes]]\nprefix = \"/\"\nupstream = \"backend\"\nread_timeout = \"1 minute\"\n"),
    );
    assert!(
        message.starts_with(":9: read_timeout: invalid duration `1 minute`"),
        "{message}"
    );
}

#[test]
fn check_refuses_a_route_to_an_unknown_upstream() {
    let message = check_fails(
        "unknown_upstream.toml",
        &format!("{GOOD_HEAD}[[routes]]\nprefix = \"/\"\nupstream = \"backnd\"\n"),
    );
    assert!(
        message.starts_with(":8: route `/` names unknown upstream `backnd` (defined: backend)"),
        "{message}"
    );
}

#[test]
fn check_refuses_duplicate_prefixes() {
    let message = check_fails(
        "duplicate.toml",
        &format!(
            "{GOOD_HEAD}[[routes]]\nprefix = \"/a/\"\nupstream = \"backend\"\n[[routes]]\nprefix = \"/a/\"\nupstream = \"backend\"\n"
        ),
    );
    assert!(
        message.starts_with(":10: duplicate route prefix `/a/` (first defined on line 6)"),
        "{message}"
    );
}

#[test]
fn check_refuses_a_prefix_without_a_slash() {
    let message = check_fails(
        "no_slash.toml",
        &format!("{GOOD_HEAD}[[routes]]\nprefix = \"chat\"\nupstream = \"backend\"\n"),
    );
    assert!(
        message.starts_with(":7: prefix `chat` must start with '/'"),
        "{message}"
    );
}

#[test]
fn check_refuses_an_upstream_without_servers() {
    let message = check_fails(
        "no_servers.toml",
        "listen = [\"127.0.0.1:8080\"]\n[upstreams.empty]\nservers = []\n[[routes]]\nprefix = \"/\"\nupstream = \"empty\"\n",
    );
    assert!(
        message.starts_with(":2: upstream `empty` has no servers"),
        "{message}"
    );
}

#[test]
fn check_refuses_a_bad_server_address() {
    let message = check_fails(
        "bad_server.toml",
        "listen = [\"127.0.0.1:8080\"]\n[upstreams.a]\nservers = [\n  \"127.0.0.1:9000\",\n  \"127.0.0.1\",\n]\n",
    );
    assert!(
        message.starts_with(":5: upstream `a`: invalid server `127.0.0.1`"),
        "{message}"
    );
}

#[test]
fn check_refuses_h2c_in_the_file() {
    let message = check_fails(
        "h2c.toml",
        &format!("{GOOD_HEAD}[defaults]\nallow_upgrade = [\"websocket\", \"h2c\"]\n"),
    );
    assert!(
        message.starts_with(":7: allow_upgrade: upgrade protocol `h2c`"),
        "{message}"
    );
}

#[test]
fn check_of_a_missing_file_fails_with_one_line() {
    let out = run(&["check", "--config", "/nonexistent/switchyard.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line_error(&out.stderr).starts_with("cannot read /nonexistent/switchyard.toml"));
}

#[test]
fn running_with_a_bad_config_exits_2() {
    let path = config_file("run_bad.toml", "listen = [\"127.0.0.1:0\"]\nworkers = 0\n[upstreams.a]\nservers = [\"127.0.0.1:9000\"]\n[[routes]]\nprefix = \"/\"\nupstream = \"a\"\n");
    let out = run(&["--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert_eq!(one_line_error(&out.stderr), "workers must be at least 1");
}

#[test]
fn repeated_upstreams_form_one_round_robin_group_on_route_slash() {
    let out = run(&[
        "check",
        "--listen",
        "127.0.0.1:8080",
        "--listen",
        "127.0.0.1:8081",
        "--upstream",
        "127.0.0.1:9000",
        "--upstream",
        "127.0.0.1:9001",
        "--allow-upgrade",
        "websocket",
        "--allow-upgrade",
        "TLS/1.2",
        "--max-body-bytes",
        "1000",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let s = &out.stdout;
    assert!(
        s.contains("listen             127.0.0.1:8080 127.0.0.1:8081"),
        "{s}"
    );
    assert!(
        s.contains("upstream default   127.0.0.1:9000 127.0.0.1:9001   balance round_robin"),
        "{s}"
    );
    assert!(s.contains("route / -> default"), "{s}");
    assert!(s.contains("allow_upgrade  websocket, TLS/1.2"), "{s}");
    assert!(s.contains("max_body_bytes 1000"), "{s}");
}

#[test]
fn readme_shows_the_example_config_verbatim() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md at the repository root");
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    assert!(
        readme.contains(&format!("```toml\n{example}```")),
        "README.md's config example differs from switchyard.example.toml"
    );
}

#[test]
fn check_refuses_a_via_value_that_would_inject_a_header() {
    let message = check_fails(
        "via.toml",
        &format!("{GOOD_HEAD}[forwarding]\nvia = \"proxy\\r\\nX-Injected: 1\"\n"),
    );
    assert!(message.starts_with(":7: via: invalid value"), "{message}");
}

/// The `websocket` line `check` prints for each route, in order.
fn websocket_lines(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| l.starts_with("    websocket "))
        .collect()
}

const WS_LAYERS: &str = r#"listen = ["127.0.0.1:8080"]
[defaults]
ws_ping_interval = "30s"
ws_ping_timeout = "5s"
[upstreams.a]
servers = ["127.0.0.1:9000"]
[[routes]]
prefix = "/"
upstream = "a"
[[routes]]
prefix = "/raw/"
upstream = "a"
ws_validate = false
ws_ping_interval = "off"
[[routes]]
prefix = "/patient/"
upstream = "a"
ws_ping_interval = "2m"
ws_ping_timeout = "30s"
"#;

#[test]
fn websocket_settings_layer_defaults_then_route_then_flags() {
    let path = config_file("ws_layers.toml", WS_LAYERS);
    let path = path.to_str().unwrap();

    let out = run(&["check", "--config", path]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(
        websocket_lines(&out.stdout),
        [
            "    websocket      validate on   ping every 30s, dead after 5s",
            "    websocket      validate off   ping off",
            "    websocket      validate on   ping every 2m, dead after 30s",
        ],
        "{}",
        out.stdout
    );

    let out = run(&[
        "check",
        "--config",
        path,
        "--ws-ping-interval",
        "15s",
        "--ws-ping-timeout",
        "3s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(
        websocket_lines(&out.stdout),
        [
            "    websocket      validate on   ping every 15s, dead after 3s",
            "    websocket      validate off   ping every 15s, dead after 3s",
            "    websocket      validate on   ping every 15s, dead after 3s",
        ],
        "{}",
        out.stdout
    );
}

#[test]
fn ws_ping_interval_flag_off_or_0s_turns_pings_off_on_every_route() {
    let path = config_file("ws_off.toml", WS_LAYERS);
    for off in ["off", "0s"] {
        let out = run(&[
            "check",
            "--config",
            path.to_str().unwrap(),
            "--ws-ping-interval",
            off,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
        let lines = websocket_lines(&out.stdout);
        assert_eq!(lines.len(), 3, "{}", out.stdout);
        assert!(
            lines.iter().all(|l| l.ends_with("   ping off")),
            "{lines:?}"
        );
    }
}

#[test]
fn ws_ping_flags_on_the_flag_route() {
    let out = run(&[
        "check",
        "--listen",
        "127.0.0.1:8080",
        "--upstream",
        "127.0.0.1:9000",
        "--ws-ping-interval",
        "20s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(
        websocket_lines(&out.stdout),
        ["    websocket      validate on   ping every 20s, dead after 10s"]
    );
}

#[test]
fn bad_ws_ping_timeout_flag_exits_2_naming_the_flag() {
    for (value, why) in [
        ("0s", "`0s` is not allowed here"),
        ("off", "invalid duration `off`"),
        ("10", "missing unit"),
    ] {
        let out = run(&["--upstream", "127.0.0.1:9000", "--ws-ping-timeout", value]);
        assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
        assert!(out.stderr.contains("--ws-ping-timeout"), "{}", out.stderr);
        assert!(out.stderr.contains(why), "{}", out.stderr);
    }
    let out = run(&[
        "--upstream",
        "127.0.0.1:9000",
        "--ws-ping-interval",
        "never",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("expected `off` or"), "{}", out.stderr);
}

const BAD_WS_VALUES: [(&str, &str); 4] = [
    (
        "ws_ping_timeout = \"0s\"",
        ":9: ws_ping_timeout: a timeout of `0s` is not allowed here",
    ),
    (
        "ws_ping_timeout = 10",
        ":9: ws_ping_timeout: invalid duration 10: write it as a string with a unit, like \"10s\"",
    ),
    (
        "ws_ping_interval = 30",
        ":9: ws_ping_interval: invalid duration 30: write it as a string with a unit, like \"30s\"",
    ),
    (
        "ws_validate = \"yes\"",
        ":9: ws_validate: invalid type: string \"yes\", expected a boolean",
    ),
];

#[test]
fn check_names_a_bad_websocket_value_its_key_and_line() {
    for (i, (line, expected)) in BAD_WS_VALUES.iter().enumerate() {
        let message = check_fails(
            &format!("bad_ws_{i}.toml"),
            &format!("{GOOD_HEAD}[[routes]]\nprefix = \"/\"\nupstream = \"backend\"\n{line}\n"),
        );
        assert!(message.starts_with(expected), "{message}");
    }
}

#[test]
fn running_with_a_bad_websocket_value_exits_2_with_one_line() {
    for (i, (line, expected)) in BAD_WS_VALUES.iter().enumerate() {
        let text =
            format!("{GOOD_HEAD}[[routes]]\nprefix = \"/\"\nupstream = \"backend\"\n{line}\n")
                .replace("127.0.0.1:8080", "127.0.0.1:0");
        let path = config_file(&format!("run_bad_ws_{i}.toml"), &text);
        let path = path.to_str().unwrap();
        let out = run(&["--config", path]);
        assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
        let message = one_line_error(&out.stderr);
        assert!(
            message.starts_with(&format!("{path}{expected}")),
            "{message}"
        );
    }
}

#[test]
fn an_unknown_websocket_key_is_refused_with_its_line() {
    let message = check_fails(
        "ws_unknown.toml",
        &format!("{GOOD_HEAD}[defaults]\nws_ping = \"30s\"\n"),
    );
    assert!(
        message.starts_with(":7: unknown field `ws_ping`, expected one of"),
        "{message}"
    );
    assert!(message.contains("`ws_ping_interval`"), "{message}");
}
