//! Debian's `clickhouse-server` (18.16) as a plain process for the tests and the ingest bench:
//! no systemd, no privileges, its files in a directory of the caller's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use prewarm_trainer::store::clickhouse::ClickHouseConfig;

/// Debian's `clickhouse-server` as a plain process: its config, data and logs in a
/// temporary directory, HTTP on a free loopback port, nothing else listening.
pub struct Server {
    dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("addr").port();
        std::fs::create_dir_all(dir).expect("dir");
        let d = dir.display();
        std::fs::write(
            dir.join("config.xml"),
            format!(
                "<?xml version=\"1.0\"?><yandex><logger><level>warning</level><log>{d}/server.log</log>\
                 <errorlog>{d}/error.log</errorlog><console>0</console></logger><http_port>{port}</http_port>\
                 <listen_host>127.0.0.1</listen_host><path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path>\
                 <user_files_path>{d}/user_files/</user_files_path><format_schema_path>{d}/schemas/</format_schema_path>\
                 <mark_cache_size>5368709</mark_cache_size><users_config>users.xml</users_config>\
                 <default_profile>default</default_profile><default_database>default</default_database></yandex>"
            ),
        )
        .expect("config");
        std::fs::write(
            dir.join("users.xml"),
            "<?xml version=\"1.0\"?><yandex><profiles><default/></profiles><users><default><password></password>\
             <networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>\
             </users><quotas><default/></quotas></yandex>",
        )
        .expect("users");
        let mut server = Server { dir: dir.to_owned(), port, child: None };
        server.restart();
        server
    }

    pub fn restart(&mut self) {
        let child = Command::new("clickhouse-server")
            .arg(format!("--config-file={}", self.dir.join("config.xml").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("clickhouse-server runs (apt-get install clickhouse-server; cargo xtask test installs it)");
        self.child = Some(child);
        // Up to 30 s (600 tries 50 ms apart): 18.16 answers in about 0.1 s.
        for _ in 0..600 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("clickhouse-server did not listen within 30 s: see {}", self.dir.display());
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn config(&self) -> ClickHouseConfig {
        // 18.16 lacks RowBinaryWithNamesAndTypes: validation off, as docs/scale.md says.
        ClickHouseConfig { url: format!("http://127.0.0.1:{}", self.port), validation: false, ..Default::default() }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
