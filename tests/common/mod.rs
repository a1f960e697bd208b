//! Integration-test harness: real `redis-server` processes with the module loaded.
//!
//! Modelled on redismodule-rs's `tests/utils.rs`: every test starts its own server on a port it
//! allocated, and the [`Server`] guard kills the child (and removes its directory) in `Drop`, so a
//! failing test never leaks a server. Only `std` and the `redis` crate are used.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{Cmd, Connection, ConnectionLike, Value};

/// How long a server may take to answer PING after it was spawned.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a replica may take to catch up with its primary.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// A reply slower than this means the server hangs.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Locating the binaries
// ---------------------------------------------------------------------------------------------

/// The module to load: `$REDISREC_MODULE`, else the newer of the release and debug builds.
pub fn module_path() -> PathBuf {
    if let Ok(p) = std::env::var("REDISREC_MODULE") {
        return PathBuf::from(p);
    }
    // The target directory cargo built into (CARGO_TARGET_DIR, else ./target).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let release = target.join("release/libredisrec.so");
    let debug = target.join("debug/libredisrec.so");
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    match (mtime(&release), mtime(&debug)) {
        (Some(r), Some(d)) if r > d => release,
        (Some(_), None) => release,
        _ => debug,
    }
}

fn redis_server_bin() -> String {
    std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string())
}

// ---------------------------------------------------------------------------------------------
// Temporary directories and ports
// ---------------------------------------------------------------------------------------------

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir =
        std::env::temp_dir().join(format!("redisrec-{tag}-{}-{n}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port nobody listens on right now. Another process may take it before redis-server binds
/// it; [`Server`] then retries on another port.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ---------------------------------------------------------------------------------------------
// The server guard
// ---------------------------------------------------------------------------------------------

/// A running `redis-server` with the module loaded. Killed (and its directory removed) on drop.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    /// Extra command-line arguments, kept for restarts and replicas.
    pub extra: Vec<String>,
    owns_dir: bool,
}

/// What became of a spawned server.
enum Launch {
    Ready,
    Exited(ExitStatus, String),
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("redis.log")
}

fn log_len(dir: &Path) -> u64 {
    fs::metadata(log_path(dir)).map(|m| m.len()).unwrap_or(0)
}

/// The server log written since byte `from`.
fn read_log_from(dir: &Path, from: u64) -> String {
    let mut s = Vec::new();
    if let Ok(mut f) = File::open(log_path(dir)) {
        let _ = f.seek(SeekFrom::Start(from));
        let _ = f.read_to_end(&mut s);
    }
    String::from_utf8_lossy(&s).into_owned()
}

fn spawn(dir: &Path, port: u16, extra: &[String]) -> Child {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(dir))
        .unwrap();
    let module = module_path();
    assert!(
        module.exists(),
        "module not built: {} (run cargo build, or set REDISREC_MODULE)",
        module.display()
    );
    Command::new(redis_server_bin())
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1"])
        .arg("--loadmodule")
        .arg(&module)
        .arg("--dir")
        .arg(dir)
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .args(["--repl-diskless-sync-delay", "0"])
        .args(["--enable-debug-command", "yes"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("cannot spawn redis-server")
}

/// A short-lived raw TCP connection with timeouts: probing a port must never block on a
/// listener that is not (yet) our redis-server.
fn raw_stream(port: u16, timeout: Duration) -> Option<std::net::TcpStream> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    Some(s)
}

/// Sends PING and INFO server; returns the `process_id` if the answer was PONG (not LOADING).
fn probe_pid(port: u16) -> Option<String> {
    use std::io::Write;
    let mut s = raw_stream(port, Duration::from_millis(500))?;
    s.write_all(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let rest = buf.strip_prefix(b"+PONG\r\n".as_slice())?;
        // INFO's reply: $<len>\r\n<len bytes>\r\n
        let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") else {
            continue;
        };
        let len: usize = std::str::from_utf8(rest.get(1..nl)?).ok()?.parse().ok()?;
        if rest.len() >= nl + 2 + len {
            let text = String::from_utf8_lossy(&rest[nl + 2..nl + 2 + len]).into_owned();
            return parse_info(&text).get("process_id").cloned();
        }
    }
}

/// Waits until the child answers PING (and it is really our child on that port), or exits.
fn wait_ready(child: &mut Child, dir: &Path, port: u16, log_from: u64) -> Launch {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Launch::Exited(status, read_log_from(dir, log_from));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "redis-server on port {port} did not answer PING within {START_TIMEOUT:?}; log:\n{}",
                read_log_from(dir, log_from)
            );
        }
        // Another process on this port (or ours still loading) gives no matching pid; ours then
        // either fails to bind and exits, or answers soon.
        if probe_pid(port) == Some(child.id().to_string()) {
            return Launch::Ready;
        }
        sleep(Duration::from_millis(20));
    }
}

