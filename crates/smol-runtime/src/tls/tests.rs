//! Loading certificates: every bad input is one error naming the file.

use super::*;

fn pair(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn load(cert: &str, key: &str) -> Result<TlsCertificates, TlsError> {
    TlsCertificates::from_pem(&[(cert.as_bytes(), key.as_bytes())], ("c.pem", "k.pem"))
}

#[test]
fn a_matching_pair_loads() {
    let (cert, key) = pair(&["a.test"]);
    let loaded = load(&cert, &key).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded.files()[0].0, PathBuf::from("c.pem"));
}

#[test]
fn a_key_of_another_certificate_is_refused_naming_the_key() {
    let (cert, _) = pair(&["a.test"]);
    let (_, other_key) = pair(&["a.test"]);
    let error = load(&cert, &other_key).unwrap_err();
    assert_eq!(error.file, PathBuf::from("k.pem"));
    assert!(
        error
            .reason
            .contains("does not match the certificate c.pem"),
        "{error}"
    );
}

#[test]
fn files_without_a_certificate_or_key_are_refused_naming_them() {
    let (cert, key) = pair(&["a.test"]);
    let error = load("hello", &key).unwrap_err();
    assert_eq!(error.file, PathBuf::from("c.pem"), "{error}");
    assert!(error.reason.contains("no certificate"), "{error}");
    // A key where the certificate should be, and the other way round.
    let error = load(&key, &cert).unwrap_err();
    assert_eq!(error.file, PathBuf::from("c.pem"), "{error}");
    let error = load(&cert, &cert).unwrap_err();
    assert_eq!(error.file, PathBuf::from("k.pem"), "{error}");
    assert!(error.reason.contains("no private key"), "{error}");
}

#[test]
fn a_corrupt_certificate_is_refused_naming_it() {
    let (_, key) = pair(&["a.test"]);
    let corrupt = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let error = load(corrupt, &key).unwrap_err();
    assert_eq!(error.file, PathBuf::from("c.pem"), "{error}");
    assert!(error.reason.contains("malformed certificate"), "{error}");
}

#[test]
fn an_unreadable_file_is_named() {
    let missing = PathBuf::from("/nonexistent/switchyard/cert.pem");
    let error = TlsCertificates::load(&[(missing.clone(), missing.clone())]).unwrap_err();
    assert_eq!(error.file, missing);
    assert!(error
        .to_string()
        .starts_with("/nonexistent/switchyard/cert.pem: cannot read it"));
}

/// A self-signed certificate for `a.test` valid between the two years' first days.
fn dated(from: i32, to: i32) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(to, 1, 1);
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

#[test]
fn a_certificate_outside_its_validity_is_refused_naming_it_and_its_date() {
    let (cert, key) = dated(1990, 2000);
    let error = load(&cert, &key).unwrap_err();
    assert_eq!(error.file, PathBuf::from("c.pem"));
    assert!(
        error.reason.contains("expired on") && error.reason.contains("2000"),
        "{error}"
    );
    let (cert, key) = dated(2990, 3000);
    let error = load(&cert, &key).unwrap_err();
    assert!(
        error.reason.contains("not valid before") && error.reason.contains("2990"),
        "{error}"
    );
}

#[test]
fn only_certificates_expiring_within_the_window_are_listed() {
    let (cert, key) = pair(&["a.test"]); // rcgen's default: valid until 4096
    let loaded = load(&cert, &key).unwrap();
    let year = std::time::Duration::from_secs(365 * 86_400);
    assert!(loaded.expiring_within(year).is_empty());
    let listed = loaded.expiring_within(3000 * year);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].0, PathBuf::from("c.pem"));
}
