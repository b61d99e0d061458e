//! Slow and greedy clients against the real api: a request head or body that does not
//! arrive in time, or a keep-alive connection left idle, is closed within the timeout
//! while `/healthz` keeps answering; connections are capped; and a body far over the
//! limit gets a 413 the client can read while it is still writing. The timeout tests
//! run the api with short timeouts ([`SHORT`]): the same code, smaller numbers;
//! `otp_shared::http`'s unit tests check each wait to the millisecond with paused time.

use std::time::{Duration, Instant};

use otp_api::config::ApiConfig;
use otp_e2e::{DEADLINE, TestEnv};
use otp_shared::http::{TIMEOUTS, Timeouts};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Slow connections of each kind held open at once.
const SLOW: usize = 40;
/// How much later than its timeout a slow connection may be closed.
const GRACE: Duration = Duration::from_secs(3);
/// The waits of the api under the timeout tests: those of production, a fifth as long,
/// so that each test waits 2 s instead of 10.
const SHORT: Timeouts = Timeouts {
    head: Duration::from_secs(2),
    body: Duration::from_secs(2),
    write: Duration::from_secs(2),
    ..TIMEOUTS
};
/// How much earlier than its timeout a connection may be seen closed, because the
/// server's clock starts a little before the test's: a tenth of the timeout, as 1 s was
/// of the production timeouts.
const EARLY: Duration = Duration::from_millis(200);

/// The api's settings for this test with [`SHORT`] waits on both its listeners.
fn with_short_timeouts(env: &TestEnv) -> ApiConfig {
    let mut config = env.api_config();
    config.http_timeouts = SHORT;
    config.metrics_timeouts = SHORT;
    config
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// A connection that has sent `bytes` and then goes quiet.
async fn stalled(url: &str, bytes: &str) -> TcpStream {
    let mut stream = TcpStream::connect(host_port(url))
        .await
        .expect("connect to the api");
    stream
        .write_all(bytes.as_bytes())
        .await
        .expect("send the first bytes");
    stream
}

/// Reads until the server closes the connection (end of stream or reset), or
/// `deadline` passes; what was read, or `None` if it was still open at the deadline.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> Option<String> {
    let mut read = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&read).into_owned()),
            Ok(Ok(n)) => read.extend_from_slice(&buffer[..n]),
        }
    }
}

