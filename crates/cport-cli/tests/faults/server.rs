//! The server under test: the real `cport` binary as a child process on a
//! chosen backend, optionally under a low open-file limit or in a pids
//! cgroup, and what it uses (fds, threads, RSS, CPU time) read from /proc.
//! The helpers live in `cport_testutil::cli`, shared with the other CLI tests.

pub use cport_testutil::cli::{serve_args, Backend, Cli as Server, Launch, PidsCgroup, Tolerance, Usage, LONG};
