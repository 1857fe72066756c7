//! A round-robin TCP proxy on a free loopback port: each accepted connection goes to the next
//! target, as a load balancer in front of several origins would send it. Per connection, not
//! per request (a kept-alive connection stays on its origin), which is how TCP balancers work.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};

pub struct RoundRobin {
    port: u16,
    stop: Arc<AtomicBool>,
    /// How many connections each target was given, in the targets' order.
    connections: Arc<Vec<AtomicUsize>>,
    accept: Option<JoinHandle<()>>,
}

impl RoundRobin {
    pub fn start(targets: &[u16]) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections: Arc<Vec<AtomicUsize>> =
            Arc::new(targets.iter().map(|_| AtomicUsize::new(0)).collect());
        let targets = targets.to_vec();
        let (stop2, counts) = (Arc::clone(&stop), Arc::clone(&connections));
        let accept = std::thread::spawn(move || {
            let mut next = 0usize;
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let i = next % targets.len();
                next = next.wrapping_add(1);
                counts[i].fetch_add(1, Ordering::SeqCst);
                let target = targets[i];
                std::thread::spawn(move || {
                    if let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) {
                        pipe(client, upstream);
                    }
                });
            }
        });
        Ok(Self { port, stop, connections, accept: Some(accept) })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Connections handed to each target so far.
    pub fn connections(&self) -> Vec<usize> {
        self.connections.iter().map(|c| c.load(Ordering::SeqCst)).collect()
    }
}

/// Copies both ways until either side closes.
fn pipe(client: TcpStream, upstream: TcpStream) {
    let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else { return };
    let back = std::thread::spawn(move || copy_then_close(upstream2, client2));
    copy_then_close(client, upstream);
    let _ = back.join();
}

fn copy_then_close(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}
