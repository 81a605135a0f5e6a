// h2c server spike: `h2spike mh PORT` (monoio-http's h2) or `h2spike h2 PORT` (the h2 crate over
// monoio-compat). Answers every stream 200 with a 3-byte body, one worker thread.
use bytes::Bytes;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (which, port) = (args[1].clone(), args[2].clone());
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().enable_timer().build().unwrap();
    rt.block_on(async move {
        let l = monoio::net::TcpListener::bind(format!("127.0.0.1:{port}")).unwrap();
        loop {
            let (s, _) = l.accept().await.unwrap();
            s.set_nodelay(true).ok();
            if which == "mh" {
                monoio::spawn(mh(s));
            } else {
                monoio::spawn(h2c(s));
            }
        }
    });
}

async fn mh(s: monoio::net::TcpStream) {
    let Ok(mut conn) = monoio_http::h2::server::handshake(s).await else { return };
    while let Some(Ok((_req, mut respond))) = conn.accept().await {
        monoio::spawn(async move {
            let resp = http1::Response::builder().status(200).body(()).unwrap();
            if let Ok(mut send) = respond.send_response(resp, false) {
                let _ = send.send_data(Bytes::from_static(b"ok\n"), true);
            }
        });
    }
}

async fn h2c(s: monoio::net::TcpStream) {
    let io = monoio_compat::StreamWrapper::new(s);
    let Ok(mut conn) = h2::server::handshake(io).await else { return };
    while let Some(Ok((_req, mut respond))) = conn.accept().await {
        monoio::spawn(async move {
            let resp = http1::Response::builder().status(200).body(()).unwrap();
            if let Ok(mut send) = respond.send_response(resp, false) {
                let _ = send.send_data(Bytes::from_static(b"ok\n"), true);
            }
        });
    }
}
