use super::*;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn build(text: &str, flags: &Overrides) -> Result<Settings, ConfigError> {
    let source = Source {
        name: "switchyard.toml".into(),
        text: text.into(),
    };
    Settings::build(&source.parse()?, Some(&source), flags)
}

const ROUTES: &str = r#"listen = ["127.0.0.1:8080"]
[defaults]
ws_validate = false
ws_ping_interval = "30s"
ws_ping_timeout = "5s"
[upstreams.a]
servers = ["127.0.0.1:9000"]
[[routes]]
prefix = "/inherits/"
upstream = "a"
[[routes]]
prefix = "/own/"
upstream = "a"
ws_validate = true
ws_ping_interval = "off"
ws_ping_timeout = "20s"
[[routes]]
prefix = "/timeout-only/"
upstream = "a"
ws_ping_timeout = "1m"
"#;

fn policy(
    validate: bool,
    ping_interval: Option<Duration>,
    ping_timeout: Duration,
) -> WebSocketPolicy {
    WebSocketPolicy {
        validate,
        ping_interval,
        ping_timeout,
    }
}

fn policies(settings: &Settings) -> Vec<WebSocketPolicy> {
    settings
        .core
        .routes
        .iter()
        .map(|r| r.websocket.clone())
        .collect()
}

#[test]
fn without_websocket_keys_every_route_has_the_builtin_policy() {
    let flags = Overrides {
        listen: vec!["127.0.0.1:8080".parse().unwrap()],
        upstream: vec!["127.0.0.1:9000".parse().unwrap()],
        ..Overrides::default()
    };
    let settings = Settings::load(&flags).unwrap();
    assert_eq!(policies(&settings), [WebSocketPolicy::default()]);
    assert_eq!(WebSocketPolicy::default(), policy(true, None, secs(10)));
}

#[test]
fn routes_inherit_websocket_defaults_and_override_them_key_by_key() {
    let settings = build(ROUTES, &Overrides::default()).unwrap();
    assert_eq!(
        policies(&settings),
        [
            policy(false, Some(secs(30)), secs(5)),
            policy(true, None, secs(20)),
            policy(false, Some(secs(30)), secs(60)),
        ]
    );
}

#[test]
fn ping_flags_win_on_every_route_and_validation_stays_per_route() {
    let flags = Overrides {
        ws_ping_interval: Some(Some(secs(15))),
        ws_ping_timeout: Some(secs(3)),
        ..Overrides::default()
    };
    let settings = build(ROUTES, &flags).unwrap();
    assert_eq!(
        policies(&settings),
        [
            policy(false, Some(secs(15)), secs(3)),
            policy(true, Some(secs(15)), secs(3)),
            policy(false, Some(secs(15)), secs(3)),
        ]
    );

    let off = Overrides {
        ws_ping_interval: Some(None),
        ..Overrides::default()
    };
    let settings = build(ROUTES, &off).unwrap();
    assert!(policies(&settings)
        .iter()
        .all(|p| p.ping_interval.is_none()));
    assert_eq!(policies(&settings)[2].ping_timeout, secs(60));
}

#[test]
fn the_flag_route_takes_websocket_defaults_from_the_file() {
    let text = "[defaults]\nws_ping_interval = \"45s\"\nws_validate = false\n";
    let flags = Overrides {
        listen: vec!["127.0.0.1:8080".parse().unwrap()],
        upstream: vec!["127.0.0.1:9000".parse().unwrap()],
        ws_ping_timeout: Some(secs(2)),
        ..Overrides::default()
    };
    let settings = build(text, &flags).unwrap();
    assert_eq!(
        policies(&settings),
        [policy(false, Some(secs(45)), secs(2))]
    );
}

#[test]
fn check_prints_each_routes_websocket_policy() {
    let shown = build(ROUTES, &Overrides::default()).unwrap().to_string();
    let lines: Vec<&str> = shown
        .lines()
        .filter(|l| l.starts_with("    websocket"))
        .collect();
    assert_eq!(
        lines,
        [
            "    websocket      validate off   ping every 30s, dead after 5s",
            "    websocket      validate on   ping off",
            "    websocket      validate off   ping every 30s, dead after 60s",
        ]
    );
}

const ADMIN: &str = r#"listen = ["127.0.0.1:8080"]
admin_listen = "127.0.0.1:9100"
[upstreams.a]
servers = ["127.0.0.1:9000"]
[[routes]]
prefix = "/"
upstream = "a"
"#;

fn admin_line(settings: &Settings) -> String {
    let shown = settings.to_string();
    let line = shown.lines().find(|l| l.starts_with("admin "));
    line.expect("check shows the admin listener").to_string()
}

#[test]
fn admin_listen_comes_from_the_file_the_flag_wins_and_check_shows_it() {
    let settings = build(ADMIN, &Overrides::default()).unwrap();
    let from_file: SocketAddr = "127.0.0.1:9100".parse().unwrap();
    assert_eq!(settings.admin_listen, Some(from_file));
    assert_eq!(settings.server_config().admin_listen, Some(from_file));
    assert_eq!(
        admin_line(&settings),
        "admin              127.0.0.1:9100   /metrics /status /status.json /healthz /readyz"
    );

    let flag: SocketAddr = "127.0.0.1:9200".parse().unwrap();
    let flags = Overrides {
        admin_listen: Some(flag),
        ..Overrides::default()
    };
    assert_eq!(build(ADMIN, &flags).unwrap().admin_listen, Some(flag));

    let without = ADMIN.replace("admin_listen = \"127.0.0.1:9100\"\n", "");
    let settings = build(&without, &Overrides::default()).unwrap();
    assert_eq!(settings.admin_listen, None, "off by default");
    assert_eq!(settings.server_config().admin_listen, None);
    assert_eq!(admin_line(&settings), "admin              off");
}