/// Spawns a server in `dir`, retrying on other ports when the port was taken.
/// Returns the ready child and its port, or the exit status and log if it refused to start.
fn launch(
    dir: &Path,
    extra: &[String],
    preferred: Option<u16>,
) -> Result<(Child, u16), (ExitStatus, String)> {
    for attempt in 0..20 {
        let port = match preferred {
            Some(p) if attempt < 3 => p,
            _ => free_port(),
        };
        let from = log_len(dir);
        let mut child = spawn(dir, port, extra);
        match wait_ready(&mut child, dir, port, from) {
            Launch::Ready => return Ok((child, port)),
            Launch::Exited(status, log) => {
                if log.contains("Address already in use") {
                    if preferred.is_some() && attempt < 3 {
                        sleep(Duration::from_millis(200));
                    }
                    continue;
                }
                return Err((status, log));
            }
        }
    }
    panic!("could not find a free port for redis-server after 20 attempts");
}

impl Server {
    /// A server with the module and the default test arguments.
    pub fn start() -> Server {
        Server::with_args(&[])
    }

    /// A server with extra redis-server arguments (they come last, so they override defaults).
    pub fn with_args(extra: &[&str]) -> Server {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Server::start_in(temp_dir("srv"), extra)
    }

    /// A server using an existing directory (e.g. one prepared with a dump.rdb).
    pub fn start_in(dir: PathBuf, extra: Vec<String>) -> Server {
        match Server::try_start_in(dir, extra) {
            Ok(s) => s,
            Err((status, log)) => panic!("redis-server exited with {status}; log:\n{log}"),
        }
    }

    /// Like [`Server::start_in`], but returns the exit status and log when the server refuses
    /// to start (e.g. a corrupt RDB). The directory is kept in that case.
    pub fn try_start_in(dir: PathBuf, extra: Vec<String>) -> Result<Server, (ExitStatus, String)> {
        let (child, port) = launch(&dir, &extra, None)?;
        Ok(Server {
            child: Some(child),
            port,
            dir,
            extra,
            owns_dir: true,
        })
    }

