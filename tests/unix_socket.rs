//! Listening on a Unix domain socket: mode 0660, stale sockets replaced,
//! live sockets and other files left alone, HTTP served over it.

use std::os::unix::fs::PermissionsExt;

use infercache::{listen::bind_unix, Config, ServeArgs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn request(path: &std::path::Path, raw: &str) -> String {
    let mut stream = tokio::net::UnixStream::connect(path).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

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

    let config = Config::from_args(&ServeArgs {
        data_dir: Some(dir.path().join("data")),
        listen: Some(format!("unix:{}", sock.display())),
        ..Default::default()
    })
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(infercache::run(listener, config, async {
        let _ = stopped.await;
    }));
    let put = request(
        &sock,
        "PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert!(put.starts_with("HTTP/1.1 204"), "{put}");
    let get = request(
        &sock,
        "GET /v1/kv/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        get.starts_with("HTTP/1.1 200") && get.ends_with("hello"),
        "{get}"
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    // A regular file at the path is never deleted.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"precious").unwrap();
    assert_eq!(
        bind_unix(&file).unwrap_err().kind(),
        std::io::ErrorKind::AlreadyExists
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
}
