//! JSON lines on standard input and TCP: one packet per line in, one
//! response line per packet out (the body the HTTP API answers with).
//!
//! A line over [`LINE_BYTES_MAX`] is answered with a `line_too_long`
//! rejection, never recorded, and the connection carries on; a full ingress
//! queue is answered with an `overloaded` line (retry the packet: the
//! duplicate rule makes it safe). At most `connections_max` TCP connections
//! are served at once; one more is told so and closed.

use std::sync::Arc;

use crossbeam_channel::Sender;
use serde_json::json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::core::{Durability, Message};
use crate::http::{submit, RETRY_AFTER_SECONDS};
use crate::supervisor::Packet;

/// Longest line taken: 64 KiB, its newline not counted.
pub const LINE_BYTES_MAX: usize = 64 << 10;

/// One line read: its bytes, or the length of a line that was too long
/// (and was skipped to its end).
enum Line {
    Packet(Vec<u8>),
    TooLong(usize),
}

/// Reads the next line without ever holding more than `LINE_BYTES_MAX`
/// bytes of it. `None` at the end of input.
async fn next_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut length = 0usize;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(match length {
                0 => None,
                n if n > LINE_BYTES_MAX => Some(Line::TooLong(n)),
                _ => Some(Line::Packet(line)),
            });
        }
        let (chunk, done) = match buffer.iter().position(|&b| b == b'\n') {
            Some(i) => (&buffer[..i], Some(i + 1)),
            None => (buffer, None),
        };
        length += chunk.len();
        if length <= LINE_BYTES_MAX {
            line.extend_from_slice(chunk);
        } else {
            line = Vec::new();
        }
        let consumed = done.unwrap_or(chunk.len());
        reader.consume(consumed);
        if done.is_some() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(if length > LINE_BYTES_MAX { Line::TooLong(length) } else { Line::Packet(line) }));
        }
    }
}

/// Serves one line stream until its end or until shutdown begins.
pub async fn serve_stream<R, W>(
    reader: R,
    mut writer: W,
    queue: Sender<Message>,
    durability: Durability,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = BufReader::new(reader);
    loop {
        let line = tokio::select! {
            line = next_line(&mut reader) => line?,
            _ = shutdown.changed() => None,
        };
        let Some(line) = line else { return writer.flush().await };
        let body = match line {
            Line::Packet(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => continue,
            Line::TooLong(length) => json!({
                "status": "rejected",
                "accepted": false,
                "rejection": {"reason": "line_too_long", "detail": format!("{length} bytes, at most {LINE_BYTES_MAX}")},
            }),
            Line::Packet(bytes) => match submit(&queue, vec![Packet::from_bytes(bytes)]).await {
                Ok(Ok(answers)) => {
                    answers.first().map_or(json!({"error": "no answer"}), |a| a.to_json(durability.as_str()))
                }
                Ok(Err(message)) => json!({"status": "error", "error": format!("the supervisor stopped: {message}")}),
                Err("overloaded") => {
                    json!({"status": "overloaded", "error": "the ingress queue is full", "retry_after_s": RETRY_AFTER_SECONDS})
                }
                Err(_) => {
                    json!({"status": "stopping", "error": "the supervisor is stopping", "retry_after_s": RETRY_AFTER_SECONDS})
                }
            },
        };
        let mut text = body.to_string();
        text.push('\n');
        writer.write_all(text.as_bytes()).await?;
        writer.flush().await?;
    }
}

/// Accepts TCP connections until shutdown, each served as a line stream.
pub async fn serve_tcp(
    listener: TcpListener,
    connections_max: usize,
    queue: Sender<Message>,
    durability: Durability,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(connections_max));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((mut socket, peer)) = accepted else { continue };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let refusal = json!({"status": "error", "error": format!("at most {connections_max} connections at once")});
            let _ = socket.write_all(format!("{refusal}\n").as_bytes()).await;
            continue;
        };
        let (queue, shutdown) = (queue.clone(), shutdown.clone());
        actix_rt::spawn(async move {
            let (read, write) = socket.split();
            if let Err(e) = serve_stream(read, write, queue, durability, shutdown).await {
                tracing::info!(%peer, error = %e, "line connection ended");
            }
            drop(permit);
        });
    }
}