    /// A replica of `primary` (same extra arguments), waited on until fully synced.
    pub fn replica_of(primary: &Server) -> Server {
        let mut extra = primary.extra.clone();
        extra.extend([
            "--replicaof".to_string(),
            "127.0.0.1".to_string(),
            primary.port.to_string(),
        ]);
        let replica = Server::start_in(temp_dir("replica"), extra);
        wait_replica_synced(primary, &replica);
        replica
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A RESP2 connection.
    pub fn connection(&self) -> Connection {
        self.connect(&self.url())
    }

    /// A RESP3 connection (the client says `HELLO 3`).
    pub fn connection_resp3(&self) -> Connection {
        self.connect(&format!("{}?protocol=resp3", self.url()))
    }

    fn connect(&self, url: &str) -> Connection {
        let client = redis::Client::open(url).unwrap();
        let con = client
            .get_connection_with_timeout(Duration::from_secs(10))
            .unwrap();
        con.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        con.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        con
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Everything the server (and any panic message on stderr) wrote.
    pub fn log(&self) -> String {
        read_log_from(&self.dir, 0)
    }

    /// True while the child process runs.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Graceful `SHUTDOWN NOSAVE` (the AOF is flushed), bounded; killed if it does not exit.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Some(mut s) = raw_stream(self.port, Duration::from_secs(5)) {
            use std::io::Write;
            let _ = s.write_all(b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n");
            let _ = s.read(&mut [0u8; 64]);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server and starts it again on the same directory and arguments (and, when
    /// possible, the same port), so it loads its RDB or AOF.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.map(|s| s.success()).unwrap_or(true),
            "redis-server exited with {status:?} on shutdown; log:\n{}",
            self.log()
        );
        self.start_again();
    }

    /// Starts a stopped server again on the same directory (used after editing its files).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "server still running");
        match launch(&self.dir, &self.extra, Some(self.port)) {
            Ok((child, port)) => {
                self.child = Some(child);
                self.port = port;
            }
            Err((status, log)) => panic!("redis-server did not restart ({status}); log:\n{log}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Keep the directory only when asked to (REDISREC_KEEP_DIRS=1), e.g. to debug a failure.
        let keep = std::env::var_os("REDISREC_KEEP_DIRS").is_some();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- redis-server port {} dir {}{}, last log lines:\n{}",
                self.port,
                self.dir.display(),
                if keep { " (kept)" } else { "" },
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if self.owns_dir && !keep {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Spawns a server on `dir` that is expected to refuse to start; returns its exit status and
/// log. Panics if it starts (it is then killed).
pub fn expect_start_failure(dir: &Path, extra: &[String]) -> (ExitStatus, String) {
    match launch(dir, extra, None) {
        Ok((mut child, port)) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "redis-server on port {port} started although it should have refused; log:\n{}",
                read_log_from(dir, 0)
            );
        }
        Err(r) => r,
    }
}

/// True if the exit was a crash (signal, Rust panic, Redis bug report) rather than a clean exit.
pub fn looks_like_crash(status: &ExitStatus, log: &str) -> bool {
    status.signal().is_some()
        || log.contains("crashed by signal")
        || log.contains("panicked")
        || log.contains("REDIS BUG REPORT")
        || log.contains("Guru Meditation")
}

// ---------------------------------------------------------------------------------------------
// INFO and replication
// ---------------------------------------------------------------------------------------------

pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

pub fn info(con: &mut Connection, section: &str) -> HashMap<String, String> {
    let text: String = redis::cmd("INFO").arg(section).query(con).unwrap();
    parse_info(&text)
}

/// Waits (bounded) until `replica` is linked to `primary` and has processed everything the
/// primary had written when the wait began.
pub fn wait_replica_synced(primary: &Server, replica: &Server) {
    let mut p = primary.connection();
    let mut r = replica.connection();
    let deadline = Instant::now() + SYNC_TIMEOUT;
    let target: i64 = info(&mut p, "replication")["master_repl_offset"]
        .parse()
        .unwrap();
    loop {
        let ri = info(&mut r, "replication");
        let loading = info(&mut r, "persistence")
            .get("loading")
            .cloned()
            .unwrap_or_default();
        let up = ri.get("master_link_status").map(String::as_str) == Some("up");
        let processed: i64 = ri
            .get("slave_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1);
        if up && loading == "0" && processed >= target {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica on port {} not synced with primary {} within {SYNC_TIMEOUT:?}: \
             target offset {target}, replica info {ri:?}",
            replica.port,
            primary.port
        );
        sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until no RDB save / AOF rewrite is running or scheduled.
pub fn wait_persistence_idle(con: &mut Connection) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let i = info(con, "persistence");
        let busy = [
            "rdb_bgsave_in_progress",
            "aof_rewrite_in_progress",
            "aof_rewrite_scheduled",
        ]
        .iter()
        .any(|k| i.get(*k).map(String::as_str) == Some("1"));
        if !busy {
            return;
        }
        assert!(Instant::now() < deadline, "persistence still busy: {i:?}");
        sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Sending commands
// ---------------------------------------------------------------------------------------------

/// A command from binary-safe arguments (the first is the command name).
pub fn command<A: AsRef<[u8]>>(args: &[A]) -> Cmd {
    let mut c = Cmd::new();
    for a in args {
        c.arg(a.as_ref());
    }
    c
}

/// Sends one command; server errors come back as `Value::ServerError`, I/O errors panic.
pub fn call<A: AsRef<[u8]>>(con: &mut Connection, args: &[A]) -> Value {
    con.req_command(&command(args)).unwrap_or_else(|e| {
        panic!(
            "I/O error on {:?}: {e}",
            args.iter()
                .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
                .collect::<Vec<_>>()
        )
    })
}

/// Sends commands pipelined in one write; returns every reply (errors included).
pub fn call_pipelined(con: &mut Connection, cmds: &[Vec<Vec<u8>>]) -> Vec<Value> {
    if cmds.is_empty() {
        return Vec::new();
    }
    let mut packed = Vec::new();
    for c in cmds {
        packed.extend(command(c).get_packed_command());
    }
    con.req_packed_commands(&packed, 0, cmds.len()).unwrap()
}

/// Sends commands pipelined in batches and panics on the first error reply.
pub fn run_all(con: &mut Connection, cmds: &[Vec<Vec<u8>>]) {
    for chunk in cmds.chunks(500) {
        let replies = call_pipelined(con, chunk);
        for (c, r) in chunk.iter().zip(&replies) {
            assert!(!is_err(r), "{} -> {r:?}", show_cmd(c));
        }
    }
}

/// Builds an argument vector from string slices.
pub fn args(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|s| s.as_bytes().to_vec()).collect()
}

pub fn show_cmd(c: &[Vec<u8>]) -> String {
    c.iter()
        .map(|a| {
            let s = String::from_utf8_lossy(a);
            if s.len() > 80 {
                format!(
                    "{:?}…({} bytes)",
                    &s[..s.char_indices().nth(60).map(|x| x.0).unwrap_or(0)],
                    a.len()
                )
            } else {
                format!("{s:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// Reading replies (RESP2 flat maps and RESP3 maps alike)
// ---------------------------------------------------------------------------------------------

pub fn is_err(v: &Value) -> bool {
    matches!(v, Value::ServerError(_))
}

/// The full error text (`ERR ...`), or None if `v` is not an error.
pub fn err_text(v: &Value) -> Option<String> {
    match v {
        Value::ServerError(e) => Some(match e.details() {
            Some(d) => format!("{} {d}", e.code()),
            None => e.code().to_string(),
        }),
        _ => None,
    }
}

/// Asserts `v` is an error whose text starts with `ERR` (and contains `needle`, lowercase).
#[track_caller]
pub fn assert_err(v: &Value, needle: &str) {
    let t = err_text(v).unwrap_or_else(|| panic!("expected an error, got {v:?}"));
    assert!(t.starts_with("ERR"), "error does not start with ERR: {t}");
    assert!(
        t.to_lowercase().contains(&needle.to_lowercase()),
        "error {t:?} does not mention {needle:?}"
    );
}

/// Asserts `v` is Redis's arity error for `cmd`.
#[track_caller]
pub fn assert_arity_err(v: &Value, cmd: &str) {
    let t = err_text(v).unwrap_or_else(|| panic!("expected an arity error, got {v:?}"));
    let want = format!(
        "err wrong number of arguments for '{}' command",
        cmd.to_lowercase()
    );
    assert_eq!(t.to_lowercase(), want, "for {cmd}");
}

#[track_caller]
pub fn assert_ok(v: &Value) {
    assert!(
        matches!(v, Value::Okay) || matches!(v, Value::SimpleString(s) if s == "OK"),
        "expected OK, got {v:?}"
    );
}

/// Text of a string-like reply; panics on anything else.
#[track_caller]
pub fn as_str(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".to_string(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::Int(i) => i.to_string(),
        Value::Double(d) => d.to_string(),
        other => panic!("expected a string, got {other:?}"),
    }
}

#[track_caller]
pub fn as_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::BulkString(b) => b.clone(),
        other => as_str(other).into_bytes(),
    }
}

#[track_caller]
pub fn as_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::BulkString(_) | Value::SimpleString(_) => as_str(v)
            .parse()
            .unwrap_or_else(|_| panic!("not an integer: {v:?}")),
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// A double reply: RESP3 double, or (RESP2) a bulk string; integers accepted too.
#[track_caller]
pub fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Double(d) => *d,
        Value::Int(i) => *i as f64,
        Value::BulkString(_) | Value::SimpleString(_) => as_str(v)
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {v:?}")),
        other => panic!("expected a number, got {other:?}"),
    }
}

#[track_caller]
pub fn as_array(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        other => panic!("expected an array, got {other:?}"),
    }
}

/// Key/value pairs of a map reply: a RESP3 map or a RESP2 flat array.
#[track_caller]
pub fn map_entries(v: &Value) -> Vec<(String, Value)> {
    match v {
        Value::Map(m) => m.iter().map(|(k, v)| (as_str(k), v.clone())).collect(),
        Value::Array(a) => {
            assert!(a.len() % 2 == 0, "odd-length flat map: {v:?}");
            a.chunks(2).map(|p| (as_str(&p[0]), p[1].clone())).collect()
        }
        other => panic!("expected a map, got {other:?}"),
    }
}

/// Field names of a map reply, in order.
pub fn map_keys(v: &Value) -> Vec<String> {
    map_entries(v).into_iter().map(|(k, _)| k).collect()
}

/// One field of a map reply (None if absent).
pub fn map_get(v: &Value, key: &str) -> Option<Value> {
    map_entries(v)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// One field of a map reply; panics if absent.
#[track_caller]
pub fn field(v: &Value, key: &str) -> Value {
    map_get(v, key).unwrap_or_else(|| panic!("no field {key:?} in {v:?}"))
}

/// An ordered `id -> score` reply (REC.SIMILAR / REC.POPULAR WITHSCORES).
pub fn scored(v: &Value) -> Vec<(String, f64)> {
    map_entries(v)
        .into_iter()
        .map(|(k, s)| (k, as_f64(&s)))
        .collect()
}

/// A plain array of ids.
pub fn ids(v: &Value) -> Vec<String> {
    as_array(v).iter().map(as_str).collect()
}

/// One entry of REC.GET's `items`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecItem {
    pub id: String,
    pub score: Option<f64>,
    pub reason: Option<String>,
}

/// The `items` of a REC.GET reply: plain ids, or maps with `id`, `score`, `reason`.
pub fn rec_items(reply: &Value) -> Vec<RecItem> {
    as_array(&field(reply, "items"))
        .iter()
        .map(|it| match it {
            Value::Map(_) | Value::Array(_) => RecItem {
                id: as_str(&field(it, "id")),
                score: map_get(it, "score").map(|s| as_f64(&s)),
                reason: map_get(it, "reason").map(|s| as_str(&s)),
            },
            other => RecItem {
                id: as_str(other),
                score: None,
                reason: None,
            },
        })
        .collect()
}

pub fn rec_ids(reply: &Value) -> Vec<String> {
    rec_items(reply).into_iter().map(|i| i.id).collect()
}

/// A copy of a map reply without `key` (e.g. REC.GET's time-dependent `rec_id`).
pub fn without_field(v: &Value, key: &str) -> Value {
    match v {
        Value::Map(m) => Value::Map(
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k, Value::BulkString(_) | Value::SimpleString(_)) || as_str(k) != key
                })
                .cloned()
                .collect(),
        ),
        Value::Array(a) if a.len() % 2 == 0 => Value::Array(
            a.chunks(2)
                .filter(|p| {
                    !matches!(p[0], Value::BulkString(_) | Value::SimpleString(_))
                        || as_str(&p[0]) != key
                })
                .flatten()
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic PRNG (SplitMix64)
// ---------------------------------------------------------------------------------------------

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform index into a slice of length `n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.index(xs.len())]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// Skewed index: small indices are much more likely (a few heavy users / hot items).
    pub fn skewed(&mut self, n: usize) -> usize {
        let a = self.index(n);
        let b = self.index(n);
        let c = self.index(n);
        a.min(b).min(c)
    }
}

// ---------------------------------------------------------------------------------------------
// State digest
// ---------------------------------------------------------------------------------------------

fn digest_line(cmd: &[Vec<u8>], reply: &Value) -> String {
    format!("{} => {reply:?}", show_cmd(cmd))
}

/// Everything the module answers about a sample of users and items, as comparable lines:
/// REC.GET (COUNT 20 WITHSCORES WITHREASONS NOCACHE, without the time-dependent `rec_id`; also
/// once per custom model for the first users), REC.SIMILAR, REC.POPULAR (global and per category
/// seen), REC.USER.GET, REC.ITEM.GET, REC.MODEL.LIST / GET, and DBSIZE.
pub fn state_digest<U: AsRef<[u8]>, I: AsRef<[u8]>>(
    con: &mut Connection,
    users: &[U],
    items: &[I],
) -> Vec<String> {
    digest_with(con, users, items, "REC.GET")
}

/// [`state_digest`] with REC.GET_RO, so it runs on replicas.
pub fn state_digest_ro<U: AsRef<[u8]>, I: AsRef<[u8]>>(
    con: &mut Connection,
    users: &[U],
    items: &[I],
) -> Vec<String> {
    digest_with(con, users, items, "REC.GET_RO")
}

pub fn digest_with<U: AsRef<[u8]>, I: AsRef<[u8]>>(
    con: &mut Connection,
    users: &[U],
    items: &[I],
    get_cmd: &str,
) -> Vec<String> {
    let b = |s: &str| s.as_bytes().to_vec();
    // Phase 1: items and models, to learn the categories and model names to ask about.
    let mut first: Vec<Vec<Vec<u8>>> = vec![args(&["REC.MODEL.LIST"])];
    for i in items {
        first.push(vec![b("REC.ITEM.GET"), i.as_ref().to_vec()]);
    }
    let first_replies = call_pipelined(con, &first);
    let mut out: Vec<String> = first
        .iter()
        .zip(&first_replies)
        .map(|(c, r)| digest_line(c, r))
        .collect();
    let models: Vec<Vec<u8>> = match &first_replies[0] {
        Value::Array(a) => a.iter().map(as_bytes).collect(),
        _ => Vec::new(),
    };
    let mut categories = BTreeSet::new();
    for r in &first_replies[1..] {
        if matches!(r, Value::Map(_) | Value::Array(_)) {
            if let Some(Value::BulkString(c)) = map_get(r, "category") {
                categories.insert(c);
            }
        }
    }

    // Phase 2: everything else.
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    for m in &models {
        cmds.push(vec![b("REC.MODEL.GET"), m.clone()]);
    }
    let custom: Vec<&Vec<u8>> = models
        .iter()
        .filter(|m| m.as_slice() != b"default")
        .collect();
    for (n, u) in users.iter().enumerate() {
        let u = u.as_ref().to_vec();
        cmds.push(vec![b("REC.USER.GET"), u.clone()]);
        let get = |extra: &[Vec<u8>]| {
            let mut c = vec![b(get_cmd), u.clone()];
            c.extend(args(&[
                "COUNT",
                "20",
                "WITHSCORES",
                "WITHREASONS",
                "NOCACHE",
            ]));
            c.extend(extra.iter().cloned());
            c
        };
        cmds.push(get(&[]));
        if n < 5 {
            for m in &custom {
                cmds.push(get(&[b("MODEL"), (*m).clone()]));
            }
        }
    }
    for i in items {
        cmds.push(vec![
            b("REC.SIMILAR"),
            i.as_ref().to_vec(),
            b("COUNT"),
            b("20"),
            b("WITHSCORES"),
        ]);
    }
    cmds.push(args(&["REC.POPULAR", "COUNT", "50", "WITHSCORES"]));
    for c in &categories {
        cmds.push(vec![
            b("REC.POPULAR"),
            b("COUNT"),
            b("20"),
            b("CATEGORY"),
            c.clone(),
            b("WITHSCORES"),
        ]);
    }
    cmds.push(args(&["DBSIZE"]));
    let replies = call_pipelined(con, &cmds);
    for (c, r) in cmds.iter().zip(&replies) {
        if c[0] == get_cmd.as_bytes() {
            // Same line for REC.GET and REC.GET_RO, so the two digests compare.
            let mut c = c.clone();
            c[0] = b"REC.GET*".to_vec();
            out.push(digest_line(&c, &without_field(r, "rec_id")));
        } else {
            out.push(digest_line(c, r));
        }
    }
    out
}

/// Guards against vacuous comparisons: the digest must contain personalized recommendations,
/// non-empty similar-item lists, known users and items.
#[track_caller]
pub fn assert_digest_meaningful(d: &[String]) {
    let count = |f: &dyn Fn(&String) -> bool| d.iter().filter(|l| f(l)).count();
    let personalized = count(&|l| l.starts_with("\"REC.GET*\"") && l.contains("because you"));
    let similar = count(&|l| l.starts_with("\"REC.SIMILAR\"") && l.contains("=> array([bulk"));
    let similar3 = count(&|l| l.starts_with("\"REC.SIMILAR\"") && l.contains("=> map([("));
    let users = count(&|l| l.starts_with("\"REC.USER.GET\"") && !l.ends_with("=> nil"));
    let items = count(&|l| l.starts_with("\"REC.ITEM.GET\"") && !l.ends_with("=> nil"));
    assert!(
        personalized > 0 && similar + similar3 > 0 && users > 0 && items > 0,
        "digest looks empty: {personalized} personalized lists, {} similar lists, {users} users, \
         {items} items",
        similar + similar3
    );
}

/// Compares two digests and, on a difference, shows the first differing lines.
#[track_caller]
pub fn assert_digest_eq(expected: &[String], actual: &[String], what: &str) {
    if expected == actual {
        return;
    }
    let diffs: Vec<usize> = (0..expected.len().max(actual.len()))
        .filter(|&i| expected.get(i) != actual.get(i))
        .collect();
    let mut msg = format!(
        "{what}: state differs in {} of {} lines (lengths {} vs {})\n",
        diffs.len(),
        expected.len(),
        expected.len(),
        actual.len()
    );
    for &i in diffs.iter().take(5) {
        msg.push_str(&format!(
            "--- expected[{i}]: {}\n+++ actual[{i}]:   {}\n",
            expected.get(i).map(String::as_str).unwrap_or("<none>"),
            actual.get(i).map(String::as_str).unwrap_or("<none>")
        ));
    }
    panic!("{msg}");
}

// ---------------------------------------------------------------------------------------------
// A random workload
// ---------------------------------------------------------------------------------------------

/// A random but reproducible shop: catalog, models and events.
pub struct Workload {
    pub users: Vec<String>,
    pub items: Vec<String>,
    pub categories: Vec<String>,
    pub models: Vec<String>,
    /// Every command, in order.
    pub commands: Vec<Vec<Vec<u8>>>,
}

pub const ACTIONS: [&str; 6] = [
    "view",
    "click",
    "add_to_cart",
    "purchase",
    "rating",
    "dislike",
];

impl Workload {
    pub fn new(n_users: usize, n_items: usize) -> Workload {
        Workload {
            users: (0..n_users).map(|i| format!("user{i}")).collect(),
            items: (0..n_items).map(|i| format!("item{i}")).collect(),
            categories: (0..8).map(|i| format!("cat{i}")).collect(),
            models: vec!["m1".into(), "m2".into(), "m3".into()],
            commands: Vec::new(),
        }
    }

    /// Catalog (most items, not all: the rest appear bare through events) and models.
    pub fn setup(&mut self, rng: &mut Rng) {
        for i in 0..self.items.len() {
            if rng.chance(0.15) {
                continue;
            }
            let c = self.item_set(rng, i);
            self.commands.push(c);
        }
        for m in self.models.clone() {
            let c = self.model_set(rng, &m);
            self.commands.push(c);
        }
    }

    fn item_set(&self, rng: &mut Rng, i: usize) -> Vec<Vec<u8>> {
        let mut c = args(&["REC.ITEM.SET", &self.items[i]]);
        if rng.chance(0.9) {
            c.extend(args(&["CATEGORY", rng.pick(&self.categories).as_str()]));
        }
        if rng.chance(0.5) {
            let tags = format!("t{},t{}", rng.below(10), rng.below(10));
            c.extend(args(&["TAGS", &tags]));
        }
        if rng.chance(0.3) {
            let created = (1_600_000_000_000 + rng.below(100_000_000_000)).to_string();
            c.extend(args(&["CREATED", &created]));
        }
        if rng.chance(0.3) {
            let props = format!("{{\"price\":{},\"name\":\"n{i}\"}}", rng.below(1000));
            c.extend(args(&["PROPS", &props]));
        }
        if rng.chance(0.08) {
            c.extend(args(&["AVAILABLE", "0"]));
        } else if rng.chance(0.1) {
            c.extend(args(&["AVAILABLE", "1"]));
        }
        c
    }

    fn model_set(&self, rng: &mut Rng, name: &str) -> Vec<Vec<u8>> {
        let w = |r: &mut Rng| format!("{}", r.below(200) as f64 / 100.0);
        let mut c = args(&["REC.MODEL.SET", name]);
        if rng.chance(0.8) {
            c.extend(args(&["COOC", &w(rng)]));
        }
        if rng.chance(0.8) {
            c.extend(args(&["AFFINITY", &w(rng)]));
        }
        if rng.chance(0.8) {
            c.extend(args(&["POPULARITY", &w(rng)]));
        }
        if rng.chance(0.5) {
            c.extend(args(&[
                "RECENCY",
                &(3600 + rng.below(1_000_000)).to_string(),
            ]));
        }
        c
    }

    /// One random REC.TRACK (most without TS).
    pub fn track(&self, rng: &mut Rng, with_ts_prob: f64) -> Vec<Vec<u8>> {
        let u = &self.users[rng.skewed(self.users.len())];
        let it = &self.items[rng.skewed(self.items.len())];
        let action = match rng.below(100) {
            0..=49 => "view",
            50..=69 => "click",
            70..=79 => "add_to_cart",
            80..=89 => "purchase",
            90..=95 => "rating",
            _ => "dislike",
        };
        let mut c = args(&["REC.TRACK", u, it, action]);
        if action == "rating" {
            c.extend(args(&["VALUE", &rng.range(1, 5).to_string()]));
        } else if rng.chance(0.1) {
            c.extend(args(&[
                "VALUE",
                &format!("{}", rng.range(1, 40) as f64 / 4.0),
            ]));
        }
        if rng.chance(with_ts_prob) {
            let ts = now_ms() - rng.range(0, 30 * 86_400_000);
            c.extend(args(&["TS", &ts.to_string()]));
        }
        if rng.chance(0.02) {
            c.extend(args(&["REC", &format!("r1:{}:default", now_ms())]));
        }
        c
    }

    /// `n` events, with catalog, user-feature and model changes sprinkled in.
    pub fn events(&mut self, rng: &mut Rng, n: usize, with_ts_prob: f64) {
        for _ in 0..n {
            let roll = rng.below(1000);
            let c = match roll {
                0..=9 => {
                    let i = rng.index(self.items.len());
                    self.item_set(rng, i)
                }
                10..=12 => args(&["REC.ITEM.DEL", rng.pick(&self.items).as_str()]),
                13..=17 => {
                    let u = rng.pick(&self.users).clone();
                    let f = format!("f{}", rng.below(5));
                    let v = format!("v{}", rng.below(100));
                    args(&["REC.USER.SET", &u, &f, &v])
                }
                18 => args(&["REC.USER.DEL", rng.pick(&self.users).as_str()]),
                19..=20 => {
                    let m = rng.pick(&self.models).clone();
                    self.model_set(rng, &m)
                }
                _ => self.track(rng, with_ts_prob),
            };
            self.commands.push(c);
        }
    }

    /// A sample of users and items to digest: the heavy ones and some others.
    pub fn sample(&self, n: usize) -> (Vec<String>, Vec<String>) {
        let pick = |xs: &[String]| -> Vec<String> {
            let mut v: Vec<String> = xs.iter().take(n / 2).cloned().collect();
            let step = (xs.len() / (n - n / 2).max(1)).max(1);
            v.extend(xs.iter().skip(n / 2).step_by(step).take(n - n / 2).cloned());
            v
        };
        let mut users = pick(&self.users);
        users.push("never-seen-user".into());
        let mut items = pick(&self.items);
        items.push("never-seen-item".into());
        (users, items)
    }
}

// ---------------------------------------------------------------------------------------------
// A raw RESP connection, for replies the redis crate cannot parse (errors echoing binary input)
// ---------------------------------------------------------------------------------------------

/// A reply as read off the wire, binary-safe everywhere (errors included).
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Resp>),
    Map(Vec<(Resp, Resp)>),
    Double(Vec<u8>),
    Bool(bool),
    Other(u8, Vec<u8>),
}

impl Resp {
    pub fn is_err(&self) -> bool {
        matches!(self, Resp::Error(_))
    }

    pub fn error_text(&self) -> Option<String> {
        match self {
            Resp::Error(e) => Some(String::from_utf8_lossy(e).into_owned()),
            _ => None,
        }
    }
}

/// A plain TCP connection speaking RESP2 (or RESP3 after `HELLO 3`).
pub struct RawConn {
    reader: std::io::BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl RawConn {
    pub fn connect(port: u16) -> RawConn {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        RawConn {
            reader: std::io::BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    pub fn resp3(port: u16) -> RawConn {
        let mut c = RawConn::connect(port);
        let r = c.call(&args(&["HELLO", "3"]));
        assert!(matches!(r, Resp::Map(_)), "HELLO 3: {r:?}");
        c
    }

    /// Sends one command and reads its reply; a timeout (hang) or closed socket panics.
    pub fn call<A: AsRef<[u8]>>(&mut self, argv: &[A]) -> Resp {
        use std::io::Write;
        self.writer
            .write_all(&command(argv).get_packed_command())
            .unwrap();
        loop {
            match self.read() {
                Resp::Other(b'>', _) => continue, // RESP3 push
                r => return r,
            }
        }
    }

    fn line(&mut self) -> Vec<u8> {
        use std::io::BufRead;
        let mut l = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut l)
            .expect("read from redis-server (hang or crash?)");
        assert!(n > 0, "redis-server closed the connection");
        assert!(l.ends_with(b"\r\n"), "bad RESP line {l:?}");
        l.truncate(l.len() - 2);
        l
    }

    fn num(l: &[u8]) -> i64 {
        String::from_utf8_lossy(l)
            .parse()
            .unwrap_or_else(|_| panic!("bad RESP length {l:?}"))
    }

    pub fn read(&mut self) -> Resp {
        use std::io::Read as _;
        let l = self.line();
        let (t, rest) = (l[0], &l[1..]);
        match t {
            b'+' => Resp::Simple(rest.to_vec()),
            b'-' => Resp::Error(rest.to_vec()),
            b':' => Resp::Int(Self::num(rest)),
            b'_' => Resp::Nil,
            b',' => Resp::Double(rest.to_vec()),
            b'#' => Resp::Bool(rest == b"t"),
            b'(' => Resp::Other(t, rest.to_vec()),
            b'$' | b'!' | b'=' => {
                let n = Self::num(rest);
                if n < 0 {
                    return Resp::Nil;
                }
                let mut b = vec![0u8; n as usize + 2];
                self.reader.read_exact(&mut b).unwrap();
                b.truncate(n as usize);
                if t == b'!' {
                    Resp::Error(b)
                } else {
                    Resp::Bulk(b)
                }
            }
            b'*' | b'~' | b'>' => {
                let n = Self::num(rest);
                if n < 0 {
                    return Resp::Nil;
                }
                let v: Vec<Resp> = (0..n).map(|_| self.read()).collect();
                if t == b'>' {
                    Resp::Other(t, Vec::new())
                } else {
                    Resp::Array(v)
                }
            }
            b'%' | b'|' => {
                let n = Self::num(rest);
                let m: Vec<(Resp, Resp)> = (0..n).map(|_| (self.read(), self.read())).collect();
                if t == b'|' {
                    // Attributes precede the real reply.
                    return self.read();
                }
                Resp::Map(m)
            }
            other => panic!("unknown RESP type {:?} in {l:?}", other as char),
        }
    }
}
