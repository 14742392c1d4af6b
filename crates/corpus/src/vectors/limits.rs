//! Limits: the largest request line and head that pass, and the smallest that do not.

use std::sync::OnceLock;

use super::rejected;
use crate::vector::{Side, Up, Vector};

/// The vectors of this class.
#[allow(clippy::vec_init_then_push)] // one push per vector reads as a table
pub(super) fn vectors() -> Vec<Vector> {
    let mut v = Vec::new();
    {
        let mut lines: Vec<String> = (0..99).map(|i| format!("X-F{i}: {i}")).collect();
        lines.insert(0, "Host: a".into());
        let head = format!("GET /hundred HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n"));
        v.push(
            Vector::new(
                "control_exactly_100_fields",
                "limits",
                Side::Request,
                head.into_bytes(),
            )
            .st(&[200])
            .up(Up::Requests(&["GET /hundred HTTP/1.1"])),
        );
    }
    v.push(
        Vector::new(
            "control_request_line_8000",
            "limits",
            Side::Request,
            format!("{}\r\nHost: a\r\n\r\n", request_line_8000()[0]).into_bytes(),
        )
        .st(&[200])
        .up(Up::Requests(request_line_8000())),
    );
    {
        let head = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(8200));
        v.push(rejected(
            "request_line_over_8k",
            "limits",
            head.as_bytes(),
            414,
        ));
        let big = "b".repeat(1000);
        let lines: Vec<String> = (0..34).map(|i| format!("X-Big{i}: {big}")).collect();
        let head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n\r\n",
            lines.join("\r\n")
        );
        v.push(rejected("head_over_32k", "limits", head.as_bytes(), 431));
        let lines: Vec<String> = (0..100).map(|i| format!("X-F{i}: {i}")).collect();
        let head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n\r\n",
            lines.join("\r\n")
        );
        v.push(rejected("fields_over_100", "limits", head.as_bytes(), 431));
        let head = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Long: {}\r\n\r\n",
            "c".repeat(33 * 1024)
        );
        v.push(rejected(
            "one_field_over_32k",
            "limits",
            head.as_bytes(),
            431,
        ));
    }

    v
}

/// The one request line of `control_request_line_8000`: a target of 8,000 bytes, under the
/// 8 KiB limit. Built once: [`Up`] holds `'static` lines.
fn request_line_8000() -> &'static [&'static str] {
    static LINE: OnceLock<String> = OnceLock::new();
    static LINES: OnceLock<[&'static str; 1]> = OnceLock::new();
    LINES.get_or_init(|| {
        [LINE
            .get_or_init(|| format!("GET /{} HTTP/1.1", "a".repeat(8000)))
            .as_str()]
    })
}
