//! The egress bandwidth cap: uploads through the gateway are delayed to the cap, never cut or
//! corrupted, and `/metrics` shows the bytes and the waiting.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn uploads_are_shaped_to_the_cap_and_arrive_whole() {
    // the origin answers with the body's length and a checksum of what it keeps (the first MiB)
    let origin = MockUpstream::start(|r| {
        let sum: u64 = r.body.iter().map(|&b| u64::from(b)).sum();
        Reply::ok(&format!("{} {sum}", r.body_len))
    });
    let cap = 1_000_000u64; // 1 MB/s for the whole instance
    let gw = TestGateway::start_with_instance(
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\n{}", catch_all("o", &[origin.addr])),
        &format!("egress_bandwidth_bytes_per_s = {cap}"),
    );
    // two uploads at once (spread over the workers), 1.5 MB each: 3 MB through a 1 MB/s cap
    let len = 1_500_000usize;
    let t0 = Instant::now();
    let uploads: Vec<_> = (0..2u8)
        .map(|k| {
            let addr = gw.addr;
            std::thread::spawn(move || {
                let body: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(k)).collect();
                let want: u64 = body[..1 << 20].iter().map(|&b| u64::from(b)).sum();
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let head =
                    format!("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
                s.write_all(head.as_bytes()).unwrap();
                s.write_all(&body).unwrap();
                let mut answer = String::new();
                s.read_to_string(&mut answer).unwrap();
                (answer, want)
            })
        })
        .collect();
    for u in uploads {
        let (answer, want) = u.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&format!("{len} {want}")), "the body arrived whole and unchanged: {answer}");
    }
    let took = t0.elapsed();
    // 3 MB at 1 MB/s (minus one 20 ms burst) cannot take less than ~2.9 s; a slow machine only
    // makes it slower, so no upper bound is asserted
    assert!(took >= Duration::from_millis(2_800), "3 MB went through a 1 MB/s cap in {took:?}");
    let metrics = http_get(gw.admin.unwrap(), "/metrics").1;
    let sum = |name: &str| -> f64 {
        metrics.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    };
    assert!(sum("ringway_egress_bytes_total{") >= 3_000_000.0, "{metrics}");
    assert!(sum("ringway_egress_shaped_seconds_total{") > 1.0, "writes waited for the cap");
    assert!(metrics.contains(&format!("ringway_egress_bandwidth_limit_bytes_per_second {cap}")));
}
