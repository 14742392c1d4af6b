//! What `/proc` tells about a proxy: resident memory of a process tree (nginx runs a
//! master and workers) and this process's open-file limit.

use std::fs;
use std::io;

/// `VmRSS` of `pid` plus all its descendants, KiB.
pub fn tree_rss_kib(pid: u32) -> io::Result<u64> {
    let mut total = rss_kib(pid)?;
    for child in descendants(pid)? {
        // A child may exit between the scan and the read.
        total += rss_kib(child).unwrap_or(0);
    }
    Ok(total)
}

/// `VmRSS` of one process, KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no VmRSS for {pid}")))
}

fn descendants(root: u32) -> io::Result<Vec<u32>> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The command name is in parentheses and may contain spaces: parse after it.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    found.remove(0);
    Ok(found)
}

/// The soft `RLIMIT_NOFILE` of this process, if `/proc/self/limits` says.
pub fn nofile_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_covers_children_and_adds_their_rss() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let found = descendants(std::process::id()).unwrap();
        // `sleep` may still be loading (its RSS only grows then): bracket the tree read.
        let before = rss_kib(child.id()).unwrap();
        let tree = tree_rss_kib(child.id()).unwrap();
        let after = rss_kib(child.id()).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            found.contains(&child.id()),
            "{found:?} lacks {}",
            child.id()
        );
        assert!(
            before > 0 && before <= tree && tree <= after,
            "a leaf's tree is itself"
        );
    }

    #[test]
    fn nofile_limit_is_read() {
        assert!(nofile_limit().unwrap() > 0);
    }
}
