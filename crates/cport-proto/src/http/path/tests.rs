use std::fs;
use std::path::Path;

use super::*;

fn rel(target: &str) -> PathBuf {
    match decode_path(target) {
        Ok(p) => p.rel,
        Err(e) => panic!("{target:?} refused: {e}"),
    }
}

#[test]
fn root_is_an_empty_directory_path() {
    let p = decode_path("/").unwrap();
    assert_eq!(p.rel, PathBuf::new());
    assert!(p.dir);
}

#[test]
fn plain_paths_become_relative() {
    let p = decode_path("/a/b.txt").unwrap();
    assert_eq!(p.rel, Path::new("a/b.txt"));
    assert!(!p.dir);
    assert!(p.rel.is_relative());
}

#[test]
fn trailing_slash_or_dot_marks_a_directory() {
    assert!(decode_path("/docs/").unwrap().dir);
    assert!(decode_path("/docs/.").unwrap().dir);
    assert!(!decode_path("/docs").unwrap().dir);
}

#[test]
fn empty_and_dot_segments_collapse() {
    assert_eq!(rel("//a///b/./c"), Path::new("a/b/c"));
    assert_eq!(rel("/./"), PathBuf::new());
}

#[test]
fn query_and_fragment_are_cut_before_decoding() {
    assert_eq!(rel("/a?x=/../y"), Path::new("a"));
    assert_eq!(rel("/a#frag/.."), Path::new("a"));
    assert_eq!(rel("/a%3Fb"), Path::new("a?b"), "an encoded ? is a name character");
}

#[test]
fn percent_escapes_decode_once() {
    assert_eq!(rel("/a%20b"), Path::new("a b"));
    assert_eq!(rel("/caf%C3%A9"), Path::new("café"));
    assert_eq!(rel("/%252e%252e/x"), Path::new("%2e%2e/x"));
    assert_eq!(rel("/a%2Fb"), Path::new("a/b"));
}

#[test]
fn dot_dot_is_refused_in_every_spelling() {
    for target in [
        "/..",
        "/../etc/passwd",
        "/a/../b",
        "/a/..",
        "/%2e%2e/etc/passwd",
        "/%2E%2E",
        "/.%2e/x",
        "/..%2fetc",
        "/a/..%2F..%2Fb",
        "http://h/../x",
    ] {
        assert_eq!(decode_path(target), Err(PathError::DotDot), "{target}");
    }
    // Names that merely contain dots are fine.
    assert_eq!(rel("/.../..a/a..b/.hidden"), Path::new(".../..a/a..b/.hidden"));
}

#[test]
fn nul_and_backslash_are_refused() {
    assert_eq!(decode_path("/a%00b"), Err(PathError::Nul));
    assert_eq!(decode_path("/a\0"), Err(PathError::Nul));
    assert_eq!(decode_path("/a\\..\\b"), Err(PathError::Backslash));
    assert_eq!(decode_path("/a%5cb"), Err(PathError::Backslash));
}

#[test]
fn bad_escapes_and_non_utf8_are_refused() {
    for target in ["/%", "/%2", "/%zz", "/%g0", "/a%2"] {
        assert_eq!(decode_path(target), Err(PathError::BadEscape), "{target}");
    }
    assert_eq!(decode_path("/%ff"), Err(PathError::NotUtf8));
}

#[test]
fn targets_must_be_origin_or_absolute_form() {
    for target in ["", "a/b", "*", "?x", "example.com:443", "ftp://h/x"] {
        assert_eq!(decode_path(target), Err(PathError::NotOriginForm), "{target}");
    }
}

#[test]
fn absolute_form_drops_scheme_and_authority() {
    assert_eq!(rel("http://example.com/a/b"), Path::new("a/b"));
    assert_eq!(rel("HTTPS://example.com:8443/a?q"), Path::new("a"));
    assert_eq!(decode_path("http://example.com").unwrap().rel, PathBuf::new());
    assert!(decode_path("http://example.com?q").unwrap().dir);
}

#[test]
fn path_errors_are_400_keeping_the_connection() {
    let err = HttpError::from(PathError::DotDot);
    assert_eq!(err.status, 400);
    assert!(!err.close);
}

