//! Many tunnels at once: 200 concurrent WebSockets, 50 messages each, nothing lost,
//! nothing reordered, nothing crossed between tunnels.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use switchyard_e2e::{join_within, wait_until, ws_close, ws_connect, Origin, Proxy};
use tungstenite::Message;

const THREADS: usize = 8;
const TUNNELS_PER_THREAD: usize = 25;
const MESSAGES: usize = 50;

#[test]
fn two_hundred_concurrent_tunnels_lose_nothing() {
    let origin = Origin::ws_echo();
    let proxy = Proxy::start(origin.addr());
    let addr = proxy.addr();
    let open = Arc::new(AtomicUsize::new(0));
    let echoed = Arc::new(AtomicUsize::new(0));

    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (open, echoed) = (open.clone(), echoed.clone());
            std::thread::spawn(move || {
                let mut tunnels: Vec<_> = (0..TUNNELS_PER_THREAD)
                    .map(|_| ws_connect(addr, "/load").0)
                    .collect();
                open.fetch_add(tunnels.len(), Ordering::SeqCst);
                // All 200 tunnels are open at once before any message moves.
                wait_until(Duration::from_secs(20), "all tunnels to open", || {
                    open.load(Ordering::SeqCst) == THREADS * TUNNELS_PER_THREAD
                });
                for seq in 0..MESSAGES {
                    for (index, ws) in tunnels.iter_mut().enumerate() {
                        let message = format!("thread {thread} tunnel {index} message {seq}");
                        // Alternate text and binary, and vary the size.
                        let message = if seq % 2 == 0 {
                            Message::text(message)
                        } else {
                            let mut bytes = message.into_bytes();
                            bytes.resize(bytes.len() + seq * 97, seq as u8);
                            Message::binary(bytes)
                        };
                        ws.send(message).unwrap_or_else(|e| {
                            panic!("thread {thread} tunnel {index} send {seq}: {e}")
                        });
                    }
                    for (index, ws) in tunnels.iter_mut().enumerate() {
                        let echo = ws.read().unwrap_or_else(|e| {
                            panic!("thread {thread} tunnel {index} read {seq}: {e}")
                        });
                        let text = match &echo {
                            Message::Text(text) => text.as_bytes().to_vec(),
                            Message::Binary(bytes) => bytes.to_vec(),
                            other => panic!("thread {thread} tunnel {index}: unexpected {other:?}"),
                        };
                        let expected = format!("thread {thread} tunnel {index} message {seq}");
                        assert!(
                            text.starts_with(expected.as_bytes()),
                            "thread {thread} tunnel {index}: expected {expected:?}, got {:?}",
                            String::from_utf8_lossy(&text[..text.len().min(60)])
                        );
                        assert_eq!(
                            text.len(),
                            expected.len() + if seq % 2 == 0 { 0 } else { seq * 97 }
                        );
                        echoed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                for ws in &mut tunnels {
                    ws_close(ws);
                }
            })
        })
        .collect();

    for thread in threads {
        join_within(thread, Duration::from_secs(60));
    }
    assert_eq!(
        echoed.load(Ordering::SeqCst),
        THREADS * TUNNELS_PER_THREAD * MESSAGES
    );
}