/// `GET {base}/healthz` answers 200 within a second.
async fn healthz_answers_at_once(env: &TestEnv, base: &str) {
    let started = Instant::now();
    let response = env
        .http
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{base}/healthz did not answer within a second: {e}"));
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn slow_heads_and_bodies_are_cut_off_in_time_and_healthz_keeps_answering() {
    let mut env = TestEnv::new().await;
    let api = env.start_api_with(with_short_timeouts(&env)).await;
    let opened = Instant::now();
    let mut heads = Vec::new();
    let mut bodies = Vec::new();
    let mut metrics_heads = Vec::new();
    let mut silent = Vec::new();
    for _ in 0..SLOW {
        silent.push(stalled(&env.api_url, "").await);
        heads.push(
            stalled(
                &env.api_url,
                "POST /api/auth/send-otp HTTP/1.1\r\nHost: x\r\n",
            )
            .await,
        );
        bodies.push(
            stalled(
                &env.api_url,
                "POST /api/auth/send-otp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: 100\r\n\r\n{\"phone\":",
            )
            .await,
        );
        metrics_heads.push(stalled(&api.metrics_url, "GET /metrics HTTP/1.1\r\n").await);
    }
    healthz_answers_at_once(&env, &env.api_url).await;
    healthz_answers_at_once(&env, &api.metrics_url).await;

    let head_deadline = opened + SHORT.head + GRACE;
    // A new connection owes its first head within the head timeout, bytes or not.
    for stream in heads
        .iter_mut()
        .chain(metrics_heads.iter_mut())
        .chain(silent.iter_mut())
    {
        let answer = closed_by(stream, head_deadline).await;
        assert!(
            answer.is_some(),
            "a trickled head still open after {:?}",
            SHORT.head
        );
    }
    let body_deadline = opened + SHORT.body + GRACE;
    for stream in &mut bodies {
        let answer = closed_by(stream, body_deadline)
            .await
            .unwrap_or_else(|| panic!("a trickled body still open after {:?}", SHORT.body));
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "a trickled body gets a client error, if anything: {answer}"
        );
    }
    healthz_answers_at_once(&env, &env.api_url).await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_lasts_the_idle_timeout_then_closes() {
    let mut env = TestEnv::new().await;
    let mut config = with_short_timeouts(&env);
    // Longer than the head timeout, to tell the two apart.
    let idle = SHORT.head + Duration::from_secs(2);
    config.http_timeouts.idle = idle;
    let _api = env.start_api_with(config).await;
    let mut stream = stalled(&env.api_url, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).await.expect("an answer");
    assert_eq!(&answer, b"HTTP/1.1 200");
    let answered = Instant::now();
    // Past the head timeout, the idle connection is still there...
    let still_open = closed_by(
        &mut stream,
        answered + SHORT.head + Duration::from_millis(500),
    )
    .await;
    assert!(still_open.is_none(), "closed before the idle timeout");
    // ...and takes another request, whose head now has the head timeout.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("a second request");
    stream
        .read_exact(&mut answer)
        .await
        .expect("a second answer");
    assert_eq!(&answer, b"HTTP/1.1 200");
    let answered = Instant::now();
    assert!(
        closed_by(&mut stream, answered + idle + GRACE)
            .await
            .is_some(),
        "the idle connection closed"
    );
    assert!(answered.elapsed() >= idle - EARLY);
}

#[tokio::test]
async fn a_body_trickled_byte_by_byte_is_cut_off_at_the_body_timeout() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api_with(with_short_timeouts(&env)).await;
    let mut stream = stalled(
        &env.api_url,
        "POST /api/auth/send-otp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n",
    )
    .await;
    let started = Instant::now();
    let deadline = started + SHORT.body + GRACE;
    // A byte every half second: each chunk comes well within any per-chunk timeout.
    let mut closed = false;
    while Instant::now() < deadline {
        if stream.write_all(b" ").await.is_err() {
            closed = true;
            break;
        }
        if closed_by(&mut stream, Instant::now() + Duration::from_millis(500))
            .await
            .is_some()
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickled body still open after {:?}", SHORT.body);
    assert!(started.elapsed() >= SHORT.body - EARLY);
}

#[tokio::test]
async fn a_client_that_reads_none_of_its_answers_is_cut_off() {
    let mut env = TestEnv::new().await;
    // The login page's answer is tens of kilobytes, so a few hundred fill the socket
    // buffers (megabytes) where /healthz's took tens of thousands, and seconds under load.
    let mut config = with_short_timeouts(&env);
    config.login_page = true;
    let _api = env.start_api_with(config).await;
    let stream = stalled(&env.api_url, "").await;
    let (_reader, mut writer) = stream.into_split();
    let started = Instant::now();
    // Pipelined requests, and never a read: the answers pile up until the server's
    // writes stall, and then it must let go.
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(16);
    let written = tokio::time::timeout(SHORT.write + GRACE + Duration::from_secs(10), async {
        while writer.write_all(&request).await.is_ok() {}
    })
    .await;
    assert!(
        written.is_ok(),
        "the server still took requests from a client that reads nothing"
    );
    assert!(started.elapsed() >= SHORT.write - EARLY);
    healthz_answers_at_once(&env, &env.api_url).await;
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let mut env = TestEnv::new().await;
    let mut config = env.api_config();
    config.http_max_connections = 4;
    let _api = env.start_api_with(config).await;
    // The harness's client keeps the connection it checked readiness on: close it, so
    // that the four below are all there is.
    env.http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client");
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(host_port(&env.api_url))
            .await
            .expect("connect");
        // Served as soon as the readiness connection is gone, then kept alive.
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        let mut buffer = [0u8; 12];
        tokio::time::timeout(TIMEOUTS.head + GRACE, stream.read_exact(&mut buffer))
            .await
            .expect("an answer in time")
            .expect("an answer");
        assert_eq!(&buffer, b"HTTP/1.1 200");
        held.push(stream);
    }
    let fifth = env
        .http
        .get(format!("{}/healthz", env.api_url))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(fifth.is_err(), "a fifth connection was served past the cap");
    drop(held.pop());
    let response = env
        .http
        .get(format!("{}/healthz", env.api_url))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .expect("served once a connection closed");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_body_far_over_the_limit_gets_a_413_the_client_can_read() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    for mebibytes in [1, 8] {
        let body = format!("{{\"phone\":\"{}\"}}", "9".repeat(mebibytes << 20));
        let response = env
            .http
            .post(format!("{}/api/auth/send-otp", env.api_url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{mebibytes} MiB: no answer could be read: {e}"));
        assert_eq!(response.status(), 413, "{mebibytes} MiB");
        let body: Value = response.json().await.expect("a JSON error body");
        assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    }
}

#[tokio::test]
async fn a_client_still_writing_a_huge_body_reads_the_413_before_the_connection_closes() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let length = 8usize << 20;
    let stream = stalled(
        &env.api_url,
        &format!(
            "POST /api/auth/send-otp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\n\r\n"
        ),
    )
    .await;
    let (mut reader, mut writer) = stream.into_split();
    // Keep writing the body, as a client uploading it would, until the server stops us.
    let writing = tokio::spawn(async move {
        let chunk = vec![b'9'; 64 * 1024];
        let mut sent = 0;
        while sent < length {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) => return Ok(()),
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the server ends the connection");
    writing.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "read {read:?} and {answer:?}"
    );
    assert!(answer.contains("PAYLOAD_TOO_LARGE"), "{answer}");
}

#[tokio::test]
async fn a_client_that_writes_its_whole_huge_body_reads_the_413_and_none_of_its_writes_fail() {
    // Closing a socket with unread bytes makes the kernel reset the connection: the
    // client's next write fails, and a client that then ends the connection (asyncio
    // does) loses the 413 it had not read yet. The server must answer, shut its side,
    // and read away what still comes (a lingering close), so that a client writing its
    // whole body meets no error and reads the answer.
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    let length = 32usize << 20;
    let stream = TcpStream::connect(host_port(&env.api_url))
        .await
        .expect("connect to the api");
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        let head = format!(
            "POST /api/auth/send-otp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b'9'; 64 * 1024];
        for _ in 0..length / chunk.len() {
            writer.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(writer)
    });
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(DEADLINE, reader.read_to_end(&mut answer))
        .await
        .expect("the server ends its side of the connection");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(answer.contains("PAYLOAD_TOO_LARGE"), "{answer}");
    assert!(ended.is_ok(), "ended with {ended:?}");
    let written = tokio::time::timeout(DEADLINE, writing)
        .await
        .expect("the body is written in time")
        .expect("the writing task");
    assert!(
        written.is_ok(),
        "a write of the body failed: {:?}",
        written.err()
    );
}

#[tokio::test]
async fn sign_in_requests_whose_bodies_have_not_come_hold_no_receipt_back() {
    let mut env = TestEnv::new().await;
    let _api = env.start_api().await;
    // More send-otp requests in flight than a burst (16), each with its head sent and
    // its body not: before, each counted as sign-in load from its head on, and receipts
    // waited (a second each) for as long as the bodies trickled.
    let head = "POST /api/auth/send-otp HTTP/1.1\r\nHost: api\r\n\
                Content-Type: application/json\r\nContent-Length: 40\r\n\r\n{";
    let mut held = Vec::new();
    for _ in 0..24 {
        held.push(stalled(&env.api_url, head).await);
    }
    let receipt = serde_json::json!({"eventType": "messageReceived"});
    // Three in a row: by the second, the server has long read every head.
    for _ in 0..3 {
        let started = Instant::now();
        let (status, _) = env.post_receipt(otp_e2e::WEBHOOK_SECRET, &receipt).await;
        assert_eq!(status, 200);
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "a receipt waited {:?} for bodies still on their way",
            started.elapsed()
        );
    }
    drop(held);
}

/// A connection to the api from the loopback address `local` (any of 127.0.0.0/8).
async fn connect_from(local: &str, url: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(format!("{local}:0").parse().expect("an address"))
        .expect("bind a loopback address");
    let target = host_port(url).parse().expect("the api's address");
    socket.connect(target).await.expect("connect to the api")
}

/// Sends `GET /healthz` on `stream`; whether an answer came within two seconds.
async fn answers_healthz(stream: &mut TcpStream) -> bool {
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await;
    matches!(read, Ok(Ok(n)) if n > 0 && buffer.starts_with(b"HTTP/1.1 200"))
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection() {
    let mut env = TestEnv::new().await;
    let config = env.api_config_with(&["--http-max-connections-per-client", "8"]);
    let _api = env.start_api_with(config).await;
    // The client under test comes from 127.0.0.3 (the harness's own requests from
    // 127.0.0.1 are another client).
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut stream = connect_from("127.0.0.3", &env.api_url).await;
        assert!(answers_healthz(&mut stream).await, "within the cap");
        held.push(stream);
    }
    // The ninth from the same address is closed at once (before, it was served, and
    // one address could take all 4,096); another address still gets in.
    let mut ninth = connect_from("127.0.0.3", &env.api_url).await;
    assert!(!answers_healthz(&mut ninth).await, "over the cap");
    let mut other = connect_from("127.0.0.2", &env.api_url).await;
    assert!(answers_healthz(&mut other).await, "another client");
    // One closed, one more may come.
    drop(held.pop());
    let api_url = env.api_url.clone();
    otp_e2e::eventually("a place freed", DEADLINE, || {
        let api_url = api_url.clone();
        async move {
            let mut again = connect_from("127.0.0.3", &api_url).await;
            answers_healthz(&mut again).await.then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn near_the_cap_idle_connections_make_room_for_a_waiting_client_in_seconds() {
    let mut env = TestEnv::new().await;
    // Ten connections at most, idle for a minute while there is room.
    let config = env.api_config_with(&[
        "--http-max-connections",
        "10",
        "--http-max-connections-per-client",
        "0",
    ]);
    let _api = env.start_api_with(config).await;
    // Idle kept-alive connections until the server is full: the next one waits in
    // the listen backlog, unanswered.
    let mut held = Vec::new();
    let mut waiting = loop {
        let mut stream = connect_from("127.0.0.1", &env.api_url).await;
        if !answers_healthz(&mut stream).await {
            break stream;
        }
        held.push(stream);
        assert!(held.len() <= 10, "the server took more than its cap");
    };
    // Full, the idle ones go after 5 s (not the 60 s they may idle while there is
    // room), and the waiting client is served.
    let started = Instant::now();
    let mut buffer = [0u8; 64];
    let answer = tokio::time::timeout(Duration::from_secs(9), waiting.read(&mut buffer)).await;
    assert!(
        matches!(answer, Ok(Ok(n)) if n > 0 && buffer.starts_with(b"HTTP/1.1 200")),
        "the waiting client was served in {:?}: {answer:?}",
        started.elapsed()
    );
}
