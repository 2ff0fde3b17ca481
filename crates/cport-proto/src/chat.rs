//! The messenger protocol: a line grammar usable from `nc`, and the rooms.
//!
//! Sans-I/O so the whole chat server logic (nicknames, rooms, broadcast,
//! errors) is tested without sockets: the server feeds lines in and sends
//! what comes out. Framing lines (and limiting their length) is the job of
//! [`framing::Lines`](crate::framing::Lines).
//!
//! Commands: `/nick NAME`, `/join ROOM`, `/leave`, `/rooms`, `/who`,
//! `/msg NICK TEXT`, `/quit`, `/help`; any other line is said to the current
//! room and delivered to every member, sender included, as
//! `[room] nick: text`. Notices start with `* `, errors with `! `.

mod command;
mod hub;

pub use command::{parse_line, validate_name, ChatError, Command, GUEST_PREFIX, MAX_NAME_LEN};
pub use hub::{Delivery, Hub, Output, LIST_LIMIT};

#[cfg(test)]
mod tests;