/// A scratch directory for file system tests, removed on drop (also when
/// the test panics).
// The `TempDir` is held for its `Drop`, which removes the directory.
struct Scratch(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("cport-proto-{name}-"))
            .tempdir()
            .unwrap();
        Scratch(dir.path().to_path_buf(), dir)
    }
}

#[test]
fn resolve_keeps_paths_and_symlinks_inside_the_root() {
    let scratch = Scratch::new("resolve");
    let root_dir = scratch.0.join("root");
    fs::create_dir_all(root_dir.join("sub")).unwrap();
    fs::write(root_dir.join("a.txt"), "a").unwrap();
    fs::write(root_dir.join("sub/b.txt"), "b").unwrap();
    fs::write(scratch.0.join("secret.txt"), "s").unwrap();
    std::os::unix::fs::symlink("../secret.txt", root_dir.join("escape")).unwrap();
    std::os::unix::fs::symlink("sub/b.txt", root_dir.join("inner")).unwrap();
    std::os::unix::fs::symlink(&scratch.0, root_dir.join("up")).unwrap();

    let root = CanonicalRoot::new(&root_dir).unwrap();
    assert!(root.as_path().is_absolute());
    let resolve = |p: &str| resolve_under_root(&root, Path::new(p));

    assert_eq!(resolve("a.txt").unwrap(), Some(root.as_path().join("a.txt")));
    assert_eq!(resolve("inner").unwrap(), Some(root.as_path().join("sub/b.txt")));
    assert_eq!(resolve("").unwrap(), Some(root.as_path().to_path_buf()));
    assert_eq!(resolve("escape").unwrap(), None, "symlink out of the root");
    assert_eq!(resolve("up/secret.txt").unwrap(), None, "directory symlink out");
    assert_eq!(resolve("../secret.txt").unwrap(), None, "parent component");
    assert_eq!(resolve("/etc/passwd").unwrap(), None, "absolute path");
    assert_eq!(resolve("missing").unwrap_err().kind(), io::ErrorKind::NotFound);
}

/// `<root>-private` starts with the root's name as a string but is not
/// inside it: containment is by path components, never by string prefix.
#[test]
fn symlink_into_a_sibling_sharing_the_roots_prefix_is_refused() {
    let scratch = Scratch::new("sibling");
    let root_dir = scratch.0.join("www");
    let sibling = scratch.0.join("www-private");
    fs::create_dir_all(&root_dir).unwrap();
    fs::create_dir_all(&sibling).unwrap();
    fs::write(sibling.join("secret"), "s").unwrap();
    fs::write(root_dir.join("public"), "p").unwrap();
    std::os::unix::fs::symlink(sibling.join("secret"), root_dir.join("file-link")).unwrap();
    std::os::unix::fs::symlink(&sibling, root_dir.join("dir-link")).unwrap();
    std::os::unix::fs::symlink("../www-private/secret", root_dir.join("relative-link")).unwrap();

    let root = CanonicalRoot::new(&root_dir).unwrap();
    let resolve = |p: &str| resolve_under_root(&root, Path::new(p)).unwrap();
    assert_eq!(resolve("public"), Some(root.as_path().join("public")));
    assert_eq!(resolve("file-link"), None, "symlink to <root>-private/secret");
    assert_eq!(resolve("dir-link/secret"), None, "through a symlink to <root>-private");
    assert_eq!(
        resolve("relative-link"),
        None,
        "relative symlink to <root>-private/secret"
    );
}

/// Each refusal names the rule it broke (the text ends up in logs).
#[test]
fn path_errors_name_the_rule_broken() {
    let all = [
        (PathError::NotOriginForm, "request target is not a path"),
        (PathError::BadEscape, "invalid percent-escape in path"),
        (PathError::NotUtf8, "path is not UTF-8"),
        (PathError::Nul, "path contains NUL"),
        (PathError::Backslash, "path contains a backslash"),
        (PathError::DotDot, "path contains a '..' segment"),
    ];
    for (err, text) in all {
        assert_eq!(err.to_string(), text);
    }
}
