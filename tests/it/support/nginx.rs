//! A private nginx (Debian's `nginx`) on a loopback port as the load balancer in front of
//! several token servers, configured as `examples/ha/nginx.conf` advises: a request that fails
//! on one replica (refused, reset, timed out) is retried on the next, POSTs included (every
//! token request is safe to retry), and the client's address goes on in `X-Forwarded-For`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::process::{free_port, log_file, require_binary, tail, wait_for_tcp, ChildGuard};

pub struct Nginx {
    /// Held for its Drop, which stops nginx before `dir` is deleted (fields drop in declaration
    /// order).
    _daemon: ChildGuard,
    addr: String,
    /// nginx.conf, the logs, the pid file and nginx's temp dirs.
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx balancing over `upstreams` (`host:port` each); returns once it listens.
    pub fn start(upstreams: &[&str]) -> Nginx {
        let binary = require_binary("nginx", "nginx");
        let dir = tempfile::Builder::new().prefix("pc-nginx-").tempdir().expect("create an nginx temp dir");
        for attempt in 1..=3 {
            let addr = format!("127.0.0.1:{}", free_port());
            std::fs::write(dir.path().join("nginx.conf"), config(&addr, upstreams, dir.path()))
                .expect("write nginx.conf");
            let (stdout, stderr) = log_file(&dir.path().join("nginx.out"));
            let prefix = format!("{}/", dir.path().display());
            let mut command = Command::new(&binary);
            command
                .args(["-p", &prefix, "-c", "nginx.conf", "-g"])
                .arg(format!("daemon off; pid {}/nginx.pid;", dir.path().display()))
                .stdout(stdout)
                .stderr(stderr);
            let mut daemon = ChildGuard::spawn("nginx", &mut command);
            match daemon
                .poll_until("listening", Duration::from_secs(10), || wait_for_tcp(&addr, Duration::ZERO))
            {
                Ok(()) => return Nginx { _daemon: daemon, addr, dir },
                Err(_)
                    if attempt < 3
                        && tail(&dir.path().join("error.log")).contains("Address already in use") =>
                {
                    continue
                }
                Err(why) => panic!("{why}:\n{}", tail(&dir.path().join("error.log"))),
            }
        }
        unreachable!("the last attempt returns or panics");
    }

    /// `host:port` nginx listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Its error log (upstream failures and retries are logged here).
    pub fn error_log(&self) -> String {
        tail(&self.dir.path().join("error.log"))
    }
}

fn config(addr: &str, upstreams: &[&str], dir: &Path) -> String {
    let servers: String = upstreams.iter().map(|upstream| format!("        server {upstream};\n")).collect();
    let dir = dir.display();
    format!(
        "user root;
worker_processes 1;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream portcullis {{
{servers}    }}
    server {{
        listen {addr};
        location / {{
            proxy_pass http://portcullis;
            proxy_next_upstream error timeout non_idempotent http_502 http_503;
            proxy_next_upstream_tries 3;
            proxy_connect_timeout 1s;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"
    )
}
