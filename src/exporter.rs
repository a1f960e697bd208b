//! The /metrics endpoint (`rec.metrics-port`, `rec.metrics-bind`): a background thread serves
//! the Prometheus text that a once-a-second timer on Redis's main thread renders. The thread
//! never touches module state, so a scrape can never block or slow a command.

use crate::config;
use crate::metrics::Snapshot;
use crate::persist;
use redis_module::Context;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

static TEXT: LazyLock<Mutex<Arc<String>>> = LazyLock::new(|| Mutex::new(Arc::new(String::new())));
/// Bumped to stop the running listener thread.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The (address, port) the current thread serves, if any.
static SERVING: Mutex<Option<(IpAddr, u16)>> = Mutex::new(None);
/// The address that last failed to bind, so the retry does not log every second.
static LAST_FAILED: Mutex<Option<(IpAddr, u16)>> = Mutex::new(None);

fn latest() -> Arc<String> {
    TEXT.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Starts the once-a-second refresh; call from OnLoad.
pub fn start(ctx: &Context) {
    tick(ctx, ());
}

fn tick(ctx: &Context, _: ()) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let port = config::get(&config::METRICS_PORT) as u16;
        let want = (port > 0).then(|| (*config::METRICS_BIND.value(), port));
        if want.is_some() {
            let text =
                Snapshot::collect(&persist::engine(), crate::commands::now_ms()).prometheus();
            *TEXT.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(text);
        }
        let mut serving = SERVING.lock().unwrap_or_else(|e| e.into_inner());
        if *serving != want {
            let generation = GENERATION.fetch_add(1, Ordering::SeqCst) + 1;
            *serving = None;
            if let Some((ip, port)) = want {
                match TcpListener::bind(SocketAddr::new(ip, port)) {
                    Ok(l) => {
                        let _ = l.set_nonblocking(true);
                        std::thread::spawn(move || serve(l, generation));
                        *serving = want;
                        ctx.log_notice(&format!("RedisRec: serving /metrics on {ip}:{port}"));
                    }
                    Err(e) => {
                        // Retried every second; logged once per address.
                        let mut failed = LAST_FAILED.lock().unwrap_or_else(|x| x.into_inner());
                        if *failed != want {
                            ctx.log_warning(&format!(
                                "RedisRec: cannot serve /metrics on {ip}:{port}: {e}; retrying"
                            ));
                            *failed = want;
                        }
                    }
                }
            }
        }
    }));
    ctx.create_timer(Duration::from_secs(1), tick, ());
}

fn serve(listener: TcpListener, generation: u64) {
    while GENERATION.load(Ordering::SeqCst) == generation {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                // Read the request head, which may arrive in several segments.
                let mut buf = [0u8; 4096];
                let mut n = 0;
                while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf[n..]) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
                let req = &buf[..n];
                let path_ok =
                    req.starts_with(b"GET /metrics ") || req.starts_with(b"GET /metrics?");
                let response = if path_ok {
                    let body = latest();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                        body.len(),
                        body
                    )
                } else {
                    let body = "RedisRec serves /metrics\n";
                    format!(
                        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = stream.write_all(response.as_bytes());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
