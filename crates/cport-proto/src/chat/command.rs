//! Parsing one chat line into a [`Command`].
//!
//! Kept apart from the [`Hub`](super::Hub) so the grammar can be tested (and
//! reused by a client or a load generator) without any room state.

use std::fmt;

/// Longest nickname or room name, in bytes.
pub const MAX_NAME_LEN: usize = 32;

/// Nicknames starting with this prefix are reserved for the default
/// `guest-<id>` names, which keeps those unique without a retry loop.
pub const GUEST_PREFIX: &str = "guest-";

/// One parsed line of the chat protocol. Borrows from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `/nick NAME`: change nickname.
    Nick(&'a str),
    /// `/join ROOM`: join a room (leaving the current one), creating it if needed.
    Join(&'a str),
    /// `/leave`: leave the current room.
    Leave,
    /// `/rooms`: list rooms and their member counts.
    Rooms,
    /// `/who`: list the members of the current room.
    Who,
    /// `/msg NICK TEXT`: private message to one nickname.
    Msg {
        /// Recipient's nickname.
        to: &'a str,
        /// Message text.
        text: &'a str,
    },
    /// `/quit [ignored text]`: say goodbye and close the session.
    Quit,
    /// `/help`: list the commands.
    Help,
    /// Any line not starting with `/`: a message to the current room.
    Say(&'a str),
    /// A blank line: ignored.
    Empty,
}

/// Why a line was refused. The [`Display`](fmt::Display) text is what the
/// user sees after `! `.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatError {
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The line holds a control character other than tab (which could drive
    /// other users' terminals).
    ControlCharacter,
    /// A `/word` that is not a command. Holds the word, at most
    /// [`MAX_NAME_LEN`] characters of it.
    UnknownCommand(String),
    /// A command with missing or extra arguments. Holds the correct usage.
    Usage(&'static str),
    /// A nickname or room name outside 1..=32 characters of `[A-Za-z0-9_-]`.
    InvalidName,
    /// A nickname with the reserved [`GUEST_PREFIX`].
    ReservedName,
    /// The nickname belongs to another session.
    NickTaken(String),
    /// No session has this nickname.
    NoSuchNick(String),
    /// The command needs a current room and the session has none.
    NotInRoom,
    /// `/join` of the room the session is already in.
    AlreadyInRoom(String),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::InvalidUtf8 => f.write_str("line is not valid UTF-8"),
            ChatError::ControlCharacter => f.write_str("line contains a control character"),
            ChatError::UnknownCommand(cmd) => write!(f, "unknown command {cmd} (try /help)"),
            ChatError::Usage(usage) => write!(f, "usage: {usage}"),
            ChatError::InvalidName => write!(f, "names are 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 _ -"),
            ChatError::ReservedName => write!(f, "names starting with {GUEST_PREFIX} are reserved"),
            ChatError::NickTaken(nick) => write!(f, "nickname {nick} is taken"),
            ChatError::NoSuchNick(nick) => write!(f, "no such nickname: {nick}"),
            ChatError::NotInRoom => f.write_str("you are not in a room (try /join ROOM)"),
            ChatError::AlreadyInRoom(room) => write!(f, "you are already in {room}"),
        }
    }
}

impl std::error::Error for ChatError {}

/// Parses one line (without its newline) of the chat protocol.
///
/// Leading and trailing whitespace is ignored. Command words are lowercase
/// and exact; arguments are separated by whitespace.
///
/// # Errors
///
/// Any [`ChatError`] about the line itself: invalid UTF-8, control
/// characters, unknown commands, wrong arguments, invalid names. Errors that
/// depend on the hub's state (taken nicknames, unknown recipients) come from
/// the [`Hub`](super::Hub).
pub fn parse_line(line: &[u8]) -> Result<Command<'_>, ChatError> {
    let line = std::str::from_utf8(line).map_err(|_| ChatError::InvalidUtf8)?;
    let line = line.trim();
    if line.is_empty() {
        return Ok(Command::Empty);
    }
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ChatError::ControlCharacter);
    }
    if !line.starts_with('/') {
        return Ok(Command::Say(line));
    }
    let (word, args) = match line.split_once(char::is_whitespace) {
        Some((word, args)) => (word, args.trim_start()),
        None => (line, ""),
    };
    match word {
        "/nick" => one_name(args, "/nick NAME").map(Command::Nick),
        "/join" => one_name(args, "/join ROOM").map(Command::Join),
        "/leave" => no_args(args, "/leave", Command::Leave),
        "/rooms" => no_args(args, "/rooms", Command::Rooms),
        "/who" => no_args(args, "/who", Command::Who),
        "/help" => no_args(args, "/help", Command::Help),
        "/quit" => Ok(Command::Quit),
        "/msg" => {
            const USAGE: &str = "/msg NICK TEXT";
            let (to, text) = args.split_once(char::is_whitespace).ok_or(ChatError::Usage(USAGE))?;
            validate_name(to)?;
            Ok(Command::Msg {
                to,
                text: text.trim_start(),
            })
        }
        _ => Err(ChatError::UnknownCommand(word.chars().take(MAX_NAME_LEN).collect())),
    }
}

