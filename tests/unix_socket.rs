//! Listening on a Unix domain socket: mode 0660, stale sockets replaced,
//! live sockets and other files left alone, HTTP served over it.

use std::os::unix::fs::PermissionsExt;

mod common;

use common::{
    raw_http::{http, Framing},
    UnixServer,
};
use infercache::bind_unix;

#[tokio::test]
async fn serves_over_a_unix_socket_with_safe_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("infercache.sock");
    // A stale socket file (its server is gone) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let listener = bind_unix(&sock).unwrap();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // A live one is not.
    let err = bind_unix(&sock).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);

    let server = UnixServer::start(listener, &sock, dir.path().join("data"), |_| {});
    let put = http(
        sock.as_path(),
        "PUT",
        "/v1/kv/k",
        &[],
        b"hello",
        Framing::Length,
    )
    .await;
    assert_eq!(put.status, 204, "{put:?}");
    let get = http(sock.as_path(), "GET", "/v1/kv/k", &[], b"", Framing::Length).await;
    assert_eq!((get.status, &get.body[..]), (200, &b"hello"[..]), "{get:?}");
    server.stop().await;

    // A regular file at the path is never deleted.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"precious").unwrap();
    assert_eq!(
        bind_unix(&file).unwrap_err().kind(),
        std::io::ErrorKind::AlreadyExists
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
}

/// The events inotify reports for `dir` while `during` runs, as
/// (mask, name).
fn watch_dir(dir: &std::path::Path, during: impl FnOnce()) -> Vec<(u32, String)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain syscalls on a descriptor this function owns and closes.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    assert!(fd >= 0);
    let wd =
        unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_CREATE | libc::IN_MOVED_TO) };
    assert!(wd >= 0);
    during();
    let mut buf = vec![0u8; 64 * 1024];
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    unsafe { libc::close(fd) };
    let mut events = Vec::new();
    let mut at = 0;
    while at < usize::try_from(n).unwrap_or(0) {
        let field = |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().unwrap());
        let (mask, len) = (field(4), field(12) as usize);
        let name = &buf[at + 16..at + 16 + len];
        let name = String::from_utf8_lossy(name)
            .trim_end_matches('\0')
            .to_string();
        events.push((mask, name));
        at += 16 + len;
    }
    events
}

#[tokio::test]
async fn the_socket_is_never_reachable_before_its_chmod() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("infercache.sock");
    let mut listener = None;
    let events = watch_dir(dir.path(), || listener = Some(bind_unix(&sock).unwrap()));
    for (mask, name) in &events {
        if mask & libc::IN_CREATE != 0 {
            assert!(
                mask & libc::IN_ISDIR != 0,
                "{name} was created next to the socket path before its chmod: {events:?}"
            );
        }
    }
    assert!(
        events
            .iter()
            .any(|(m, n)| m & libc::IN_MOVED_TO != 0 && n == "infercache.sock"),
        "{events:?}"
    );
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "the private directory is removed");
    drop(listener);
}
