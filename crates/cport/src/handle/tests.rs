//! The handle table on its own: generations, the count of operations in
//! flight, and when an fd is handed back to be closed.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{HandleTable, Released};
use crate::error::SubmitErrorKind;
use crate::key::Key;

fn fd() -> OwnedFd {
    OwnedFd::from(File::open("/dev/null").expect("open /dev/null"))
}

/// The fd a `Released::Close` hands back, or `None` for `Nothing`.
fn closed(r: Released) -> Option<OwnedFd> {
    match r {
        Released::Close(fd) => Some(fd),
        Released::Nothing => None,
    }
}

#[test]
fn live_counts_handles_until_their_fd_is_handed_back() {
    let mut t = HandleTable::new(7);
    let a = t.insert(fd(), Key(1));
    let b = t.insert(fd(), Key(2));
    assert_eq!(t.live(), 2);
    let (_, rel) = t.close(&a).unwrap();
    assert!(closed(rel).is_some(), "nothing in flight: the fd is closed at once");
    assert_eq!(t.live(), 1);
    t.begin_op(&b).unwrap();
    let (_, rel) = t.close(&b).unwrap();
    assert!(closed(rel).is_none(), "an operation is in flight");
    assert_eq!(t.live(), 1, "a closing handle is live until its last operation ends");
    assert!(closed(t.end_op(b.slot.index())).is_some());
    assert_eq!(t.live(), 0);
}

#[test]
fn the_fd_is_handed_back_after_the_last_of_several_operations() {
    let mut t = HandleTable::new(1);
    let file = fd();
    let raw = file.as_raw_fd();
    let h = t.insert(file, Key(3));
    assert_eq!(t.begin_op(&h), Ok(raw));
    assert_eq!(t.begin_op(&h), Ok(raw));
    let (cancel_fd, rel) = t.close(&h).unwrap();
    assert_eq!(cancel_fd, raw, "close names the fd to cancel on");
    assert!(closed(rel).is_none());
    assert!(
        closed(t.end_op(h.slot.index())).is_none(),
        "one operation still in flight"
    );
    let fd = closed(t.end_op(h.slot.index())).expect("the last operation hands the fd back");
    assert_eq!(fd.as_raw_fd(), raw);
}

#[test]
fn an_operation_ending_on_an_open_handle_keeps_it_open() {
    let mut t = HandleTable::new(1);
    let h = t.insert(fd(), Key(4));
    t.begin_op(&h).unwrap();
    assert!(closed(t.end_op(h.slot.index())).is_none());
    assert!(t.begin_op(&h).is_ok(), "the handle is still usable");
    assert_eq!(t.live(), 1);
}

#[test]
fn a_closing_handle_takes_no_new_operation_and_no_second_close() {
    let mut t = HandleTable::new(1);
    let h = t.insert(fd(), Key(5));
    t.begin_op(&h).unwrap();
    let _ = t.close(&h).unwrap();
    assert_eq!(t.begin_op(&h), Err(SubmitErrorKind::Closing));
    assert_eq!(t.close(&h).err(), Some(SubmitErrorKind::Closing));
}

#[test]
fn raw_fd_names_the_fd_without_counting_an_operation() {
    let mut t = HandleTable::new(1);
    let file = fd();
    let raw = file.as_raw_fd();
    let h = t.insert(file, Key(6));
    assert_eq!(t.raw_fd(&h), Ok(raw));
    let (_, rel) = t.close(&h).unwrap();
    assert!(closed(rel).is_some(), "raw_fd left nothing in flight");
    assert_eq!(t.raw_fd(&h), Err(SubmitErrorKind::InvalidHandle));
}

#[test]
fn a_stale_handle_stays_invalid_when_its_slot_is_reused() {
    let mut t = HandleTable::new(1);
    let old = t.insert(fd(), Key(7));
    let _ = t.close(&old).unwrap();
    let file = fd();
    let raw = file.as_raw_fd();
    let new = t.insert(file, Key(8));
    assert_eq!(new.slot.index(), old.slot.index(), "the freed slot is reused");
    assert_eq!(t.begin_op(&old), Err(SubmitErrorKind::InvalidHandle));
    assert_eq!(t.raw_fd(&old), Err(SubmitErrorKind::InvalidHandle));
    assert_eq!(t.close(&old).err(), Some(SubmitErrorKind::InvalidHandle));
    assert_eq!(t.begin_op(&new), Ok(raw), "the new handle is untouched");
}

#[test]
fn a_handle_of_another_port_is_foreign() {
    let mut ours = HandleTable::new(1);
    let mut theirs = HandleTable::new(2);
    let _ = ours.insert(fd(), Key(9));
    let h = theirs.insert(fd(), Key(9));
    assert_eq!(ours.begin_op(&h), Err(SubmitErrorKind::ForeignPort));
    assert!(theirs.begin_op(&h).is_ok());
}