/// Checks a nickname or room name: 1..=[`MAX_NAME_LEN`] bytes of `[A-Za-z0-9_-]`.
///
/// # Errors
///
/// [`ChatError::InvalidName`] if `name` breaks the rule.
pub fn validate_name(name: &str) -> Result<(), ChatError> {
    let ok = (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ChatError::InvalidName)
    }
}

fn one_name<'a>(args: &'a str, usage: &'static str) -> Result<&'a str, ChatError> {
    if args.is_empty() || args.contains(char::is_whitespace) {
        return Err(ChatError::Usage(usage));
    }
    validate_name(args)?;
    Ok(args)
}

fn no_args<'a>(args: &str, usage: &'static str, cmd: Command<'a>) -> Result<Command<'a>, ChatError> {
    if args.is_empty() {
        Ok(cmd)
    } else {
        Err(ChatError::Usage(usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_a_room_message() {
        assert_eq!(parse_line(b"hello there"), Ok(Command::Say("hello there")));
        assert_eq!(parse_line(b"  hi \r"), Ok(Command::Say("hi")));
    }

    #[test]
    fn blank_lines_are_empty() {
        assert_eq!(parse_line(b""), Ok(Command::Empty));
        assert_eq!(parse_line(b" \t "), Ok(Command::Empty));
    }

    #[test]
    fn each_command_parses() {
        assert_eq!(parse_line(b"/nick alice"), Ok(Command::Nick("alice")));
        assert_eq!(parse_line(b"/join  games-2"), Ok(Command::Join("games-2")));
        assert_eq!(parse_line(b"/leave"), Ok(Command::Leave));
        assert_eq!(parse_line(b"/rooms"), Ok(Command::Rooms));
        assert_eq!(parse_line(b"/who"), Ok(Command::Who));
        assert_eq!(parse_line(b"/help"), Ok(Command::Help));
        assert_eq!(parse_line(b"/quit"), Ok(Command::Quit));
        assert_eq!(parse_line(b"/quit see you"), Ok(Command::Quit));
        assert_eq!(
            parse_line(b"/msg bob  hi  there"),
            Ok(Command::Msg {
                to: "bob",
                text: "hi  there"
            })
        );
    }

    #[test]
    fn wrong_arguments_give_usage() {
        assert_eq!(parse_line(b"/nick"), Err(ChatError::Usage("/nick NAME")));
        assert_eq!(parse_line(b"/nick a b"), Err(ChatError::Usage("/nick NAME")));
        assert_eq!(parse_line(b"/join"), Err(ChatError::Usage("/join ROOM")));
        assert_eq!(parse_line(b"/who x"), Err(ChatError::Usage("/who")));
        assert_eq!(parse_line(b"/leave now"), Err(ChatError::Usage("/leave")));
        assert_eq!(parse_line(b"/msg bob"), Err(ChatError::Usage("/msg NICK TEXT")));
        assert_eq!(parse_line(b"/msg"), Err(ChatError::Usage("/msg NICK TEXT")));
    }

    #[test]
    fn unknown_commands_are_named_and_truncated() {
        assert_eq!(
            parse_line(b"/dance now"),
            Err(ChatError::UnknownCommand("/dance".into()))
        );
        let long = format!("/{}", "x".repeat(100));
        match parse_line(long.as_bytes()) {
            Err(ChatError::UnknownCommand(w)) => assert_eq!(w.len(), MAX_NAME_LEN),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(parse_line(b"/NICK a"), Err(ChatError::UnknownCommand("/NICK".into())));
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(parse_line(b"/nick al!ce"), Err(ChatError::InvalidName));
        assert_eq!(parse_line("/join caf\u{e9}".as_bytes()), Err(ChatError::InvalidName));
        let long = format!("/nick {}", "a".repeat(MAX_NAME_LEN + 1));
        assert_eq!(parse_line(long.as_bytes()), Err(ChatError::InvalidName));
        let max = format!("/nick {}", "a".repeat(MAX_NAME_LEN));
        assert!(parse_line(max.as_bytes()).is_ok());
        assert_eq!(parse_line(b"/msg b@d hi"), Err(ChatError::InvalidName));
    }

    #[test]
    fn invalid_utf8_and_control_characters_are_refused() {
        assert_eq!(parse_line(b"\xff\xfe"), Err(ChatError::InvalidUtf8));
        assert_eq!(parse_line(b"hi \x1b[2J"), Err(ChatError::ControlCharacter));
        assert_eq!(parse_line(b"a\0b"), Err(ChatError::ControlCharacter));
        assert_eq!(parse_line(b"a\tb"), Ok(Command::Say("a\tb")));
    }

    #[test]
    fn utf8_text_is_fine() {
        let line = "안녕하세요 👋";
        assert_eq!(parse_line(line.as_bytes()), Ok(Command::Say(line)));
    }
}
