//! Durability proven, not assumed: the SIGKILL test (trainer_durability.rs) would pass with
//! `synchronous=OFF` too, because a killed process's writes survive in the page cache. Here the
//! real trainer runs with a small `LD_PRELOAD` layer that logs every `fsync`/`fdatasync` it
//! makes (after the call returns) with the file it synced. Each acknowledged batch must have
//! been followed by a sync of the store's write-ahead log between the request being sent and
//! its reply arriving.
//!
//! What this proves: an acknowledged event's commit was flushed to the device with the kernel's
//! sync call before the reply — so it survives a power loss on storage that honours flushes.
//! What it does not: that the device honours them (write caches that lie), which no software
//! test here can show.

use std::path::Path;
use std::process::Command;

use prewarm_tests::{TempDir, Trainer, request};

const TOKEN: &str = "fsync-test-token-0123456789";

const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void note(const char *what, int fd, int result) {
    const char *log = getenv("PREWARM_FSYNC_LOG");
    if (!log || result != 0) return;
    char link[64], target[1024];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    target[n < 0 ? 0 : n] = 0;
    int out = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (out < 0) return;
    char line[1200];
    int len = snprintf(line, sizeof line, "%s %s\n", what, target);
    if (len > 0) (void)!write(out, line, (size_t)len);
    close(out);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int result = real(fd);
    note("fsync", fd, result);
    return result;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int result = real(fd);
    note("fdatasync", fd, result);
    return result;
}
"#;

fn build_shim(dir: &Path) -> std::path::PathBuf {
    let source = dir.join("fsync_log.c");
    let library = dir.join("libfsync_log.so");
    std::fs::write(&source, SHIM).expect("write the shim");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("a C compiler (cc) builds the fsync-logging layer");
    assert!(status.success(), "compiling the fsync-logging layer failed");
    library
}

fn wal_syncs(log: &Path) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().lines().filter(|l| l.ends_with("events.sqlite-wal")).count()
}

#[test]
fn every_acknowledged_batch_was_synced_to_disk_before_its_reply() {
    let dir = TempDir::new("fsync");
    let library = build_shim(&dir.0);
    let log = dir.0.join("fsync.log");
    let (library, log_path) = (library.display().to_string(), log.display().to_string());
    let env =
        [("PREWARM_INGEST_TOKEN", TOKEN), ("LD_PRELOAD", library.as_str()), ("PREWARM_FSYNC_LOG", log_path.as_str())];
    let trainer = Trainer::start(&dir.0, &env);
    let auth = format!("Bearer {TOKEN}");
    for batch in 0..20u64 {
        let body = format!(
            r#"{{"time":{},"user":"{:064x}","region":"eu","path":"/api/x","device":"desktop","status":200,"bytes":10,"duration_ms":1}}"#,
            1_700_000_000 + batch,
            batch as u128
        );
        let before = wal_syncs(&log);
        let (status, reply) =
            request(trainer.addr, "POST", "/v1/events", &[("authorization", &auth)], body.as_bytes()).expect("post");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
        let after = wal_syncs(&log);
        assert!(
            after > before,
            "batch {batch} was acknowledged without its commit being synced to disk first (WAL syncs: {before} before the request, {after} at the reply)"
        );
    }
}