#[test]
fn a_bad_admin_listen_names_the_file_and_line() {
    let text = ADMIN.replace("127.0.0.1:9100", "localhost:9100");
    let err = build(&text, &Overrides::default()).unwrap_err().to_string();
    assert!(
        err.starts_with("switchyard.toml:2: admin_listen: invalid address `localhost:9100`"),
        "{err}"
    );
    let text = ADMIN.replace("\"127.0.0.1:9100\"", "9100");
    let err = build(&text, &Overrides::default()).unwrap_err().to_string();
    assert!(err.starts_with("switchyard.toml:2: admin_listen:"), "{err}");
}

#[test]
fn admin_listen_must_not_be_a_listen_address() {
    let text = ADMIN.replace("127.0.0.1:9100", "127.0.0.1:8080");
    let err = build(&text, &Overrides::default()).unwrap_err().to_string();
    assert!(
        err.starts_with("switchyard.toml:2: admin_listen 127.0.0.1:8080 is also a listen address"),
        "{err}"
    );
    let flags = Overrides {
        listen: vec!["127.0.0.1:9100".parse().unwrap()],
        ..Overrides::default()
    };
    let err = build(ADMIN, &flags).unwrap_err().to_string();
    assert!(
        err.starts_with("switchyard.toml:2: admin_listen 127.0.0.1:9100"),
        "{err}"
    );
    // Port 0 picks a free port for each: no clash.
    let flags = Overrides {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Overrides::default()
    };
    assert!(build(ADMIN, &flags).is_ok());
}

const MINIMAL: &str = r#"listen = ["127.0.0.1:8080"]
[upstreams.a]
servers = ["127.0.0.1:9000"]
[[routes]]
prefix = "/"
upstream = "a"
"#;

const UPGRADE: &str = r#"listen = ["127.0.0.1:8080"]
upgrade_socket = "/run/switchyard/upgrade.sock"
[upstreams.a]
servers = ["127.0.0.1:9000"]
[[routes]]
prefix = "/"
upstream = "a"
"#;

#[test]
fn drain_timeout_is_off_by_default_set_at_the_top_level_and_the_flag_wins() {
    let none = Overrides::default();
    let settings = build(MINIMAL, &none).unwrap();
    assert_eq!(settings.drain_timeout, None);
    assert_eq!(settings.server_config().drain_timeout, None);
    let text = format!("drain_timeout = \"30s\"\n{MINIMAL}");
    let settings = build(&text, &none).unwrap();
    assert_eq!(settings.drain_timeout, Some(secs(30)));
    assert_eq!(settings.server_config().drain_timeout, Some(secs(30)));
    assert!(
        settings.to_string().contains("drain_timeout 30s"),
        "{settings}"
    );
    let off = Overrides {
        drain_timeout: Some(None),
        ..Overrides::default()
    };
    let settings = build(&text, &off).unwrap();
    assert_eq!(settings.drain_timeout, None);
    assert!(
        settings.to_string().contains("drain_timeout off"),
        "{settings}"
    );
    let text = format!("drain_timeout = \"off\"\n{MINIMAL}");
    assert_eq!(build(&text, &none).unwrap().drain_timeout, None);
}

#[test]
fn a_bad_drain_timeout_names_the_line_and_off() {
    let text = format!("drain_timeout = \"soon\"\n{MINIMAL}");
    let err = build(&text, &Overrides::default()).unwrap_err().to_string();
    assert!(err.starts_with("switchyard.toml:1:"), "{err}");
    assert!(err.contains("drain_timeout"), "{err}");
    assert!(err.contains("off"), "{err}");
}

#[test]
fn upgrade_socket_comes_from_the_file_the_flag_wins_and_check_shows_it() {
    let settings = build(UPGRADE, &Overrides::default()).unwrap();
    let from_file = std::path::PathBuf::from("/run/switchyard/upgrade.sock");
    assert_eq!(settings.upgrade_socket.as_ref(), Some(&from_file));
    assert_eq!(settings.server_config().upgrade_socket, Some(from_file));
    let shown = settings.to_string();
    assert!(
        shown.contains("\nupgrade_socket     /run/switchyard/upgrade.sock\n"),
        "{shown}"
    );

    let flag = std::path::PathBuf::from("/tmp/other.sock");
    let flags = Overrides {
        upgrade_socket: Some(flag.clone()),
        ..Overrides::default()
    };
    assert_eq!(build(UPGRADE, &flags).unwrap().upgrade_socket, Some(flag));

    let without = UPGRADE.replace("upgrade_socket = \"/run/switchyard/upgrade.sock\"\n", "");
    let settings = build(&without, &Overrides::default()).unwrap();
    assert_eq!(settings.upgrade_socket, None, "off by default");
    assert!(!settings.to_string().contains("upgrade_socket"));
}

#[test]
fn an_empty_upgrade_socket_names_the_file_and_line() {
    let text = UPGRADE.replace("/run/switchyard/upgrade.sock", "");
    let err = build(&text, &Overrides::default()).unwrap_err().to_string();
    assert!(
        err.starts_with("switchyard.toml:2: upgrade_socket: empty path"),
        "{err}"
    );
    let flags = Overrides {
        upgrade_socket: Some(std::path::PathBuf::new()),
        ..Overrides::default()
    };
    let err = build(UPGRADE, &flags).unwrap_err().to_string();
    assert!(err.contains("--upgrade-socket: empty path"), "{err}");
}
