//! io_uring refused for real leads `Backend::Auto` to epoll, and says why.
//!
//! The parent test re-runs this test binary as a child process, selecting
//! only [`child_with_io_uring_setup_blocked`]. The child installs a seccomp
//! filter that makes `io_uring_setup` fail with `EPERM` (what container
//! runtimes' default profiles do), builds ports, and prints what it saw;
//! the parent checks the report. The filter stays in the child.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use cport::{Backend, BuildError, Key, Port};
use rustix::io::Errno;
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};

/// Set in the child's environment; the child test does nothing without it.
const CHILD_ENV: &str = "CPORT_FALLBACK_CHILD";
const CHILD_TEST: &str = "child_with_io_uring_setup_blocked";

/// Lines the child prints carry this, so harness output is told apart.
const MARK: &str = "FALLBACK-CHILD ";

fn report_value<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    // The harness prints `test NAME ... ` before the first line on the same line.
    out.lines()
        .find_map(|l| l.split_once(MARK)?.1.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn auto_falls_back_to_epoll_when_seccomp_blocks_io_uring_setup() {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([CHILD_TEST, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env_remove("CPORT_BACKEND")
        .output()
        .expect("child test process runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    let field = |k| report_value(&stdout, k).unwrap_or_else(|| panic!("child did not report {k}:\n{stdout}\n{stderr}"));

    assert_eq!(field("filter"), "installed");
    assert_eq!(field("backend"), "epoll", "Auto must end up on epoll");
    let reason = field("reason");
    assert!(
        reason.contains("EPERM") && reason.contains("seccomp"),
        "fallback reason names the cause: {reason}"
    );
    assert_eq!(field("roundtrip"), "ok", "the fallback port works");
    assert_eq!(
        field("forced"),
        "unavailable",
        "Backend::IoUring must fail, not fall back"
    );
    assert_eq!(field("forced_errno"), Errno::PERM.raw_os_error().to_string());
    assert!(field("forced_cause").contains("EPERM"), "{}", field("forced_cause"));
}

/// Runs only as the child of the test above (ignored in a normal run).
#[test]
#[ignore = "runs only in the child process started by auto_falls_back_to_epoll_when_seccomp_blocks_io_uring_setup"]
fn child_with_io_uring_setup_blocked() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    block_io_uring_setup();
    println!("{MARK}filter=installed");

    let port = Port::builder()
        .backend(Backend::Auto)
        .ignore_env()
        .build()
        .expect("Auto builds a port");
    println!("{MARK}backend={}", port.backend().name());
    println!("{MARK}reason={}", port.fallback_reason().unwrap_or("none"));
    port.post(Key(1), 3, 9).expect("post");
    port.nop(10).expect("nop");
    let a = port.get(Some(Duration::from_secs(5))).expect("post comes back");
    let b = port.get(Some(Duration::from_secs(5))).expect("nop comes back");
    let ok = (a.ctx(), a.bytes(), b.ctx()) == (9, 3, 10);
    println!("{MARK}roundtrip={}", if ok { "ok" } else { "wrong" });

    match Port::builder().backend(Backend::IoUring).ignore_env().build() {
        Err(BuildError::IoUringUnavailable { source, cause }) => {
            println!("{MARK}forced=unavailable");
            println!("{MARK}forced_errno={}", source.raw_os_error().unwrap_or(0));
            println!("{MARK}forced_cause={cause}");
        }
        Err(e) => println!("{MARK}forced=other: {e}"),
        Ok(p) => println!("{MARK}forced=built on {}", p.backend().name()),
    }
}

/// Makes `io_uring_setup` fail with `EPERM` for this thread and any it starts.
fn block_io_uring_setup() {
    let rules = BTreeMap::from([(libc::SYS_io_uring_setup, vec![])]);
    let arch = std::env::consts::ARCH
        .try_into()
        .expect("a seccomp-supported architecture");
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(Errno::PERM.raw_os_error() as u32),
        arch,
    )
    .expect("valid seccomp filter");
    let program: BpfProgram = filter.try_into().expect("filter compiles to BPF");
    seccompiler::apply_filter(&program).expect("seccomp filter installed");
}
