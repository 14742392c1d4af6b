//! Upstream groups in flags and config files: host names, weights and balancers, as
//! `switchyard check` prints them and as errors say what is wrong.

mod common;

use common::{config_file, run};

fn one_line_error(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    lines[0]
        .strip_prefix("error: ")
        .unwrap_or_else(|| panic!("{stderr}"))
}

fn check(name: &str, text: &str) -> common::Finished {
    let path = config_file(name, text);
    run(&["check", "--config", path.to_str().unwrap()])
}

const HEAD: &str =
    "listen = [\"127.0.0.1:8080\"]\n[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n";

#[test]
fn check_prints_the_balancer_the_weights_and_what_each_name_resolved_to() {
    let text = format!(
        "{HEAD}[defaults]\nresolve_interval = \"10s\"\n[upstreams.app]\nbalance = \"least_conn\"\nservers = [\n  {{ address = \"127.0.0.1:9000\", weight = 3 }},\n  \"localhost:9001\",\n]\n"
    );
    let out = check("names.toml", &text);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let s = &out.stdout;
    assert!(
        s.contains("upstream app       127.0.0.1:9000 weight=3 "),
        "{s}"
    );
    assert!(s.contains("   balance least_conn\n"), "{s}");
    let name = s
        .lines()
        .find(|line| line.trim_start().starts_with("name "))
        .unwrap_or_else(|| panic!("no name line: {s}"));
    assert!(name.contains("localhost:9001 -> "), "{name}");
    assert!(name.contains(":9001"), "{name}");
    assert!(name.ends_with("resolved again every 10s"), "{name}");
}

#[test]
fn hashing_balancers_are_printed_with_what_they_hash() {
    for (keys, shown) in [
        ("balance = \"ip_hash\"", "balance ip_hash"),
        ("hash = \"header:X-User\"", "balance hash header:x-user"),
        (
            "balance = \"hash\"\nhash = \"cookie:sid\"",
            "balance hash cookie:sid",
        ),
    ] {
        let text = format!("{HEAD}[upstreams.app]\n{keys}\nservers = [\"127.0.0.1:9000\"]\n");
        let out = check("hash.toml", &text);
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
        assert!(out.stdout.contains(shown), "{keys}: {}", out.stdout);
    }
}

#[test]
fn a_name_that_does_not_resolve_is_one_error_naming_it() {
    let text = format!(
        "{HEAD}[upstreams.app]\nservers = [\"127.0.0.1:9000\", \"no-such-host.invalid:9000\"]\n"
    );
    let out = check("unresolved.toml", &text);
    assert_eq!(out.status.code(), Some(1));
    let message = one_line_error(&out.stderr);
    assert!(
        message.contains(":6: upstream `app`: cannot resolve `no-such-host.invalid:9000`"),
        "{message}"
    );

    // When serving, it stops the start: exit 2, one line.
    let out = run(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "no-such-host.invalid:9000",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let message = one_line_error(&out.stderr);
    assert!(
        message.contains("cannot resolve `no-such-host.invalid:9000`"),
        "{message}"
    );
}

#[test]
fn bad_balancers_and_weights_are_refused_with_their_line() {
    for (keys, servers, expected) in [
        (
            "balance = \"leastconn\"",
            "\"127.0.0.1:9000\"",
            ":6: upstream `app`: balance: unknown balancer `leastconn`",
        ),
        (
            "balance = \"ip_hash\"\nhash = \"header:x\"",
            "\"127.0.0.1:9000\"",
            ":7: upstream `app`: `hash` goes with",
        ),
        (
            "hash = \"query:x\"",
            "\"127.0.0.1:9000\"",
            ":6: upstream `app`: hash: invalid value `query:x`",
        ),
        (
            "",
            "{ address = \"127.0.0.1:9000\", weight = 0 }",
            "weight 0 is out of range 1 to 1000",
        ),
        (
            "",
            "\"127.0.0.1:9000\", \"127.0.0.1:9000\"",
            "127.0.0.1:9000 is listed twice",
        ),
    ] {
        let text = format!("{HEAD}[upstreams.app]\n{keys}\nservers = [{servers}]\n");
        let out = check("bad_balance.toml", &text);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{keys} {servers}: {}",
            out.stdout
        );
        let message = one_line_error(&out.stderr);
        assert!(message.contains(expected), "{keys} {servers}: {message}");
    }
}

#[test]
fn upstream_flags_take_host_names() {
    let out = run(&[
        "check",
        "--listen",
        "127.0.0.1:8080",
        "--upstream",
        "localhost:9000",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("localhost:9000 -> "), "{}", out.stdout);
    let out = run(&["--listen", "127.0.0.1:0", "--upstream", "localhost"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stderr
            .contains("invalid server `localhost`: expected IP:PORT or HOST:PORT"),
        "{}",
        out.stderr
    );
}
