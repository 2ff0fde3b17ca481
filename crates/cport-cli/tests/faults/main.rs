//! The fault suite: the real `cport` binary under the faults a server meets
//! in production, on both backends (io_uring and epoll). Each case asserts
//! an outcome that could fail and measures the server's fds, threads and RSS
//! (from /proc) before and after, asserting they come back flat within a
//! stated [`Tolerance`](server::Tolerance).
//!
//! Cases: EMFILE at accept; slowloris on HTTP, chat and echo; a chat slow
//! consumer amid fast talkers; 10,000 RST closes; 50,000-connection churn;
//! half-close both ways; a full-speed reader of 64 MiB of echo and of
//! 20,000 pipelined HTTP requests; 1,000 stalled downloads under a pids
//! limit; SIGTERM under load; a file truncated while it is sent.
//!
//! The whole suite takes about a minute on two cores (the HTTP header
//! deadline alone is 10 s); run it alone with `cargo test -p cport-cli
//! --test faults`. A case waiting for a known bug's fix may be `#[ignore]`d:
//! add `-- --ignored` to run them.

mod clients;
mod server;

mod chat;
mod churn;
mod downloads;
mod emfile;
mod halfclose;
mod pipelines;
mod shutdown;
mod slowloris;

/// Held by the cases that fill many kernel socket buffers (1,000 stalled
/// downloads can pin gigabytes of send buffer): two at once can exhaust the
/// machine's `tcp_mem`, and the kernel then resets connections ("TCP: out
/// of memory"), a failure of the test machine, not of the server.
pub static KERNEL_MEMORY_HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`KERNEL_MEMORY_HEAVY`], whatever a panicking holder left.
pub fn kernel_memory_heavy() -> std::sync::MutexGuard<'static, ()> {
    KERNEL_MEMORY_HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// One `#[test]` per backend for `case`, in a module named `$name`:
/// `$name::uring` and `$name::epoll`. Attributes in `uring: [...]` or
/// `epoll: [...]` apply to one backend only (an `#[ignore]` until a known
/// bug's fix lands, say).
macro_rules! on_both_backends {
    ($name:ident, $module:ident::$case:ident $(, uring: [$(#[$u:meta])*])? $(, epoll: [$(#[$e:meta])*])?) => {
        mod $name {
            use crate::server::Backend;

            #[test]
            $($(#[$u])*)?
            fn uring() {
                if !Backend::Uring.available() {
                    eprintln!("io_uring is disabled on this machine: skipped");
                    return;
                }
                crate::$module::$case(Backend::Uring)
            }

            #[test]
            $($(#[$e])*)?
            fn epoll() {
                crate::$module::$case(Backend::Epoll)
            }
        }
    };
}

on_both_backends!(emfile_at_accept_neither_spins_nor_stops_serving, emfile::case);
on_both_backends!(http_slowloris_is_cut_at_the_header_deadline, slowloris::http);
on_both_backends!(chat_slowloris_is_cut_at_the_line_deadline, slowloris::chat);
on_both_backends!(echo_silent_connections_are_cut_at_the_idle_deadline, slowloris::echo);
on_both_backends!(idle_deadline_never_fires_early, slowloris::never_early);
on_both_backends!(
    chat_slow_consumer_is_cut_while_fast_talkers_get_everything,
    chat::slow_consumer
);
on_both_backends!(ten_thousand_reset_closes_leave_nothing_behind, churn::resets);
on_both_backends!(fifty_thousand_connections_churned_with_flat_fds_and_rss, churn::churn);
on_both_backends!(half_close_both_ways_delivers_everything, halfclose::case);
on_both_backends!(full_speed_reader_gets_all_of_a_64_mib_echo, pipelines::echo_64_mib);
on_both_backends!(
    full_speed_reader_gets_all_of_20000_pipelined_responses,
    pipelines::http_20000
);
on_both_backends!(
    stalled_downloads_under_a_pids_limit_cost_others_nothing,
    downloads::stalled
);
on_both_backends!(file_truncated_while_sent_closes_the_connection, downloads::truncated);
on_both_backends!(sigterm_under_load_finishes_in_flight_responses, shutdown::case);
