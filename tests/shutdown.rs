//! Graceful shutdown: in-flight requests finish, listeners close, workers exit.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn in_flight_request_completes_during_shutdown() {
    let up = MockUpstream::start(|_| Reply::Delay(Duration::from_millis(400), Box::new(Reply::ok("finished"))));
    let mut gw = TestGateway::start(&catch_all("o", &[up.addr]));
    let addr = gw.addr;
    let mut c = Client::connect(addr);
    c.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(eventually(Duration::from_secs(5), || up.request_count() == 1), "request reached the origin");
    let stopper = std::thread::spawn(move || {
        gw.stop();
        gw
    });
    let r = c.response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "finished"));
    assert_eq!(r.header("connection"), Some("close"), "a draining worker closes after the response");
    let _gw = stopper.join().unwrap();
    assert!(std::net::TcpStream::connect(addr).is_err(), "listeners are closed after shutdown");
}

#[test]
fn idle_connections_do_not_hold_up_shutdown() {
    let up = MockUpstream::echo();
    let mut gw = TestGateway::start(&catch_all("o", &[up.addr]));
    let mut idle = Client::connect(gw.addr);
    assert_eq!(idle.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").response(false).status, 200);
    let t0 = std::time::Instant::now();
    gw.stop();
    assert!(t0.elapsed() < Duration::from_secs(4), "drain waits for requests, not idle keep-alive connections");
    assert!(idle.is_closed(Duration::from_secs(2)));
}
