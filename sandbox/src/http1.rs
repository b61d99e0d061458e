//! A minimal HTTP/1.1 keep-alive client, for the sandbox's receipts and status callbacks
//! and the benchmark's load. Both share a 2-core machine with the system they exercise,
//! so they must be cheap: a general-purpose client (reqwest) cost about 125 µs of CPU a
//! request here, more than the api itself; this one writes the request bytes and reads
//! one response by its `Content-Length`, as wrk does. Plain `http://` only.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Connection {
    stream: TcpStream,
    host: String,
    buffer: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl Connection {
    /// Connects to `host:port` (a name is looked up).
    pub async fn open_host(host: &str) -> io::Result<Self> {
        let addr = tokio::net::lookup_host(host)
            .await?
            .next()
            .ok_or_else(|| invalid("no address for the host"))?;
        let mut connection = Self::open(addr).await?;
        connection.host = host.to_owned();
        Ok(connection)
    }

    pub async fn open(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            host: addr.to_string(),
            buffer: Vec::with_capacity(4096),
        })
    }

    /// POSTs a JSON body and returns the response status, once the whole response is read.
    pub async fn post_json(&mut self, path: &str, body: &str) -> io::Result<u16> {
        self.post(path, "application/json", &[], body).await
    }

    /// POSTs `body` as `content_type`, with `headers` (names and values written as
    /// given: the caller keeps CR and LF out of them), and returns the response status,
    /// once the whole response is read.
    pub async fn post(
        &mut self,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> io::Result<u16> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.stream.write_all(request.as_bytes()).await?;
        let header_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end + 4;
            }
            self.fill().await?;
        };
        let head =
            std::str::from_utf8(&self.buffer[..header_end]).map_err(|_| invalid("header"))?;
        let status = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("status line"))?;
        // Without a length the body's end is unknown: the connection cannot be reused.
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .ok_or_else(|| invalid("an answer without Content-Length"))?;
        while self.buffer.len() < header_end + length {
            self.fill().await?;
        }
        self.buffer.drain(..header_end + length);
        Ok(status)
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}
